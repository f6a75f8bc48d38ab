"""The HTTP stack under the ``openai`` SDK: aiohttp (``openai[aiohttp]``) or a tuned httpx pool.

The SDK's own default (``AsyncOpenAI()`` with nothing passed) spends 1.5–2 ms of CPU per request
in httpx and keeps at most 100 idle connections; with aiohttp underneath, a connection pool
sized to the client's concurrency and requests sent through the SDK's ``post`` (which skips the
per-request type-driven transform of ``chat.completions.create``, a third of its CPU), the
same requests cost about half as much and keep up with the endpoint at concurrency 128
(``benchmarks/bench_live.py``). Statuses, timeouts and connection failures still surface as the
SDK's exceptions (``APIStatusError``, ``APITimeoutError``, ``APIConnectionError``); what
aiohttp raises that the SDK does not map is listed in :func:`transport_errors`.

The certificate store is loaded once per process (``ssl_context``), not once per client.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
import inspect
import json
import ssl
from collections.abc import Awaitable, Callable, Mapping
from types import ModuleType
from typing import Any, Literal

from iapo.errors import ConfigError

__all__ = [
    "HTTP_CLIENTS",
    "HttpClient",
    "close_with_loop",
    "default_http_client",
    "dropped_connection",
    "encode_json",
    "make_sdk_client",
    "post_args",
    "ssl_context",
    "transport_errors",
    "transport_timeouts",
]

HttpClient = Literal["aiohttp", "httpx"]
#: The HTTP stacks the client can put under the SDK, the default first.
HTTP_CLIENTS: tuple[HttpClient, ...] = ("aiohttp", "httpx")


def _has_aiohttp() -> bool:
    import openai

    return importlib.util.find_spec("aiohttp") is not None and hasattr(
        openai, "DefaultAioHttpClient"
    )


def default_http_client() -> HttpClient:
    """``"aiohttp"`` where the SDK supports it and aiohttp is installed, else ``"httpx"``."""
    return "aiohttp" if _has_aiohttp() else "httpx"


def check_http_client(kind: str) -> HttpClient:
    """``kind`` if it can be used here; a :class:`~iapo.errors.ConfigError` saying what to install
    otherwise."""
    if kind == "httpx":
        return "httpx"
    if kind == "aiohttp":
        if not _has_aiohttp():
            raise ConfigError(
                "http_client 'aiohttp' needs openai>=1.89 with aiohttp: "
                "pip install 'openai[aiohttp]>=1.89' (or set http_client: httpx)",
                field="backend.http_client",
            )
        return "aiohttp"
    raise ValueError(f"http_client must be one of {list(HTTP_CLIENTS)}, got {kind!r}")


@functools.cache
def _httpx() -> ModuleType:
    """The httpx module the installed SDK is built on (``httpx2`` in openai 3, ``httpx`` before)."""
    import openai

    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if issubclass(openai.DefaultAsyncHttpxClient, module.AsyncClient):
            return module
    raise ConfigError("cannot tell which httpx the installed openai SDK uses", field="backend")


def post_args(oai: Any) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """``body`` → the keyword arguments of ``oai.post`` that send it and return the raw response:
    encoded here where the SDK takes raw ``content``, else as ``body``. (``create`` walks the
    body against the SDK's request types first, a third of the SDK's CPU; ``post(body=…)``
    deep-copies it per attempt.)"""
    cast_to = _httpx().Response
    if "content" in inspect.signature(oai.post).parameters:
        return lambda body: {"cast_to": cast_to, "content": encode_json(body)}
    return lambda body: {"cast_to": cast_to, "body": dict(body)}


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """The default verifying context (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` honoured), loaded once
    per process: loading the store costs tens of milliseconds per client otherwise."""
    ctx: ssl.SSLContext = _httpx().create_ssl_context()
    return ctx


def make_sdk_client(
    kind: HttpClient,
    base_url: str | None,
    api_key: str,
    timeout: float,
    concurrency: int,
    learn: Callable[[Any], Awaitable[None]] | None = None,
) -> Any:
    """An ``openai.AsyncOpenAI`` with its own retries off over the ``kind`` HTTP stack, with room
    for ``concurrency`` kept-alive connections (the SDK's default keeps 100); ``learn`` is shown
    every request the SDK sends (an httpx request hook)."""
    import openai

    limits = _httpx().Limits(
        max_connections=max(100, 2 * concurrency), max_keepalive_connections=concurrency
    )
    factory: Callable[..., Any] = (
        openai.DefaultAioHttpClient if kind == "aiohttp" else openai.DefaultAsyncHttpxClient
    )
    hooks = {"request": [learn]} if learn is not None else {}
    http = factory(timeout=timeout, limits=limits, verify=ssl_context(), event_hooks=hooks)
    return openai.AsyncOpenAI(
        base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout, http_client=http
    )


@functools.cache
def transport_errors() -> tuple[type[BaseException], ...]:
    """What a failed attempt raises other than a timeout, when it does not come as the SDK's
    ``APIConnectionError``: what aiohttp raises that the SDK does not map (a garbled status line
    or header is an ``aiohttp.ClientError``, passed on as is), and on the direct path
    (:class:`DirectPost`) what the SDK would have mapped (httpx's ``RequestError``, TLS
    failures)."""
    errors: tuple[type[BaseException], ...] = (_httpx().RequestError, ssl.SSLError)
    if importlib.util.find_spec("aiohttp") is None:
        return errors
    import aiohttp

    return (aiohttp.ClientError, *errors)


@functools.cache
def transport_timeouts() -> tuple[type[BaseException], ...]:
    """What a timed-out attempt raises: the SDK's ``APITimeoutError``, or httpx's own timeout
    where the SDK did not wrap it."""
    import openai

    return (openai.APITimeoutError, _httpx().TimeoutException)


def encode_json(body: Mapping[str, Any]) -> bytes:
    """A request body as the SDK encodes it (compact UTF-8 JSON, no NaN or infinity)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def dropped_connection(exc: BaseException) -> str:
    """Why a request failed without an answer, from the deepest cause the SDK chained to ``exc``:
    aiohttp's dropped connections reach the SDK as httpx connect timeouts, and are no timeout."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    if root is exc or isinstance(root, TimeoutError) or "Timeout" in type(root).__name__:
        return ""
    return type(root).__name__


async def _close_at_end(clients: tuple[Any, ...]) -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        for client in clients:
            await client.close()
        raise


def close_with_loop(*clients: Any) -> asyncio.Task[None]:
    """A task that closes ``clients`` (each with ``await close()``) when the running loop ends
    (``asyncio.run`` cancels the tasks still pending), so that a client left open by its caller
    releases its connections on its own loop instead of leaving aiohttp to complain about an
    unclosed session; cancel it to close earlier."""
    task = _close_at_end(clients)
    return asyncio.get_running_loop().create_task(task, name="iapo-http-close")
