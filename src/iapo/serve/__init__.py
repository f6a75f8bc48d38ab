"""``iapo serve``: an OpenAI-compatible server in front of a learned policy (Starlette + uvicorn).

``POST /v1/chat/completions`` with ``model`` = a context name: the last user message is the
question (the request's system and developer messages go before it, as the caller's
instructions); the context's arm (prompt, N) is sampled N times (an adaptive arm: a batch at a
time until its stopping rule says stop, at most N), aggregated, and answered as one choice whose
usage is the sum over the samples drawn (the ``iapo`` field says how many: ``samples_drawn``),
either as one ``chat.completion`` or, with ``stream: true``, as server-sent
``chat.completion.chunk`` events ending in ``data: [DONE]``.
``GET /v1/models`` lists the contexts; ``GET /health`` answers ``{"status": "ok"}``.

One event loop answers every request with the policy's one backend (one client, one connection
pool, one bound on the requests in flight upstream). Limits: a body size (413), a per-request
deadline (504), an optional bearer key (401). Needs the ``serve`` extra
(``pip install 'iapo[serve]'``); importing this package does not, until :class:`PolicyServer`
is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from iapo.serve._cli import register_cli

if TYPE_CHECKING:
    from iapo.serve._server import PolicyServer, ServeWarning

__all__ = ["PolicyServer", "ServeWarning", "register_cli"]


def __getattr__(name: str) -> Any:
    if name in ("PolicyServer", "ServeWarning"):
        from iapo.serve import _server

        return getattr(_server, name)
    raise AttributeError(f"module 'iapo.serve' has no attribute {name!r}")
