"""The ASGI application: routes, limits, auth, and the policy's answers on one event loop."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from iapo.deploy import Answer, Policy
from iapo.errors import BackendError, ConfigError
from iapo.fmt import strict_json
from iapo.serve._limits import Limits
from iapo.serve._protocol import (
    ApiError,
    completion,
    completion_chunks,
    error_body,
    parse_chat,
)

__all__ = ["make_app"]

log = logging.getLogger("iapo.serve")


class _Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        return strict_json(content).encode()


def _error(exc: ApiError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return _Json(exc.body(), status_code=exc.status, headers=headers)


def _check_auth(request: Request, key: bytes | None) -> None:
    if key is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    ok = scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key)
    if not ok:
        raise ApiError(
            401,
            "missing or wrong API key: send 'Authorization: Bearer <key>' (the key in the "
            "server's --api-key-env variable)",
            code="invalid_api_key",
        )


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    too_big = ApiError(
        413,
        f"the request body exceeds {limit} bytes (the server's --max-body)",
        code="request_too_large",
    )
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "Content-Length is not a number") from None
        if size > limit:
            raise too_big
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise too_big
        parts.append(part)
    return b"".join(parts)


def make_app(policy: Policy, limits: Limits) -> Starlette:
    """The OpenAI-compatible app for ``policy``: every request shares its one backend (and
    thereby its client's connection pool and its bound on requests in flight), on the server's
    one event loop; the backend is closed when the server shuts down."""
    key = limits.api_key.encode() if limits.api_key else None
    contexts = tuple(policy.arms)

    async def chat(request: Request) -> Response:
        _check_auth(request, key)
        ident = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        reading = True
        try:
            async with asyncio.timeout(limits.timeout):
                raw = await _read_body(request, limits.max_body)
                reading = False
                req = parse_chat(raw, contexts)
                ans = await policy.aask(req.question, req.context)
        except TimeoutError:
            if reading:
                raise ApiError(408, "the request body did not arrive in time") from None
            raise ApiError(
                504,
                f"no answer within {limits.timeout:g} s (the server's --timeout)",
                "timeout",
                code="timeout",
            ) from None
        except BackendError as exc:
            raise ApiError(502, f"the upstream endpoint failed: {exc}", "upstream_error") from None
        except ConfigError as exc:  # e.g. a replayed policy without a live backend
            log.error("cannot answer: %s", exc)
            raise ApiError(500, f"the server cannot answer: {exc}", "server_error") from None
        if not req.stream:
            return _Json(completion(ans, ident, created))
        return StreamingResponse(
            _sse(ans, ident, created, req.include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def models(request: Request) -> Response:
        _check_auth(request, key)
        data = [
            {"id": c, "object": "model", "created": 0, "owned_by": "iapo", "arm": str(a)}
            for c, a in policy.arms.items()
        ]
        return _Json({"object": "list", "data": data})

    async def health(request: Request) -> Response:
        return _Json({"status": "ok", "contexts": len(contexts)})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # requests differ: a permanent upstream error (a 400 for one over-long question) fails
        # its own request only, not every later one as it stops a run
        client = getattr(policy.backend, "client", None)
        if client is not None and hasattr(client, "sticky_errors"):
            client.sticky_errors = False
        try:
            yield
        finally:
            await policy.aclose()  # the client and its connection pool, on this loop

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = "not_found" if exc.status_code == 404 else None
        detail = f"{request.method} {request.url.path}: {exc.detail}"
        return _Json(error_body(detail, "invalid_request_error", code=code), exc.status_code)

    async def internal(request: Request, exc: Exception) -> Response:
        # Starlette re-raises it after this answer, and uvicorn logs it with its traceback
        return _Json(error_body(f"internal error ({type(exc).__name__})", "server_error"), 500)

    handlers: Mapping[Any, Any] = {
        ApiError: api_error,
        HTTPException: http_error,
        Exception: internal,
    }
    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers=dict(handlers),
        lifespan=lifespan,
    )


async def _sse(ans: Answer, ident: str, created: int, include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events: one ``data:`` line per chunk, then ``data: [DONE]``."""
    for chunk in completion_chunks(ans, ident, created, include_usage=include_usage):
        yield f"data: {strict_json(chunk)}\n\n"
    yield "data: [DONE]\n\n"
