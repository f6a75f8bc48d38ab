"""A counted, bounded, retrying client for OpenAI-compatible chat endpoints (OpenAI, vLLM, SGLang,
llama.cpp, …): the transport shared by the live backends (:mod:`iapo.backends`) and the LLM-judge
scorer (:mod:`iapo.scorers`).

:class:`OpenAIChatClient` talks HTTP through ``openai.AsyncOpenAI`` (the ``openai`` extra, imported
on first use) over aiohttp or a tuned httpx pool (``http_client``, :data:`HTTP_CLIENTS`), with the
SDK's own retries switched off (``max_retries=0``), so that every attempt
is counted and bounded here: a semaphore caps concurrent requests, an optional token bucket caps
requests per minute, and transient failures (429, 408/409/425, 5xx, timeouts, dropped
connections, unparseable 200 bodies) are retried with exponential backoff and full jitter,
honouring ``Retry-After``. Permanent failures (other 4xx) raise
:class:`~iapo.errors.PermanentBackendError` at once. ``complete(messages, n, params)`` always
returns exactly ``n`` completions, asking for ``n`` natively, by fan-out, or — in ``"auto"``
mode — natively until the endpoint shows it ignores or rejects ``n``.

Token accounting (``Completion.prompt_tokens`` / ``completion_tokens``): a response's ``usage``
covers the whole request and is shared over the completions kept from it. The prompt was billed
once; it is split evenly over them in whole tokens (largest remainder: 100 over 3 completions is
34, 33, 33), so per-completion prompt tokens sum exactly to what was billed. OpenAI does not report
per-choice completion tokens for ``n > 1``; ``usage.completion_tokens`` is split over the
completions in proportion to their text length in characters (largest remainder again: the sum is
exact; equal shares if every text is empty). A fan-out request bills the prompt in full to its one
completion.

Reported usage is untrusted; the rules (each break counted in ``OpenAIChatClient.anomalies`` by
kind, see :data:`ANOMALY_KINDS`, and logged as a WARNING the first time):

* **Above the worst case** (``usage_above_max``): completion tokens above ``n × max_tokens`` of
  the request are kept *as reported*: that is what the endpoint bills, so the run's account and
  its cost cap count it (the cap stops the run as soon as the account reaches it; the cap's
  reservations stay at ``max_tokens`` per completion). Prompt tokens have no bound.
* **Missing, negative or not an integer** (``usage_missing``, ``usage_invalid``): the count is
  ``None`` (nothing invented in what is stored), and the completion is *costed at the request's
  worst case*: ``Completion.billed_completion_tokens`` is ``max_tokens`` (0 if the request set
  none) and ``billed_prompt_tokens`` the prompt bound (:func:`prompt_token_bound`); the cost
  functions of :mod:`iapo.backends` use these, so such a server can never look free.
* **More choices than ``n``** (``extra_choices``, one per surplus choice): the first ``n`` by
  index are kept, never more; the response's whole usage (the surplus' tokens included) is shared
  over the kept ones, so the account holds all that was billed, and
  ``completions_received`` − ``completions_discarded`` is what was kept.
* **A slow answer**: ``timeout`` bounds each attempt in total (sending to the last byte), not only
  each read: an answer dripping in slower is abandoned at ``timeout`` and retried as a transient
  failure, within ``max_attempts``.

The API key never appears in an exception message, a ``repr`` or a log line: error texts are built
here (never the SDK's, which embed the response body), redacted, and raised without chaining.
"""

from __future__ import annotations

from iapo.chat_client._body import ANOMALY_KINDS, Completion, prompt_token_bound
from iapo.chat_client._client import RESERVED_PARAMS, OpenAIChatClient
from iapo.chat_client._nmode import NMode
from iapo.chat_client._transport import HTTP_CLIENTS, HttpClient
from iapo.chat_client._url import public_url

__all__ = [
    "ANOMALY_KINDS",
    "HTTP_CLIENTS",
    "RESERVED_PARAMS",
    "Completion",
    "HttpClient",
    "NMode",
    "OpenAIChatClient",
    "prompt_token_bound",
    "public_url",
]
