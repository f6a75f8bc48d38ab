"""The ``http`` scorer: scores from your HTTP endpoint, one POST per pull."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from iapo.chat_client import public_url
from iapo.errors import ConfigError, PermanentBackendError, TransientBackendError
from iapo.types import Query

__all__ = ["HttpScorer", "http"]


class HttpScorer:
    """Scores from your HTTP endpoint, one POST per pull. The contract:

    request (``Content-Type: application/json``)::

        {"texts": ["completion 1", ...], "query": {"id": "q1", "text": "...", "gold": "42"|null}}

    response (HTTP 200, JSON)::

        {"scores": [0.7, ...]}                    # one number per text, in order, or
        {"scores": [{"score": 0.7, ...}, ...]}    # one object per text; ``field`` is read

    5xx answers, timeouts and broken connections are retried (``max_attempts`` in all, with
    exponential backoff from ``backoff`` seconds); after that
    :class:`~iapo.errors.TransientBackendError`. Any other status, or a 200 body that breaks the
    contract, raises :class:`~iapo.errors.PermanentBackendError` (the endpoint is misconfigured).
    The id covers the URL and ``field``; bump ``version`` when the endpoint's scoring changes.
    """

    def __init__(
        self,
        url: str,
        *,
        field: str = "score",
        timeout: float = 30.0,
        max_attempts: int = 4,
        backoff: float = 0.5,
        version: str | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"http scorer: url must start with http:// or https://, got {url!r}")
        if max_attempts < 1 or timeout <= 0 or backoff < 0:
            raise ValueError("http scorer: need max_attempts >= 1, timeout > 0, backoff >= 0")
        self.url = url
        self.field = field
        self.timeout = float(timeout)
        self.max_attempts = int(max_attempts)
        self.backoff = float(backoff)
        self.retries = 0
        self._public = public_url(url)  # no credentials in ids or messages
        self.id = f"http:{self._public}:{field}" + (f":{version}" if version else "") + "@1"

    def __repr__(self) -> str:
        return f"HttpScorer({self._public!r}, field={self.field!r})"

    def _post(self, body: bytes) -> tuple[int, bytes]:
        req = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), b""

    def _parse(self, body: bytes, n: int) -> list[float]:
        bad = f"http scorer {self._public}: "
        try:
            data = json.loads(body)
        except ValueError:
            raise PermanentBackendError(bad + "response is not JSON") from None
        scores = data.get("scores") if isinstance(data, dict) else None
        if not isinstance(scores, list) or len(scores) != n:
            got = len(scores) if isinstance(scores, list) else "no"
            raise PermanentBackendError(bad + f'expected {{"scores": [{n} values]}}, got {got}')
        out = []
        for item in scores:
            value = item.get(self.field) if isinstance(item, dict) else item
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PermanentBackendError(bad + f"score {value!r} is not a number")
            out.append(float(value))
        return out

    async def score(self, texts: Sequence[str], query: Query) -> list[float]:
        body = json.dumps(
            {
                "texts": list(texts),
                "query": {"id": query.id, "text": query.text, "gold": query.gold},
            }
        ).encode()
        for attempt in range(1, self.max_attempts + 1):
            try:
                status, payload = await asyncio.to_thread(self._post, body)
            except (OSError, urllib.error.URLError) as exc:  # refused, reset, timed out
                reason = f"connection failed ({type(exc).__name__})"
            else:
                if status == 200:
                    return self._parse(payload, len(texts))
                if status < 500:
                    raise PermanentBackendError(f"http scorer {self._public}: HTTP {status}")
                reason = f"HTTP {status}"
            if attempt == self.max_attempts:
                raise TransientBackendError(
                    f"http scorer {self._public}: gave up after {attempt} attempts; last: {reason}"
                )
            self.retries += 1
            await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover


def http(url: str, *, field: str = "score", timeout: float = 30.0, **kw: Any) -> HttpScorer:
    """Scores from an HTTP endpoint (the contract is on :class:`HttpScorer`)."""
    return HttpScorer(url, field=field, timeout=timeout, **kw)
