"""The HTTP stacks under the client (aiohttp, httpx): same requests, same books, no leaks.

The fault semantics of both stacks are covered by running ``test_openai_backend.py`` and
``test_untrusted.py`` once per stack; here: what the stack itself could change.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from live_helpers import fast_client, script, write_config

import iapo
from iapo.backends import LLMBackend, OpenAIChatClient
from iapo.chat_client import HTTP_CLIENTS
from iapo.config import OpenAIBackendConfig, load_config
from iapo.errors import TransientBackendError
from iapo.testing import FAULT_KINDS, FakeOpenAIServer, FaultPlan

MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Ça va? 6×7"}]
ANSWER = {
    "id": "x",
    "object": "chat.completion",
    "choices": [
        {"index": i, "message": {"role": "assistant", "content": "42"}, "finish_reason": "stop"}
        for i in range(3)
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 3},
}


class _Recorder(BaseHTTPRequestHandler):
    """Keeps the method, path, headers and body of every request; answers three choices."""

    seen: ClassVar[list[tuple[str, str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        data = json.dumps(ANSWER).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[tuple[str, str, dict[str, str], bytes]]]]:
    seen: ClassVar[list[tuple[str, str, dict[str, str], bytes]]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1", seen
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("kind", HTTP_CLIENTS)
def test_the_request_is_the_one_the_sdks_create_sends(
    kind: str, recorder: tuple[str, list[tuple[str, str, dict[str, str], bytes]]]
) -> None:
    """The previous implementation (``chat.completions.create`` with ``extra_body``) is the
    oracle: same path, same JSON body, same content type and key."""
    import openai

    url, seen = recorder
    params = {"temperature": 0.5, "max_tokens": 7, "top_k": 3, "stop": ["\n"]}

    async def both() -> None:
        sdk = openai.AsyncOpenAI(base_url=url, api_key="k-123", max_retries=0)
        await sdk.chat.completions.with_raw_response.create(
            model="m", messages=MSGS, n=3, extra_body=params
        )
        await sdk.close()
        client = OpenAIChatClient(url, "m", api_key="k-123", http_client=kind)  # type: ignore[arg-type]
        assert len(await client.complete(MSGS, 3, params)) == 3
        await client.aclose()

    asyncio.run(both())
    (m0, path0, head0, body0), (m1, path1, head1, body1) = seen
    assert (m1, path1) == (m0, path0) == ("POST", "/v1/chat/completions")
    assert json.loads(body1) == json.loads(body0)
    assert body1 == body0  # byte for byte: the SDK's compact UTF-8 encoding
    for name in ("content-type", "authorization", "accept"):
        assert head1[name] == head0[name], name


@pytest.mark.parametrize("kind", HTTP_CLIENTS)
def test_every_attempt_sends_the_request_the_sdk_sends(
    kind: str, recorder: tuple[str, list[tuple[str, str, dict[str, str], bytes]]]
) -> None:
    """Attempts after the first skip the SDK's request builder under aiohttp (``DirectPost``):
    each request — path, body bytes, every header but the body's length and the encodings
    offered — is the one ``AsyncOpenAI.post`` sends for the same body."""
    import openai

    url, seen = recorder
    bodies = [{"temperature": t, "max_tokens": 7, "stop": ["\n"]} for t in (0.0, 0.5, 1.0)]

    async def both() -> None:
        sdk = openai.AsyncOpenAI(base_url=url, api_key="k-123", max_retries=0, timeout=120.0)
        client = OpenAIChatClient(url, "m", api_key="k-123", http_client=kind)  # type: ignore[arg-type]
        for params in bodies:
            await sdk.chat.completions.with_raw_response.create(
                model="m", messages=MSGS, n=3, extra_body=params
            )
            assert len(await client.complete(MSGS, 3, params)) == 3
        await sdk.close()
        await client.aclose()

    asyncio.run(both())
    assert len(seen) == 6
    # the oracle's own marker (``with_raw_response``), the length, the encodings offered
    skip = {"x-stainless-raw-response", "content-length", "accept-encoding", "host"}
    for (m0, path0, head0, body0), (m1, path1, head1, body1) in zip(
        seen[::2], seen[1::2], strict=True
    ):
        assert (m1, path1, body1) == (m0, path0, body0)
        assert {k: v for k, v in head1.items() if k not in skip} == {
            k: v for k, v in head0.items() if k not in skip
        }
        assert head1["host"].split(":")[0] == head0["host"].split(":")[0]
    assert [json.loads(b)["temperature"] for *_, b in seen[1::2]] == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("kind", HTTP_CLIENTS)
def test_a_live_run_with_every_fault_balances_its_books(
    kind: str, tmp_path: Path, secret: str
) -> None:
    plan = FaultPlan(rate=0.2, kinds=list(FAULT_KINDS), seed=5, hang=1.0)
    with FakeOpenAIServer(script, api_key=secret, faults=plan) as srv:
        cfg = write_config(
            tmp_path,
            srv.base_url,
            backend_extra=f"  http_client: {kind}\n  backoff: 0.01\n  max_backoff: 0.05\n"
            "  timeout: 0.5\n  max_attempts: 20",
        )
        s = iapo.setup(cfg)
        backend = s.make_backend()
        assert isinstance(backend, LLMBackend) and backend.client.http_client == kind
        result = iapo.run(s)
        acc = result.account
        assert acc["completions"] == acc["drawn"] <= 240
        assert srv.completions_served == acc["drawn"]
        assert srv.prompt_tokens_served == acc["prompt_tokens"]
        assert srv.completion_tokens_served == acc["completion_tokens"]
        assert sum(srv.faults_injected.values()) > 0


@pytest.mark.parametrize("kind", HTTP_CLIENTS)
def test_a_client_never_closed_leaves_nothing_behind_across_event_loops(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``Policy.ask`` runs each question in its own ``asyncio.run`` and never closes its client:
    each loop's pool is closed as that loop ends (before: an abandoned httpx pool was closed on
    the *next* loop and failed there, "Event loop is closed")."""
    with FakeOpenAIServer() as srv, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = fast_client(srv, http_client=kind)
        caplog.set_level(logging.WARNING)
        for _ in range(4):
            assert len(asyncio.run(client.complete(MSGS, 2, {}))) == 2
        del client
        gc.collect()
    assert srv.completions_served == 8
    bad = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert bad == []
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


