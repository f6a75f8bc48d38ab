"""A real, local OpenAI-compatible chat-completions server for tests, with scripted faults.

:class:`FakeOpenAIServer` is a stdlib ``ThreadingHTTPServer`` bound to ``127.0.0.1`` on a free port,
serving ``POST /v1/chat/completions`` and ``GET /v1/models`` in a background thread::

    with FakeOpenAIServer(faults=FaultPlan(rate=0.3, kinds=["429", "reset"], seed=1)) as srv:
        client = OpenAIChatClient(srv.base_url, "fake-model")
        ...
        assert client.completions_received == srv.completions_served

It keeps honest books, so that a client's accounting can be checked against what really crossed
the wire:

* ``requests``: chat-completion requests received (faulty ones included);
* ``completions_generated``: choices the script produced, delivered or not (a truncated or
  malformed body, or an answer to a client that had already given up, loses them);
* ``completions_served``: choices in 200 responses whose body was valid JSON and was written to a
  connected client, and the ``prompt_tokens_served`` / ``completion_tokens_served`` reported in
  those responses' ``usage`` blocks (none for a "no-usage" fault);
* ``log``: ``(messages, params, n_returned)`` for every parsed request (``params`` is the body
  without ``messages``; ``n_returned`` is 0 when no valid choices were delivered);
* ``max_in_flight``: the largest number of chat requests the server was handling at once;
* ``faults_injected``: how many of each fault kind were injected.

Usage is booked as reported: an inflated or negative count is added as sent, a non-numeric or
missing one is not added.

Nothing here imports the OpenAI SDK: the server speaks plain HTTP/1.1 and JSON.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import select
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

__all__ = [
    "FAULT_KINDS",
    "HOSTILE_KINDS",
    "FakeOpenAIServer",
    "FaultPlan",
    "Script",
    "default_script",
]

#: ``script(messages, params, draw) -> text``: ``draw`` is a per-choice integer seed derived from
#: the request's seed (``params["seed"]`` if the client sent one, else the server's seed and the
#: request's arrival number) and the choice index.
Script = Callable[[list[dict[str, Any]], dict[str, Any], int], str]

FAULT_KINDS: tuple[str, ...] = (
    "429",
    "429-no-retry-after",
    "500",
    "502",
    "503",
    "timeout",
    "reset",
    "truncated",
    "malformed",
    "no-usage",
    "fewer-choices",
)
#: Faults of a server that misbehaves rather than fails (not in the default ``kinds``): it lies
#: about usage, answers more than was asked, or trickles its answer.
HOSTILE_KINDS: tuple[str, ...] = (
    "inflated-usage",
    "negative-usage",
    "non-numeric-usage",
    "partial-usage",
    "extra-choices",
    "drip",
)
_PERMANENT = ("400", "401", "403", "404", "422")


@dataclass(frozen=True)
class FaultPlan:
    """Which requests fail, and how.

    Request number ``i`` (arrival order, from 0) gets ``sequence[i]`` when ``i < len(sequence)``
    (``None`` = no fault); after that, a seeded draw injects one of ``kinds`` with probability
    ``rate``. Faults:

    * ``"429"``: rate limited, with ``Retry-After: <retry_after>``;
      ``"429-no-retry-after"``: the same without the header;
    * ``"500"``, ``"502"`` (an HTML proxy page), ``"503"``: server errors;
    * ``"timeout"``: the server sleeps ``hang`` seconds, then answers only if the client is still
      connected (a client with a shorter timeout has gone and gets nothing);
    * ``"reset"``: the connection is closed (RST) without a response;
    * ``"truncated"``: a 200 whose JSON body is cut in half (consistent Content-Length);
    * ``"malformed"``: a 200 whose body is not JSON;
    * ``"no-usage"``: a valid 200 without a ``usage`` block;
    * ``"fewer-choices"``: a valid 200 with fewer choices than ``n`` asked (between ⌈n/2⌉ and
      n − 1, so at least 2 when n ≥ 3; a request for one choice gets its one choice).

    Hostile kinds (:data:`HOSTILE_KINDS`, never drawn unless listed in ``kinds``/``sequence``):

    * ``"inflated-usage"``: ``usage.completion_tokens`` is ``inflate`` (default 100,000), whatever
      ``max_tokens`` was;
    * ``"negative-usage"``: ``usage.completion_tokens`` is ``-5``;
    * ``"non-numeric-usage"``: ``usage.completion_tokens`` is the string ``"many"``;
    * ``"partial-usage"``: ``usage`` has ``prompt_tokens`` only;
    * ``"extra-choices"``: ``extra`` more choices than ``n`` asked (default 2), all billed;
    * ``"drip"``: a valid 200 whose body is written one byte every ``drip`` seconds.
    """

    rate: float = 0.0
    kinds: Sequence[str] = FAULT_KINDS
    seed: int = 0
    hang: float = 2.0
    retry_after: float = 0.05
    sequence: Sequence[str | None] = ()
    inflate: int = 100_000
    extra: int = 2
    drip: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        object.__setattr__(self, "sequence", tuple(self.sequence))
        unknown = [
            k
            for k in (*self.kinds, *self.sequence)
            if k is not None and k not in FAULT_KINDS + HOSTILE_KINDS
        ]
        if unknown:
            valid = ", ".join(FAULT_KINDS + HOSTILE_KINDS)
            raise ValueError(f"unknown fault kind(s) {unknown}; valid: {valid}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be in [0, 1], got {self.rate}")
        if self.rate > 0 and not self.kinds:
            raise ValueError("a positive fault rate needs at least one fault kind")


def _blake(*parts: object) -> int:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big")


def default_script(messages: list[dict[str, Any]], params: dict[str, Any], draw: int) -> str:
    """Deterministic chain-of-thought-ish text ending in "The answer is N".

    The question (the messages) fixes a majority answer; each draw gives it with probability about
    0.55 and otherwise one of three distractors, so majority vote is better than one sample but not
    trivially right. Lengths vary with the draw. With ``temperature == 0`` every draw is the
    majority answer with the same text (greedy decoding).
    """
    base = _blake("q", messages)
    majority = 10 + base % 90
    greedy = params.get("temperature") == 0
    rng = random.Random(0 if greedy else _blake("d", base, draw))
    u = rng.random()
    if greedy or u < 0.55:
        answer = majority
    else:
        answer = (majority + 1, majority - 3, 2 * majority)[rng.randrange(3)]
    steps = rng.randint(1, 6)
    lines = ["Let me work through this step by step."]
    lines += [
        f"Step {i}: combine the quantities {rng.randint(2, 99)} and so on." for i in range(1, steps)
    ]
    lines.append(f"The answer is {answer}")
    return "\n".join(lines)


def _words(text: str) -> int:
    return len(text.split())


def _error_body(
    message: str, type_: str, code: str | int | None = None, param: str | None = None
) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    ).encode()


#: How each usage fault rewrites an honest ``usage`` block.
_USAGE_LIES: dict[str, Callable[[dict[str, Any], FaultPlan], dict[str, Any]]] = {
    "inflated-usage": lambda usage, plan: {**usage, "completion_tokens": plan.inflate},
    "negative-usage": lambda usage, plan: {**usage, "completion_tokens": -5},
    "non-numeric-usage": lambda usage, plan: {**usage, "completion_tokens": "many"},
    "partial-usage": lambda usage, plan: {"prompt_tokens": usage["prompt_tokens"]},
}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    fake: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-response (a cancelled request) is normal traffic here, not
        an error to print: a client under test cancels its in-flight requests when one fails."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    server_version = "FakeOpenAI/1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read counters, not access logs."""

    # -- plumbing ---------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> bool:
        """Write a full response; False if the client had gone."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
            return False
        return True

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _authorised(self) -> bool:
        fake = self.server.fake
        if fake.api_key is None:
            return True
        auth = self.headers.get("Authorization") or ""
        given = auth[len("Bearer ") :] if auth.startswith("Bearer ") else auth
        if given == fake.api_key:
            return True
        # Deliberately hostile, worse than the real API (which masks it): echo the key we got, so
        # that tests prove clients keep keys out of their error messages.
        self._send(
            401,
            _error_body(
                f"Incorrect API key provided: {given}.", "invalid_request_error", "invalid_api_key"
            ),
        )
        return False

    def _peer_closed(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            peek: bytes = self.connection.recv(1, socket.MSG_PEEK)
            return peek == b""
        except OSError:
            return True

    def _reset(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    # -- routes -----------------------------------------------------------------------------

    def do_GET(self) -> None:
        if not self._authorised():
            return
        fake = self.server.fake
        if self.path.rstrip("/") == "/v1/models":
            data = {
                "object": "list",
                "data": [{"id": fake.model, "object": "model", "created": 0, "owned_by": "iapo"}],
            }
            self._send(200, json.dumps(data).encode())
        else:
            self._send(404, _error_body(f"Unknown path {self.path}", "invalid_request_error"))

    def do_POST(self) -> None:
        raw = self._read_body()
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, _error_body(f"Unknown path {self.path}", "invalid_request_error"))
            return
        fake = self.server.fake
        number = fake._arrive()
        try:
            self._chat(raw, number)
        finally:
            fake._leave()

    def _chat(self, raw: bytes, number: int) -> None:
        fake = self.server.fake
        if not self._authorised():
            return
        if fake.permanent is not None:
            status = int(fake.permanent)
            canned = {
                400: (
                    "Invalid request: 'messages' is malformed (injected).",
                    "invalid_request_error",
                    None,
                ),
                401: (
                    "Invalid authentication (injected).",
                    "invalid_request_error",
                    "invalid_api_key",
                ),
                403: (
                    "You are not allowed to use this model (injected).",
                    "permission_error",
                    None,
                ),
                404: (
                    f"The model `{fake.model}` does not exist (injected).",
                    "invalid_request_error",
                    "model_not_found",
                ),
                422: ("Unprocessable entity (injected).", "invalid_request_error", None),
            }
            msg, type_, code = canned[status]
            self._send(status, _error_body(msg, type_, code))
            return
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("body is not an object")
        except ValueError:
            self._send(
                400,
                _error_body(
                    "We could not parse the JSON body of your request.", "invalid_request_error"
                ),
            )
            return
        model = body.get("model")
        if model != fake.model:
            self._send(
                404,
                _error_body(
                    f"The model `{model}` does not exist or you do not have access to it.",
                    "invalid_request_error",
                    "model_not_found",
                    "model",
                ),
            )
            return
        messages = body.get("messages")
        n: Any = body.get("n", 1)
        n = 1 if n is None else n
        ok_messages = (
            isinstance(messages, list)
            and bool(messages)
            and all(
                isinstance(m, dict)
                and isinstance(m.get("content"), str)
                and isinstance(m.get("role"), str)
                for m in messages
            )
        )
        if not ok_messages or not isinstance(n, int) or isinstance(n, bool) or n < 1 or n > 128:
            what = "messages" if not ok_messages else "n"
            self._send(
                400,
                _error_body(f"Invalid value for '{what}'.", "invalid_request_error", None, what),
            )
            return
        assert isinstance(messages, list)
        params = {k: v for k, v in body.items() if k != "messages"}
        if fake.native_n == "reject" and n != 1:
            # What current llama.cpp server does (a runtime_error mapped to HTTP 500).
            fake._record(messages, params, 0)
            self._send(
                500, _error_body("Only one completion choice is allowed", "server_error", 500)
            )
            return

        fault = fake._draw_fault(number)
        if fake.latency > 0:
            time.sleep(fake.latency)
        plan = fake.faults
        if fault in ("429", "429-no-retry-after"):
            fake._record(messages, params, 0)
            headers = {"Retry-After": f"{plan.retry_after:g}"} if fault == "429" and plan else {}
            self._send(
                429,
                _error_body(
                    "Rate limit reached for requests (injected).", "requests", "rate_limit_exceeded"
                ),
                headers=headers,
            )
            return
        if fault in ("500", "503"):
            fake._record(messages, params, 0)
            text = "The server had an error while processing your request (injected)."
            self._send(int(fault), _error_body(text, "server_error"))
            return
        if fault == "502":
            fake._record(messages, params, 0)
            self._send(
                502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html"
            )
            return
        if fault == "reset":
            fake._record(messages, params, 0)
            self._reset()
            return

        returned = n if fake.native_n is True else 1
        if fault == "fewer-choices" and returned >= 2:
            rng = random.Random(_blake("fewer", fake.seed, number))
            returned = rng.randint((returned + 1) // 2, returned - 1)
        if fault == "extra-choices" and plan is not None:
            returned += plan.extra
        request_seed = (
            body["seed"] if isinstance(body.get("seed"), int) else _blake("req", fake.seed, number)
        )
        choices = []
        completion_tokens = 0
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        for i in range(returned):
            text = fake.script(messages, params, _blake("choice", request_seed, i))
            finish = "stop"
            if isinstance(max_tokens, int) and max_tokens > 0 and _words(text) > max_tokens:
                text = " ".join(text.split()[:max_tokens])
                finish = "length"
            completion_tokens += _words(text)
            choices.append(
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            )
        prompt_tokens = sum(_words(m["content"]) for m in messages)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if fault in _USAGE_LIES and plan is not None:
            usage = _USAGE_LIES[fault](usage, plan)
        response: dict[str, Any] = {
            "id": f"chatcmpl-fake-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": fake.model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }
        if fault != "no-usage":
            response["usage"] = usage
        fake._generated(returned)

        if fault == "timeout":
            time.sleep(plan.hang if plan else 0.0)
            if self._peer_closed():
                fake._record(messages, params, 0)
                self.close_connection = True
                return
        payload = json.dumps(response).encode()
        if fault == "truncated":
            fake._record(messages, params, 0)
            self._send(200, payload[: len(payload) // 2])
            return
        if fault == "malformed":
            fake._record(messages, params, 0)
            self._send(200, b"upstream says: <<not json>>")
            return
        # Book the delivery before writing it, so that the books are already right when the
        # client sees the response; take it back if the client had gone.
        served_usage = usage if "usage" in response else None
        if fault == "drip" and plan is not None:

            def book(sign: int) -> None:
                if sign:
                    fake._served(sign * returned, served_usage, messages, params)
                else:
                    fake._record(messages, params, 0)

            self._drip(payload, plan.drip, book)
            return
        fake._served(returned, served_usage, messages, params)
        if not self._send(200, payload):
            fake._served(-returned, served_usage, messages, params)

    def _drip(self, payload: bytes, every: float, book: Callable[[int], None]) -> None:
        """A 200 whose body goes out one byte every ``every`` seconds: booked (``book(1)``) just
        before its last byte, taken back (``book(-1)``) if that byte could not be written, and
        logged as undelivered (``book(0)``) if the client went before."""
        booked = False
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.flush()
            for i in range(len(payload)):
                time.sleep(every)
                if i == len(payload) - 1:
                    book(1)
                    booked = True
                self.wfile.write(payload[i : i + 1])
                self.wfile.flush()
        except OSError:
            self.close_connection = True
            book(-1 if booked else 0)


@dataclass
class _Books:
    requests: int = 0
    completions_generated: int = 0
    completions_served: int = 0
    prompt_tokens_served: int = 0
    completion_tokens_served: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    faults_injected: Counter[str] = field(default_factory=Counter)
    log: list[tuple[list[dict[str, Any]], dict[str, Any], int]] = field(default_factory=list)


class FakeOpenAIServer:
    """An OpenAI-compatible chat-completions server on ``127.0.0.1`` (see the module doc).

    ``native_n``: ``True`` returns ``n`` choices; ``False`` ignores ``n`` and returns one (like
    llama-cpp-python's server); ``"reject"`` answers ``n != 1`` with HTTP 500 "Only one completion
    choice is allowed" (like current llama.cpp ``llama-server``). ``api_key``: if set, requests
    without ``Authorization: Bearer <api_key>`` get 401. ``permanent``: ``"400"``, ``"401"``,
    ``"403"``, ``"404"`` or ``"422"`` makes every chat request fail that way. ``latency`` seconds
    are slept before each answer. ``seed`` seeds the per-request draws.
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        latency: float = 0.0,
        native_n: bool | Literal["reject"] = True,
        faults: FaultPlan | None = None,
        model: str = "fake-model",
        api_key: str | None = None,
        permanent: str | None = None,
        seed: int = 0,
    ) -> None:
        if permanent is not None and permanent not in _PERMANENT:
            raise ValueError(f"permanent must be one of {', '.join(_PERMANENT)}, got {permanent!r}")
        self.script: Script = script or default_script
        self.latency = float(latency)
        self.native_n = native_n
        self.faults = faults
        self.model = model
        self.api_key = api_key
        self.permanent = permanent
        self.seed = int(seed)
        self._lock = threading.Lock()
        self._books = _Books()
        self._fault_rng = random.Random(faults.seed if faults else 0)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never shows the key
        state = self.base_url if self._httpd else "stopped"
        return f"FakeOpenAIServer(model={self.model!r}, native_n={self.native_n!r}, {state})"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        if self._httpd is not None:
            return self
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- books (thread-safe) ----------------------------------------------------------------

    def _arrive(self) -> int:
        with self._lock:
            number = self._books.requests
            self._books.requests += 1
            self._books.in_flight += 1
            self._books.max_in_flight = max(self._books.max_in_flight, self._books.in_flight)
            return number

    def _leave(self) -> None:
        with self._lock:
            self._books.in_flight -= 1

    def _draw_fault(self, number: int) -> str | None:
        plan = self.faults
        if plan is None:
            return None
        with self._lock:
            if number < len(plan.sequence):
                fault = plan.sequence[number]
            elif plan.rate > 0 and self._fault_rng.random() < plan.rate:
                fault = self._fault_rng.choice(list(plan.kinds))
            else:
                fault = None
            if fault is not None:
                self._books.faults_injected[fault] += 1
            return fault

    def _record(
        self, messages: list[dict[str, Any]], params: dict[str, Any], n_returned: int
    ) -> None:
        with self._lock:
            self._books.log.append((messages, params, n_returned))

    def _generated(self, k: int) -> None:
        with self._lock:
            self._books.completions_generated += k

    def _served(
        self,
        k: int,
        usage: Mapping[str, Any] | None,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
    ) -> None:
        """Book ``k`` delivered choices (``k < 0``: take back a delivery that failed) and the
        usage reported with them (integer counts as sent; anything else is not booked)."""
        sign = 1 if k >= 0 else -1
        usage = usage or {}
        with self._lock:
            self._books.completions_served += k
            for name in ("prompt_tokens", "completion_tokens"):
                value = usage.get(name)
                if isinstance(value, int) and not isinstance(value, bool):
                    setattr(
                        self._books,
                        f"{name}_served",
                        getattr(self._books, f"{name}_served") + sign * value,
                    )
            if k >= 0:
                self._books.log.append((messages, params, k))
                return
            for i in range(len(self._books.log) - 1, -1, -1):
                if self._books.log[i][0] is messages:
                    self._books.log[i] = (messages, params, 0)
                    break

    @property
    def requests(self) -> int:
        with self._lock:
            return self._books.requests

    @property
    def completions_generated(self) -> int:
        with self._lock:
            return self._books.completions_generated

    @property
    def completions_served(self) -> int:
        with self._lock:
            return self._books.completions_served

    @property
    def prompt_tokens_served(self) -> int:
        with self._lock:
            return self._books.prompt_tokens_served

    @property
    def completion_tokens_served(self) -> int:
        with self._lock:
            return self._books.completion_tokens_served

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._books.in_flight

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._books.max_in_flight

    @property
    def faults_injected(self) -> dict[str, int]:
        with self._lock:
            return dict(self._books.faults_injected)

    @property
    def log(self) -> list[tuple[list[dict[str, Any]], dict[str, Any], int]]:
        with self._lock:
            return list(self._books.log)
