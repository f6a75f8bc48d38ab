"""``iapo serve``: an OpenAI-compatible proxy in front of a learned policy.

``POST /v1/chat/completions`` with ``model`` = a context name: the last user message is the
question; the context's arm (prompt, N) is sampled N times, aggregated, and returned as one
choice whose usage is the sum over the N samples. ``GET /v1/models`` lists the contexts.
"""

from __future__ import annotations

import errno
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from iapo.deploy import Policy
from iapo.errors import BackendError, ConfigError, InputError
from iapo.fmt import strict_json

__all__ = ["PolicyServer"]


class PolicyServer:
    """Serve ``policy`` on ``host:port`` (port 0: any free port) in a background thread.

    A port in use or out of range, or a host that does not resolve to a local address, is a
    :class:`~iapo.errors.ConfigError` naming ``--port`` or ``--host`` (nothing is served)."""

    def __init__(self, policy: Policy, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.policy = policy
        handler = type("Handler", (_Handler,), {"policy": policy})
        if not 0 <= port <= 65535:
            raise ConfigError(f"must be 0..65535 (got {port}): choose another port", field="--port")
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except socket.gaierror as exc:
            raise ConfigError(
                f"cannot resolve {host!r} ({exc.strerror}): give a local address such as "
                "127.0.0.1 or 0.0.0.0",
                field="--host",
            ) from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on {host} is in use: choose another --port (0: any free one)",
                    field="--port",
                ) from None
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}): give a local address "
                "(127.0.0.1, 0.0.0.0) and a free port",
                field="--host",
            ) from None
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> PolicyServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _error(status: int, message: str, kind: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": kind, "code": status}}


class _Handler(BaseHTTPRequestHandler):
    policy: Policy

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        return

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = strict_json(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            data = [
                {"id": c, "object": "model", "owned_by": "iapo", "arm": str(a)}
                for c, a in self.policy.arms.items()
            ]
            self._send(200, {"object": "list", "data": data})
        else:
            self._send(*_error(404, f"no route {self.path}", "not_found"))

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(*_error(404, f"no route {self.path}", "not_found"))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            req = json.loads(self.rfile.read(length) or b"{}")
            context = str(req["model"])
            users = [m for m in req["messages"] if m.get("role") == "user"]
            question = str(users[-1]["content"])
        except (ValueError, KeyError, IndexError, TypeError):
            self._send(*_error(400, "need 'model' (a context) and a user message", "invalid"))
            return
        if context not in self.policy.arms:
            known = ", ".join(self.policy.arms)
            self._send(*_error(404, f"unknown context {context!r}: use {known}", "not_found"))
            return
        try:
            ans = self.policy.ask(question, context)
        except (BackendError, InputError) as exc:
            self._send(*_error(502, str(exc), "upstream_error"))
            return
        prompt_t = int(ans.usage.get("prompt_tokens", 0))
        completion_t = int(ans.usage.get("completion_tokens", 0))
        self._send(
            200,
            {
                "id": f"iapo-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": context,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": ans.text or ""},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_t,
                    "completion_tokens": completion_t,
                    "total_tokens": prompt_t + completion_t,
                },
                "iapo": {"arm": str(ans.arm), "answer": ans.answer, "cost": ans.cost},
            },
        )
