"""What is worth retrying and how long to wait: transient statuses, ``Retry-After`` and the
requests-per-minute token bucket."""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import time
from collections.abc import Mapping
from typing import Any

from iapo.chat_client._nmode import N_REJECTED, NRejected
from iapo.errors import PermanentBackendError

__all__ = [
    "MAX_RETRY_AFTER",
    "TRANSIENT_4XX",
    "Retry",
    "TokenBucket",
    "error_body",
    "retry_after_seconds",
    "status_error",
]


#: Statuses worth retrying besides 5xx (the SDK's own list, plus 425 Too Early).
TRANSIENT_4XX = frozenset({408, 409, 425, 429})
#: The longest server-directed wait we accept; a longer Retry-After gives up at once.
MAX_RETRY_AFTER = 120.0


class Retry(Exception):
    """An attempt failed in a way worth retrying."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class TokenBucket:
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


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
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


def error_body(response: Any) -> object:
    """An error response's body as the SDK's ``APIStatusError.body`` has it: the JSON value (its
    ``error`` member if it is an object that has one), else the text."""
    text = response.text.strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text
    return body.get("error", body) if isinstance(body, dict) else body


def status_error(
    status: int, message: str, headers: Mapping[str, str], n: int, where: str
) -> Exception:
    """What an error status means for the attempt that got it (``message``: the server's,
    redacted): :class:`Retry` (5xx, :data:`TRANSIENT_4XX`; honouring ``Retry-After``),
    ``NRejected`` (a request for ``n > 1`` the endpoint refuses as such), or a
    :class:`~iapo.errors.PermanentBackendError` naming ``where``."""
    if n > 1 and status in (400, 422, 500) and N_REJECTED.search(message):
        return NRejected(f"HTTP {status}: {message}")
    if status >= 500 or status in TRANSIENT_4XX:
        return Retry(f"HTTP {status}: {message}", retry_after_seconds(headers))
    return PermanentBackendError(f"HTTP {status} from {where}: {message}")
