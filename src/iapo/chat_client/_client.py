"""The client itself: one request, retried; ``n`` completions natively or by fan-out."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import random
from collections import Counter
from collections.abc import Mapping
from typing import Any, ClassVar, NoReturn, cast

from iapo.aio import gather_or_cancel
from iapo.chat_client._body import (
    ANOMALY_TEXT,
    Completion,
    max_tokens_of,
    parse_body,
    prompt_token_bound,
    server_message,
    settle,
)
from iapo.chat_client._direct import DirectPost
from iapo.chat_client._nmode import NMode, NRejected
from iapo.chat_client._retry import (
    MAX_RETRY_AFTER,
    Retry,
    TokenBucket,
    error_body,
    status_error,
)
from iapo.chat_client._transport import (
    HttpClient,
    check_http_client,
    close_with_loop,
    default_http_client,
    dropped_connection,
    encode_json,
    make_sdk_client,
    post_args,
    transport_errors,
    transport_timeouts,
)
from iapo.chat_client._url import public_url, redact
from iapo.errors import ConfigError, PermanentBackendError, TransientBackendError

__all__ = ["RESERVED_PARAMS", "OpenAIChatClient"]


log = logging.getLogger("iapo.backends.openai")  # the name users configure

#: Keys that ``complete`` sets itself and callers may not pass in ``params``.
RESERVED_PARAMS = frozenset({"model", "messages", "n", "stream"})


class OpenAIChatClient:
    """A counted, bounded, retrying client for ``POST {base_url}/chat/completions``.

    ``base_url=None`` means the OpenAI API (or ``$OPENAI_BASE_URL``). The key is ``api_key``, else
    ``$<api_key_env>``; a local endpoint (``base_url`` given) without one gets the placeholder
    ``"EMPTY"``, which servers started without a key ignore. ``timeout`` (seconds) bounds each
    attempt in total, from sending the request to the last byte of the answer (a server that
    trickles its answer is cut off there), and is also the SDK's (httpx's) per-phase timeout.
    ``n_mode``: ``"native"`` sends ``n`` in one request, ``"fanout"`` sends ``n`` single-choice
    requests concurrently, ``"auto"`` starts native and decides on the first answer to ``n > 1``:
    exactly one choice (the endpoint ignores ``n``, like llama-cpp-python) or an error saying only
    one choice is allowed (llama.cpp) switches to fan-out for the rest of the client's life
    (logged at INFO once); a full answer settles on native. In every mode, missing choices (fewer
    than asked) are requested again, so exactly ``n`` come back. ``http_client``: the HTTP stack
    under the SDK, ``"aiohttp"`` (the default where installed) or ``"httpx"``; one pool per event
    loop, ``concurrency`` kept-alive connections (see :mod:`iapo.chat_client._transport`).

    Counters: ``requests_sent`` (HTTP attempts), ``retries``, ``completions_received`` (choices in
    parsed 200 responses), ``completions_discarded`` (surplus choices beyond those asked for),
    ``prompt_tokens`` / ``completion_tokens`` (sums of usably reported ``usage``, as reported),
    ``anomalies`` (what the endpoint did wrong, by kind: see :data:`ANOMALY_KINDS`; each kind is
    logged as a WARNING the first time it is seen).

    One client belongs to one event loop at a time; used from a new loop (a new ``asyncio.run``),
    it opens a fresh connection pool there. A pool not closed with :meth:`aclose` is closed when
    its loop ends (``asyncio.run`` cancels the task that holds it).
    """

    #: The HTTP stack of clients made without ``http_client`` (None: aiohttp where installed).
    default_http_client: ClassVar[HttpClient | None] = None
    #: Whether later attempts skip the SDK's request builder (:mod:`iapo.chat_client._direct`).
    direct: ClassVar[bool] = True

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
        http_client: HttpClient | None = None,
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
            need = "live backends and judges need the openai package: pip install 'iapo[openai]'"
            raise ConfigError(need, field="backend")
        kind = http_client or type(self).default_http_client
        self.http_client: HttpClient = (
            check_http_client(kind) if kind is not None else default_http_client()
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
        #: Whether a permanent error stops every later request (a run) or only its own (a
        #: server, whose requests differ: one over-long question must not stop the others).
        self.sticky_errors = True
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._anomalies: Counter[str] = Counter()
        self._rng = random.Random()
        self._bucket = TokenBucket(rpm) if rpm is not None else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem: asyncio.Semaphore | None = None
        self._oai: Any = None
        self._closer: asyncio.Task[None] | None = None
        self._post: Any = None
        self._direct: DirectPost | None = None
        self._timeouts: tuple[type[BaseException], ...] = ()
        self._errors: tuple[type[BaseException], ...] = ()
        self._public_base = public_url(base_url) if base_url else "https://api.openai.com/v1"

    def __repr__(self) -> str:
        return (
            f"OpenAIChatClient(model={self.model!r}, base_url={self._public_base!r}, "
            f"n_mode={self.n_mode!r}, concurrency={self.concurrency}, "
            f"http_client={self.http_client!r})"
        )

    @property
    def anomalies(self) -> dict[str, int]:
        """What the endpoint did wrong so far, by kind (see :data:`ANOMALY_KINDS`)."""
        return dict(self._anomalies)

    # -- plumbing ---------------------------------------------------------------------------

    def _bind(self) -> Any:
        """The SDK client, semaphore and bucket lock for the running loop (made on first use)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._oai is None:
            if self._closer is not None and self._loop is loop:
                self._closer.cancel()  # a pool replaced on this loop (a new base_url) is closed
            # The ``openai`` extra: imported late, so that ``import iapo`` never needs it.
            fast = type(self).direct and self.http_client == "aiohttp"
            self._direct = direct = DirectPost(self.concurrency, self.timeout) if fast else None
            args = (self.http_client, self.base_url, self._api_key, self.timeout, self.concurrency)
            self._oai = make_sdk_client(*args, direct.learn if direct is not None else None)
            self._closer = close_with_loop(self._oai, *([direct] if direct is not None else []))
            self._post = post_args(self._oai)
            self._errors = transport_errors()
            self._timeouts = transport_timeouts()
            if self.base_url is None:
                self._public_base = public_url(str(self._oai.base_url))
            self._sem = asyncio.Semaphore(self.concurrency)
            if self._bucket is not None:
                self._bucket.rebind()
            self._loop = loop
        return self._oai

    def _where(self) -> str:
        return f"{self._public_base} (model {self.model!r})"

    def _backoff_delay(self, attempt: int) -> float:
        cap = min(self.max_backoff, self.backoff * (2.0 ** (attempt - 1)))
        return self._rng.uniform(0.0, cap)

    # -- one request, retried ---------------------------------------------------------------

    async def _attempt(
        self, messages: list[dict[str, str]], n: int, params: Mapping[str, Any]
    ) -> bytes:
        """One HTTP attempt; the 200 body, or ``Retry`` / ``NRejected`` / a permanent error."""
        import openai

        oai = self._bind()
        if self._bucket is not None:
            await self._bucket.acquire()
        assert self._sem is not None
        async with self._sem:
            if self.fatal is not None and self.sticky_errors:  # a permanent error stopped it
                raise self.fatal
            self.requests_sent += 1
            body: dict[str, Any] = {"model": self.model, "messages": messages}
            body.update({"n": n} if n > 1 else {}, **params)  # the order the SDK sends
            try:
                # The total deadline: httpx's timeouts are per phase (a read timeout restarts
                # with every byte), so a server dripping its answer would never time out.
                async with asyncio.timeout(self.timeout):
                    if (direct := self._direct) is not None and direct.ready:
                        response = await direct.post(encode_json(body))
                        if not response.is_success:
                            self._fail(response.status_code, error_body(response), response, n)
                        return response.content
                    # the body encoded here, as the SDK would (see ``post_args``)
                    response = await oai.post("/chat/completions", **self._post(body))
                    return cast(bytes, response.content)
            except TimeoutError:
                raise Retry(f"no complete answer within {self.timeout:g} s") from None
            except openai.APIStatusError as exc:
                self._fail(exc.status_code, exc.body, exc.response, n)
            except self._timeouts as exc:
                cause = dropped_connection(exc)
                if cause:
                    raise Retry(f"connection failed ({cause})") from None
                raise Retry(f"timed out after {self.timeout:g} s") from None
            except openai.APIConnectionError as exc:
                cause = type(exc.__cause__).__name__ if exc.__cause__ else "connection error"
                raise Retry(f"connection failed ({cause})") from None
            except self._errors as exc:  # what the HTTP stack raised that the SDK did not map
                raise Retry(f"connection failed ({type(exc).__name__})") from None

    def _fail(self, status: int, body: object, response: Any, n: int) -> NoReturn:
        """Raise what an error status means (see :func:`status_error`); a permanent error stops
        every later request too if errors are sticky."""
        message = redact(server_message(body, response.reason_phrase), self._api_key)
        error = status_error(status, message, response.headers, n, self._where())
        if isinstance(error, PermanentBackendError) and self.sticky_errors:
            self.fatal = error
        raise error from None

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
                    choices, usage = parse_body(body)
                except ValueError as exc:
                    raise Retry(
                        f"unparseable 200 response ({redact(str(exc), self._api_key)})"
                    ) from None
            except Retry as retry:
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
            self.prompt_tokens += usage.prompt or 0
            self.completion_tokens += usage.completion or 0
            kept, anomalies = settle(
                choices,
                usage,
                n,
                max_tokens=max_tokens_of(params),
                prompt_bound=prompt_token_bound(messages),
            )
            self.completions_discarded += anomalies["extra_choices"]
            self._note(anomalies)
            return kept

    def _note(self, anomalies: Counter[str]) -> None:
        """Count ``anomalies``; warn the first time each kind is seen."""
        for kind, count in anomalies.items():
            if count and not self._anomalies[kind]:
                log.warning(
                    "%s: %s; counted in the account (see iapo.chat_client on untrusted usage)",
                    self._where(),
                    ANOMALY_TEXT[kind],
                )
            self._anomalies[kind] += count

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
            except NRejected as exc:
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
        closer, self._closer = self._closer, None
        if oai is not None and self._loop is asyncio.get_running_loop():
            if closer is not None:
                closer.cancel()
                await asyncio.wait([closer])
            await oai.close()
            if self._direct is not None:
                await self._direct.close()
