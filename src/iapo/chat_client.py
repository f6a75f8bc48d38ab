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

import asyncio
import email.utils
import importlib.util
import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import urlsplit, urlunsplit

from iapo.aio import gather_or_cancel
from iapo.errors import ConfigError, PermanentBackendError, TransientBackendError

__all__ = ["RESERVED_PARAMS", "Completion", "NMode", "OpenAIChatClient", "public_url"]

log = logging.getLogger("iapo.backends.openai")  # the name users configure

NMode = Literal["auto", "native", "fanout"]

#: Statuses worth retrying besides 5xx (the SDK's own list, plus 425 Too Early).
_TRANSIENT_4XX = frozenset({408, 409, 425, 429})
#: The longest server-directed wait we accept; a longer Retry-After gives up at once.
MAX_RETRY_AFTER = 120.0
#: Keys that ``complete`` sets itself and callers may not pass in ``params``.
RESERVED_PARAMS = frozenset({"model", "messages", "n", "stream"})
#: How endpoints that do not support ``n > 1`` say so (llama.cpp: "Only one completion choice is
#: allowed", HTTP 400 in older and 500 in newer builds).
_N_REJECTED = re.compile(
    r"only one completion choice"
    r"|\bn\b\W{0,3}(?:must be 1|is not supported|not supported|unsupported)"
    r"|n_choices|multiple (?:choices|completions) (?:are )?not supported",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Completion:
    """One completion. ``None`` fields: the endpoint did not say (see the module doc on tokens)."""

    text: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None


class _Retry(Exception):
    """An attempt failed in a way worth retrying."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _NRejected(Exception):
    """The endpoint refused ``n > 1``."""


class _TokenBucket:
    """Requests-per-minute cap: capacity one, so requests are spaced at least ``60/rpm`` s apart."""

    def __init__(self, rpm: float) -> None:
        if not rpm > 0:
            raise ValueError(f"rpm must be positive, got {rpm}")
        self.rate = rpm / 60.0
        self._tokens = 1.0
        self._last = time.monotonic()
        self._lock: asyncio.Lock | None = None

    def rebind(self) -> None:
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        assert self._lock is not None
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(1.0, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.rate)


def _split_even(total: int, k: int) -> list[int]:
    base, extra = divmod(total, k)
    return [base + (1 if i < extra else 0) for i in range(k)]


def _split_proportional(total: int, weights: Sequence[int]) -> list[int]:
    """Whole shares of ``total`` proportional to ``weights`` (largest remainder; sum exact)."""
    w = sum(weights)
    if w <= 0:
        return _split_even(total, len(weights))
    quotas = [total * x / w for x in weights]
    shares = [math.floor(q) for q in quotas]
    left = total - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - shares[i]), i))
    for i in order[:left]:
        shares[i] += 1
    return shares


def _nonneg_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _parse_body(body: bytes) -> tuple[list[Completion], int | None, int | None]:
    """The choices of a chat-completion body and its usage; ``ValueError`` if unusable."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("body is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ValueError("no choices in the body")
    parsed: list[tuple[int, str | None, str | None]] = []
    for pos, ch in enumerate(choices):
        if not isinstance(ch, dict) or not isinstance(ch.get("message"), dict):
            raise ValueError("a choice has no message")
        content = ch["message"].get("content")
        if content is not None and not isinstance(content, str):
            raise ValueError("a choice's content is not text")
        finish = ch.get("finish_reason")
        index = ch.get("index")
        parsed.append(
            (
                index if isinstance(index, int) else pos,
                content,
                finish if isinstance(finish, str) else None,
            )
        )
    parsed.sort(key=lambda t: t[0])
    usage = data.get("usage")
    prompt = completion = None
    if isinstance(usage, dict):
        prompt = _nonneg_int(usage.get("prompt_tokens"))
        completion = _nonneg_int(usage.get("completion_tokens"))
    k = len(parsed)
    p_shares: list[int | None] = list(_split_even(prompt, k)) if prompt is not None else [None] * k
    if completion is None:
        c_shares: list[int | None] = [None] * k
    elif k == 1:
        c_shares = [completion]
    else:
        c_shares = list(_split_proportional(completion, [len(t[1] or "") for t in parsed]))
    out = [
        Completion(text=t[1], finish_reason=t[2], prompt_tokens=p, completion_tokens=c)
        for t, p, c in zip(parsed, p_shares, c_shares, strict=True)
    ]
    return out, prompt, completion


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        return seconds if math.isfinite(seconds) else MAX_RETRY_AFTER + 1
    value = headers.get("retry-after")
    if value:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
    return None


def public_url(url: str) -> str:
    """``url`` without user info, query or fragment (which may carry credentials): safe to show
    in ids, logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class OpenAIChatClient:
    """A counted, bounded, retrying client for ``POST {base_url}/chat/completions``.

    ``base_url=None`` means the OpenAI API (or ``$OPENAI_BASE_URL``). The key is ``api_key``, else
    ``$<api_key_env>``; a local endpoint (``base_url`` given) without one gets the placeholder
    ``"EMPTY"``, which servers started without a key ignore. ``timeout`` is the SDK's (httpx's)
    per-phase timeout in seconds. ``n_mode``: ``"native"`` sends ``n`` in one request,
    ``"fanout"`` sends ``n`` single-choice requests concurrently, ``"auto"`` starts native and
    decides on the first answer to ``n > 1``: exactly one choice (the endpoint ignores ``n``,
    like llama-cpp-python) or an error saying only one choice is allowed (llama.cpp) switches to
    fan-out for the rest of the client's life (logged at INFO once); a full answer settles on
    native. In every mode, missing choices (fewer than asked) are requested again, so exactly
    ``n`` come back.

    Counters: ``requests_sent`` (HTTP attempts), ``retries``, ``completions_received`` (choices in
    parsed 200 responses), ``completions_discarded`` (surplus choices beyond those asked for),
    ``prompt_tokens`` / ``completion_tokens`` (sums of reported ``usage``).

    One client belongs to one event loop at a time; used from a new loop (a new ``asyncio.run``),
    it opens a fresh connection pool there.
    """

    def __init__(
        self,
        base_url: str | None,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        concurrency: int = 8,
        rpm: float | None = None,
        max_attempts: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        timeout: float = 120.0,
        n_mode: NMode = "auto",
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if backoff < 0 or max_backoff < 0:
            raise ValueError("backoff and max_backoff must be non-negative")
        if n_mode not in ("auto", "native", "fanout"):
            raise ValueError(f"n_mode must be 'auto', 'native' or 'fanout', got {n_mode!r}")
        if importlib.util.find_spec("openai") is None:
            raise ConfigError(
                "live backends and judges need the openai package: pip install 'iapo[openai]'",
                field="backend",
            )
        key = api_key or (os.environ.get(api_key_env) if api_key_env else None)
        if not key:
            if base_url is None:
                where = f"set ${api_key_env} or " if api_key_env else ""
                raise ConfigError(f"no API key for the OpenAI API: {where}pass api_key")
            key = "EMPTY"
        self._api_key = key
        self.base_url = base_url
        self.model = model
        self.concurrency = int(concurrency)
        self.rpm = rpm
        self.max_attempts = int(max_attempts)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.timeout = float(timeout)
        self.n_mode: NMode = n_mode
        #: What "auto" found: None (not yet known), True (native n works), False (fan-out).
        self.native_n: bool | None = {"native": True, "fanout": False}.get(n_mode)
        self.requests_sent = 0
        self.retries = 0
        self.completions_received = 0
        self.completions_discarded = 0
        #: The first permanent error: once set, no further request is sent (a wrong key, model
        #: or request shape fails every request alike, so the run stops at once).
        self.fatal: PermanentBackendError | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._rng = random.Random()
        self._bucket = _TokenBucket(rpm) if rpm is not None else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem: asyncio.Semaphore | None = None
        self._oai: Any = None
        self._public_base = public_url(base_url) if base_url else "https://api.openai.com/v1"

    def __repr__(self) -> str:
        return (
            f"OpenAIChatClient(model={self.model!r}, base_url={self._public_base!r}, "
            f"n_mode={self.n_mode!r}, concurrency={self.concurrency})"
        )

    # -- plumbing ---------------------------------------------------------------------------

    def _bind(self) -> Any:
        """The SDK client, semaphore and bucket lock for the running loop (made on first use)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._oai is None:
            # The ``openai`` extra: imported late, so that ``import iapo`` never needs it.
            import openai

            self._oai = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=self._api_key,
                max_retries=0,
                timeout=self.timeout,
            )
            if self.base_url is None:
                self._public_base = public_url(str(self._oai.base_url))
            self._sem = asyncio.Semaphore(self.concurrency)
            if self._bucket is not None:
                self._bucket.rebind()
            self._loop = loop
        return self._oai

    def _redact(self, text: str) -> str:
        """One line, at most 300 characters, with no key or bearer token in it."""
        if len(self._api_key) >= 4:
            text = text.replace(self._api_key, "***")
        text = re.sub(r"(?i)(bearer\s+)\S+", r"\1***", text)
        text = re.sub(r"\bsk-[A-Za-z0-9_\-*.]{4,}", "sk-***", text)
        text = " ".join(text.split())
        return text if len(text) <= 300 else text[:297] + "..."

    def _where(self) -> str:
        return f"{self._public_base} (model {self.model!r})"

    @staticmethod
    def _server_message(body: object, fallback: str) -> str:
        if isinstance(body, dict):
            inner = body.get("error", body)
            if isinstance(inner, dict):
                msg = inner.get("message")
                if isinstance(msg, str) and msg:
                    return msg
            elif isinstance(inner, str) and inner:
                return inner
        if isinstance(body, str) and body:
            return body
        return fallback

    def _backoff_delay(self, attempt: int) -> float:
        cap = min(self.max_backoff, self.backoff * (2.0 ** (attempt - 1)))
        return self._rng.uniform(0.0, cap)

    # -- one request, retried ---------------------------------------------------------------

    async def _attempt(
        self, messages: list[dict[str, str]], n: int, params: Mapping[str, Any]
    ) -> bytes:
        """One HTTP attempt; the 200 body, or ``_Retry`` / ``_NRejected`` / a permanent error."""
        import openai

        oai = self._bind()
        if self._bucket is not None:
            await self._bucket.acquire()
        assert self._sem is not None
        async with self._sem:
            if self.fatal is not None:  # a permanent error already stopped this client
                raise self.fatal
            self.requests_sent += 1
            extra: dict[str, Any] = {"n": n} if n > 1 else {}
            try:
                raw = await oai.chat.completions.with_raw_response.create(
                    model=self.model,
                    messages=cast(Any, messages),
                    extra_body=dict(params),
                    **extra,
                )
                return cast(bytes, raw.http_response.content)
            except openai.APIStatusError as exc:
                status = exc.status_code
                message = self._redact(self._server_message(exc.body, exc.response.reason_phrase))
                if n > 1 and status in (400, 422, 500) and _N_REJECTED.search(message):
                    raise _NRejected(f"HTTP {status}: {message}") from None
                if status >= 500 or status in _TRANSIENT_4XX:
                    raise _Retry(
                        f"HTTP {status}: {message}", _retry_after(exc.response.headers)
                    ) from None
                self.fatal = PermanentBackendError(f"HTTP {status} from {self._where()}: {message}")
                raise self.fatal from None
            except openai.APITimeoutError:
                raise _Retry(f"timed out after {self.timeout:g} s") from None
            except openai.APIConnectionError as exc:
                cause = type(exc.__cause__).__name__ if exc.__cause__ else "connection error"
                raise _Retry(f"connection failed ({cause})") from None

    async def _request(
        self, messages: list[dict[str, str]], n: int, params: Mapping[str, Any]
    ) -> list[Completion]:
        """Up to ``n`` completions (at least one) from one logical request, retried."""
        attempt = 0
        while True:
            attempt += 1
            try:
                body = await self._attempt(messages, n, params)
                try:
                    choices, prompt, completion = _parse_body(body)
                except ValueError as exc:
                    raise _Retry(f"unparseable 200 response ({self._redact(str(exc))})") from None
            except _Retry as retry:
                if retry.retry_after is not None and retry.retry_after > MAX_RETRY_AFTER:
                    raise TransientBackendError(
                        f"{self._where()} asks to wait {retry.retry_after:.0f} s "
                        f"(more than {MAX_RETRY_AFTER:.0f} s): {retry.reason}"
                    ) from None
                if attempt >= self.max_attempts:
                    raise TransientBackendError(
                        f"gave up on {self._where()} after {attempt} attempts; last: {retry.reason}"
                    ) from None
                delay = (
                    retry.retry_after
                    if retry.retry_after is not None
                    else self._backoff_delay(attempt)
                )
                self.retries += 1
                log.debug(
                    "retrying %s in %.3f s (attempt %d/%d): %s",
                    self._where(),
                    delay,
                    attempt,
                    self.max_attempts,
                    retry.reason,
                )
                await asyncio.sleep(max(0.0, delay))
                continue
            self.completions_received += len(choices)
            if prompt is not None:
                self.prompt_tokens += prompt
            if completion is not None:
                self.completion_tokens += completion
            if len(choices) > n:
                self.completions_discarded += len(choices) - n
                choices = choices[:n]
            return choices

    # -- n completions ----------------------------------------------------------------------

    def _use_fanout(self) -> bool:
        return self.n_mode == "fanout" or (self.n_mode == "auto" and self.native_n is False)

    def _switch_to_fanout(self, why: str) -> None:
        if self.native_n is not False:
            self.native_n = False
            log.info(
                "%s: %s; switching to fan-out (one request per completion)", self._where(), why
            )

    async def _fanout(
        self, messages: list[dict[str, str]], k: int, params: Mapping[str, Any]
    ) -> list[Completion]:
        results = await gather_or_cancel(self._request(messages, 1, params) for _ in range(k))
        return [r[0] for r in results]

    async def complete(
        self, messages: list[dict[str, str]], n: int, params: Mapping[str, Any]
    ) -> list[Completion]:
        """Exactly ``n`` completions of ``messages`` sampled with ``params``.

        Raises :class:`~iapo.errors.PermanentBackendError` (bad request, auth, unknown model, …)
        or :class:`~iapo.errors.TransientBackendError` (still failing after ``max_attempts``).
        """
        reserved = RESERVED_PARAMS.intersection(params)
        if reserved:
            raise ValueError(f"params may not set {sorted(reserved)}: the client sets them")
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        msgs = [dict(m) for m in messages]
        out: list[Completion] = []
        while len(out) < n:
            need = n - len(out)
            if need == 1 or self._use_fanout():
                out.extend(
                    await self._fanout(msgs, need, params)
                    if need > 1
                    else await self._request(msgs, 1, params)
                )
                break
            try:
                got = await self._request(msgs, need, params)
            except _NRejected as exc:
                if self.n_mode == "native":
                    raise PermanentBackendError(
                        f"{self._where()} does not support n > 1 ({exc}); "
                        "use n_mode='auto' or 'fanout'"
                    ) from None
                self._switch_to_fanout(f"endpoint rejects n > 1 ({exc})")
                continue
            out.extend(got)
            if self.n_mode == "auto" and self.native_n is None:
                # Decided once, on the first answer to n > 1: one choice means n is ignored.
                # Later short answers (a glitch on an endpoint known to honour n) are refilled.
                if len(got) == 1:
                    self._switch_to_fanout(f"asked for n={need}, got 1 choice")
                else:
                    self.native_n = True  # two or more choices: n is honoured
        return out

    async def aclose(self) -> None:
        """Close the connection pool (if one was opened on the running loop)."""
        oai, self._oai = self._oai, None
        if oai is not None and self._loop is asyncio.get_running_loop():
            await oai.close()
