"""Attempts after the first: the SDK's own request, sent again without rebuilding it.

``AsyncOpenAI.post`` rebuilds the whole request for every attempt (options copied twice, the URL
merged and parsed, every header validated), then hands it through httpx's models to the HTTP
stack: together more CPU per request than the HTTP stack itself (``benchmarks/bench_live.py``).
The request the SDK sends differs between attempts only in its body. So :class:`DirectPost`
keeps the first chat-completions request the SDK sends (an httpx request hook on the SDK's own
HTTP client, :meth:`DirectPost.learn`): its URL and every header (authorization, user agent,
the SDK's ``X-Stainless-*``). Later attempts send those with another body over aiohttp
straight, on a session of the same size, TLS settings and timeouts as the SDK's aiohttp
transport: the same request line, headers and body bytes (only ``Accept-Encoding`` is limited
to what aiohttp decodes: gzip, deflate). Responses come back as a :class:`Reply` whatever the
status; the caller maps statuses and failures exactly as it maps the SDK's
(``iapo.chat_client._retry.status_error``; aiohttp's exceptions as connection failures, the
total deadline as before). Used under ``http_client: aiohttp`` (the default); under ``httpx``
every attempt goes through the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iapo.chat_client._transport import ssl_context

__all__ = ["DirectPost", "Reply"]


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole HTTP response: what the client reads of one."""

    status_code: int
    content: bytes
    reason_phrase: str
    headers: Any  # a case-insensitive mapping

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class DirectPost:
    """The SDK's chat-completions request, sent again with other bodies (module docstring).

    ``connections``: the most connections to keep; ``timeout``: per phase (connect, read), as
    the SDK's. Until the SDK has sent its first request, :attr:`ready` is False: the caller
    uses the SDK.
    """

    def __init__(self, connections: int, timeout: float, path: str = "/chat/completions") -> None:
        self.connections = connections
        self.timeout = timeout
        self.path = path
        self._session: Any = None  # made on first use, on the running loop
        self._url: str | None = None
        self._headers: dict[str, str] = {}

    @property
    def ready(self) -> bool:
        return self._url is not None

    async def learn(self, request: Any) -> None:
        """Keep the first POST to ``path`` that the SDK sends (without its length header)."""
        if self._url is None and request.method == "POST" and request.url.path.endswith(self.path):
            headers = {k.lower(): v for k, v in request.headers.multi_items()}
            headers.pop("content-length", None)
            headers["accept-encoding"] = "gzip, deflate"
            self._headers, self._url = headers, str(request.url)

    async def post(self, content: bytes) -> Reply:
        """``content`` POSTed as the learned request; the whole response."""
        assert self._url is not None, "post() before the SDK's first request"
        session = self._session or self._open()
        async with session.post(self._url, data=content, headers=self._headers) as resp:
            body = await resp.read()
            return Reply(resp.status, body, resp.reason or "", resp.headers)

    def _open(self) -> Any:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=max(100, 2 * self.connections), ssl=ssl_context())
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeout, sock_read=self.timeout
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)
        )
        return self._session

    async def close(self) -> None:
        """Close the session, if one was opened."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()