@pytest.mark.parametrize("kind", HTTP_CLIENTS)
def test_a_dropped_connection_is_named_as_such(kind: str) -> None:
    # aiohttp's "server disconnected" reaches the SDK as an httpx *connect timeout*: the client
    # still says what happened
    with FakeOpenAIServer(faults=FaultPlan(rate=1.0, kinds=["reset"])) as srv:
        client = fast_client(srv, http_client=kind, max_attempts=2)
        with pytest.raises(TransientBackendError, match=r"connection failed \(\w+\)") as err:
            asyncio.run(client.complete(MSGS, 1, {}))
        assert "timed out" not in str(err.value)
        assert client.retries == 1 and srv.requests == 2


def test_http_client_is_an_option_that_changes_no_run_id(tmp_path: Path) -> None:
    base = write_config(tmp_path, "http://127.0.0.1:9/v1")
    ids = set()
    for extra in ("", "  http_client: httpx", "  http_client: aiohttp"):
        cfg = write_config(tmp_path, "http://127.0.0.1:9/v1", backend_extra=extra)
        backend = load_config(cfg).backend
        assert isinstance(backend, OpenAIBackendConfig)
        assert "http_client" not in backend.model_dump()
        ids.add(iapo.setup(cfg).run_id)
    assert len(ids) == 1 and base.exists()
    with pytest.raises(ValueError, match="http_client"):
        OpenAIBackendConfig.model_validate({"model": "m", "http_client": "requests"})
    with pytest.raises(ValueError, match="http_client must be one of"):
        OpenAIChatClient("http://127.0.0.1:9/v1", "m", http_client="requests")  # type: ignore[arg-type]
    client = OpenAIChatClient("http://127.0.0.1:9/v1", "m", http_client="httpx")
    assert "http_client='httpx'" in repr(client)
    assert OpenAIChatClient("http://127.0.0.1:9/v1", "m").http_client == "aiohttp"
