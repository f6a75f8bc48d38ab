"""A counted, bounded, retrying client for OpenAI-compatible chat endpoints (OpenAI, vLLM, SGLang,
llama.cpp, …): the transport shared by the live backends (:mod:`iapo.backends`) and the LLM-judge
scorer (:mod:`iapo.scorers`).

:class:`OpenAIChatClient` talks HTTP through ``openai.AsyncOpenAI`` (the ``openai`` extra, imported
on first use) with the SDK's own retries switched off (``max_retries=0``), so that every attempt
is counted and bounded here: a semaphore caps concurrent requests, an optional token bucket caps
requests per minute, and transient failures (429, 408/409/425, 5xx, timeouts, dropped
connections, unparseable 200 bodies) are retried with exponential backoff and full jitter,
honouring ``Retry-After``. Permanent failures (other 4xx) raise
:class:`~iapo.errors.PermanentBackendError` at once. ``complete(messages, n, params)`` always
returns exactly ``n`` completions, asking for ``n`` natively, by fan-out, or — in ``"auto"``
mode — natively until the endpoint shows it ignores or rejects ``n``.

Token accounting (``Completion.prompt_tokens`` / ``completion_tokens``): a response's ``usage``
covers the whole request. With several choices in one response the prompt was billed once; it is
split evenly over the returned choices in whole tokens (largest remainder: 100 over 3 choices is
34, 33, 33), so per-choice prompt tokens sum exactly to what was billed. OpenAI does not report
per-choice completion tokens for ``n > 1``; ``usage.completion_tokens`` is split over the choices
in proportion to their text length in characters (largest remainder again: the sum is exact;
equal shares if every text is empty). A fan-out request bills the prompt in full to its one
completion. A response without ``usage`` gives ``None`` for both: nothing is invented.

The API key never appears in an exception message, a ``repr`` or a log line: error texts are built
here (never the SDK's, which embed the response body), redacted, and raised without chaining.
"""

from __future__ import annotations

from iapo.chat_client._body import Completion
from iapo.chat_client._client import RESERVED_PARAMS, OpenAIChatClient
from iapo.chat_client._nmode import NMode
from iapo.chat_client._url import public_url

__all__ = ["RESERVED_PARAMS", "Completion", "NMode", "OpenAIChatClient", "public_url"]
