"""The live-LLM client against a real HTTP server on loopback (no mocking of the OpenAI SDK)."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets
import sys
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from live_helpers import each_http_client, fast_client  # noqa: F401 (a fixture)

from iapo.answers import get_extractor
from iapo.backends import Completion, LLMBackend, OpenAIChatClient
from iapo.chat_client._body import Usage, parse_body, settle, split_proportional
from iapo.errors import ConfigError, PermanentBackendError, TransientBackendError
from iapo.testing import FAULT_KINDS, FakeOpenAIServer, FaultPlan
from iapo.types import PromptSpec, Query, Sample

#: every test runs on each HTTP stack (aiohttp, httpx): fault semantics must not depend on it
pytestmark = pytest.mark.usefixtures("each_http_client")
T = TypeVar("T")
MSGS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 6 times 7?"},
]


def run(coro_fn: Callable[[], Awaitable[T]], *owners: OpenAIChatClient | LLMBackend) -> T:
    """Run a coroutine in a fresh event loop, closing the owners' connection pools at its end."""

    async def main() -> T:
        try:
            return await coro_fn()
        finally:
            for owner in owners:
                await owner.aclose()

    return asyncio.run(main())


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def assert_books_balance(client: OpenAIChatClient, srv: FakeOpenAIServer) -> None:
    # let abandoned requests (a "timeout" fault sleeps past the client's timeout) finish first
    deadline = time.monotonic() + 5
    while srv.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.in_flight == 0
    assert client.requests_sent == srv.requests
    assert client.completions_received == srv.completions_served
    assert client.prompt_tokens == srv.prompt_tokens_served
    assert client.completion_tokens == srv.completion_tokens_served


# ------------------------------------------------------------------------------------------------
# native n, fan-out, auto-detection


def test_native_n_one_request_and_exact_token_split(server: FakeOpenAIServer) -> None:
    client = fast_client(server)

    async def go() -> list[Completion]:
        try:
            return await client.complete(MSGS, 5, {"temperature": 0.7, "max_tokens": 200})
        finally:
            await client.aclose()

    out = run(go)
    assert len(out) == 5
    assert server.requests == 1 and client.native_n is True
    (_, params, returned) = server.log[0]
    assert params["n"] == 5 and params["temperature"] == 0.7 and params["max_tokens"] == 200
    assert "seed" not in params  # i.i.d. samples: never a seed by default
    assert returned == 5
    # the prompt was billed once: its tokens are spread over the choices, summing exactly
    assert sum(c.prompt_tokens or 0 for c in out) == server.prompt_tokens_served == 7
    # per-choice completion tokens: split in proportion to text length, sum exact
    assert sum(c.completion_tokens or 0 for c in out) == server.completion_tokens_served
    assert all(c.finish_reason == "stop" and c.text for c in out)
    assert len({c.text for c in out}) > 1  # not one cached answer repeated
    assert_books_balance(client, server)


def test_fanout_mode_sends_n_single_requests(server: FakeOpenAIServer) -> None:
    client = fast_client(server, n_mode="fanout")

    async def go() -> list[Completion]:
        return await client.complete(MSGS, 4, {"temperature": 1.0})

    out = run(go, client)
    assert len(out) == 4 and server.requests == 4
    assert all("n" not in params and returned == 1 for _, params, returned in server.log)
    # fan-out bills the prompt in full on every request
    assert all(c.prompt_tokens == 7 for c in out)
    assert_books_balance(client, server)


def test_auto_detects_an_endpoint_that_ignores_n() -> None:
    with FakeOpenAIServer(native_n=False) as srv:  # like llama-cpp-python: n ignored, one choice
        client = fast_client(srv)

        async def go() -> tuple[list[Completion], list[Completion]]:
            first = await client.complete(MSGS, 5, {})
            second = await client.complete(MSGS, 4, {})
            return first, second

        first, second = run(go, client)
        assert len(first) == 5 and len(second) == 4
        assert client.native_n is False
        # 1 native request (1 choice back) + 4 fan-out; then 4 fan-out: 9, not 10
        assert srv.requests == 9
        log = srv.log
        assert log[0][1]["n"] == 5
        assert all("n" not in params for _, params, _ in log[1:])
        assert_books_balance(client, srv)


def test_auto_detects_an_endpoint_that_rejects_n() -> None:
    with FakeOpenAIServer(
        native_n="reject"
    ) as srv:  # like llama-server: 500 "Only one ... allowed"
        client = fast_client(srv)
        out = run(lambda: client.complete(MSGS, 5, {}), client)
        assert len(out) == 5 and client.native_n is False
        assert srv.requests == 6  # the rejected request is not retried
        assert client.retries == 0

        native = fast_client(srv, n_mode="native")
        before = srv.requests
        with pytest.raises(PermanentBackendError, match="does not support n > 1"):
            run(lambda: native.complete(MSGS, 3, {}), native)
        assert srv.requests == before + 1


def test_short_answer_is_refilled_without_switching_mode() -> None:
    with FakeOpenAIServer(faults=FaultPlan(sequence=["fewer-choices"])) as srv:
        client = fast_client(srv)
        out = run(lambda: client.complete(MSGS, 6, {}), client)
        assert len(out) == 6
        first_returned = srv.log[0][2]
        assert 3 <= first_returned <= 5
        assert srv.requests == 2 and srv.log[1][1].get("n", 1) == 6 - first_returned
        assert client.native_n is True
        assert_books_balance(client, srv)


def test_zero_completions_sends_nothing(server: FakeOpenAIServer) -> None:
    client = fast_client(server)
    assert run(lambda: client.complete(MSGS, 0, {}), client) == []
    assert server.requests == 0


def test_reserved_params_are_refused(server: FakeOpenAIServer) -> None:
    client = fast_client(server)
    with pytest.raises(ValueError, match="'n'"):
        run(lambda: client.complete(MSGS, 2, {"n": 3}), client)


def test_one_client_survives_several_event_loops(server: FakeOpenAIServer) -> None:
    client = fast_client(server)
    for _ in range(3):
        assert len(run(lambda: client.complete(MSGS, 2, {}), client)) == 2
    assert server.requests == 3


# ------------------------------------------------------------------------------------------------
# faults


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_fault_kind_still_returns_exactly_n(kind: str) -> None:
    # the first request always fails that way, then a seeded 30 % of the others
    plan = FaultPlan(rate=0.3, kinds=[kind], seed=7, hang=1.0, retry_after=0.01, sequence=[kind])
    with FakeOpenAIServer(faults=plan) as srv:
        client = fast_client(srv, timeout=0.3, max_attempts=10)

        async def go() -> list[list[Completion]]:
            calls = [
                client.complete([{"role": "user", "content": f"q{i}"}], 4, {}) for i in range(4)
            ]
            calls.append(client.complete([{"role": "user", "content": "solo"}], 1, {}))
            try:
                return list(await asyncio.gather(*calls))
            finally:
                await client.aclose()

        results = run(go)
        assert [len(r) for r in results] == [4, 4, 4, 4, 1]
        injected = srv.faults_injected.get(kind, 0)
        assert injected >= 1

        # Every choice the server delivered in a parseable 200 was received, and the client counts
        # nothing else: choices in a truncated or malformed body, or an answer to a request the
        # client had timed out on, were generated (and a real provider may bill them) but never
        # received.
        assert_books_balance(client, srv)
        lost = srv.completions_generated - srv.completions_served
        if kind in ("truncated", "malformed", "timeout"):
            assert lost > 0
        else:
            assert lost == 0
        if kind in ("no-usage", "fewer-choices"):
            assert client.retries == 0  # valid answers: nothing to retry
        else:
            assert client.retries == injected
        if kind == "no-usage":
            tokens = [c.completion_tokens for r in results for c in r]
            assert None in tokens  # not invented
        assert client.native_n is True  # faults never fool the auto-detection (n = 4)


def test_retry_after_is_honoured() -> None:
    plan = FaultPlan(sequence=["429"], retry_after=0.4)
    with FakeOpenAIServer(faults=plan) as srv:
        client = fast_client(srv)
        t0 = time.monotonic()
        out = run(lambda: client.complete(MSGS, 2, {}), client)
        elapsed = time.monotonic() - t0
    assert len(out) == 2 and client.retries == 1 and srv.requests == 2
    assert elapsed >= 0.4

    # the same 429 without the header waits only the (tiny) backoff
    with FakeOpenAIServer(faults=FaultPlan(sequence=["429-no-retry-after"])) as srv:
        client = fast_client(srv)
        t0 = time.monotonic()
        run(lambda: client.complete(MSGS, 2, {}), client)
        assert time.monotonic() - t0 < 0.3
        assert client.retries == 1


def test_excessive_retry_after_gives_up_at_once() -> None:
    with FakeOpenAIServer(faults=FaultPlan(sequence=["429"], retry_after=3600)) as srv:
        client = fast_client(srv)
        with pytest.raises(TransientBackendError, match="asks to wait 3600 s"):
            run(lambda: client.complete(MSGS, 2, {}), client)
        assert srv.requests == 1


def test_gives_up_after_max_attempts() -> None:
    with FakeOpenAIServer(faults=FaultPlan(rate=1.0, kinds=["503"])) as srv:
        client = fast_client(srv, max_attempts=3)
        with pytest.raises(TransientBackendError) as info:
            run(lambda: client.complete(MSGS, 2, {}), client)
        assert srv.requests == 3 and client.retries == 2
        msg = str(info.value)
        assert "\n" not in msg and "3 attempts" in msg and "HTTP 503" in msg


@pytest.mark.parametrize("status", ["400", "401", "403", "404", "422"])
def test_permanent_errors_raise_at_once(status: str) -> None:
    with FakeOpenAIServer(permanent=status) as srv:
        client = fast_client(srv, max_attempts=6, backoff=1.0)
        t0 = time.monotonic()
        with pytest.raises(PermanentBackendError) as info:
            run(lambda: client.complete(MSGS, 3, {}), client)
        assert time.monotonic() - t0 < 1.0
        assert srv.requests == 1
        msg = str(info.value)
        assert "\n" not in msg
        assert f"HTTP {status}" in msg and "'fake-model'" in msg and srv.base_url in msg
        assert "injected" in msg  # the server's own message
        assert info.value.__cause__ is None and info.value.__suppress_context__


def test_unknown_model_is_permanent(server: FakeOpenAIServer) -> None:
    client = OpenAIChatClient(server.base_url, "no-such-model", api_key="x")
    with pytest.raises(PermanentBackendError, match=r"HTTP 404 .*'no-such-model'.*does not exist"):
        run(lambda: client.complete(MSGS, 2, {}), client)
    assert server.requests == 1


# ------------------------------------------------------------------------------------------------
# the API key stays secret


def _all_text(exc: BaseException) -> str:
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def test_api_key_never_leaks(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-test-" + secrets.token_hex(16)
    monkeypatch.setenv("IAPO_TEST_KEY", secret)
    caplog.set_level(logging.DEBUG)

    # the key from the environment is the one sent: the server demands it and accepts it
    with FakeOpenAIServer(api_key=secret) as srv:
        client = OpenAIChatClient(
            srv.base_url, srv.model, api_key_env="IAPO_TEST_KEY", backoff=0.001
        )
        assert len(run(lambda: client.complete(MSGS, 2, {}), client)) == 2
        assert secret not in repr(client) and secret not in str(client)

    # a server that rejects it, echoing it back in full (the real API masks it): redacted
    with FakeOpenAIServer(api_key="sk-the-right-one") as srv:
        client = OpenAIChatClient(srv.base_url, srv.model, api_key_env="IAPO_TEST_KEY")
        with pytest.raises(PermanentBackendError) as info:
            run(lambda: client.complete(MSGS, 2, {}), client)
        assert srv.requests == 1
        assert "HTTP 401" in str(info.value) and "Incorrect API key" in str(info.value)
        assert secret not in _all_text(info.value)
        assert secret[-12:] not in _all_text(info.value)

    # transient failures, retried and given up on, and the logs they leave
    with FakeOpenAIServer(
        api_key=secret, faults=FaultPlan(rate=1.0, kinds=["500", "reset"])
    ) as srv:
        client = OpenAIChatClient(
            srv.base_url, srv.model, api_key_env="IAPO_TEST_KEY", max_attempts=3, backoff=0.001
        )
        with pytest.raises(TransientBackendError) as tinfo:
            run(lambda: client.complete(MSGS, 2, {}), client)
        assert secret not in _all_text(tinfo.value)
        assert secret not in repr(client)
        assert srv.requests == 3
    assert caplog.records, "retries should have been logged"
    assert secret not in caplog.text


def test_models_endpoint_and_auth() -> None:
    with FakeOpenAIServer(api_key="sk-server-secret", model="m1") as srv:
        assert "sk-server-secret" not in repr(srv)
        req = urllib.request.Request(
            srv.base_url + "/models", headers={"Authorization": "Bearer sk-server-secret"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.load(resp)["data"][0]["id"] == "m1"
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(srv.base_url + "/models", timeout=5)
        assert info.value.code == 401
        info.value.close()


def test_fault_plan_validates() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultPlan(rate=0.1, kinds=["418"])
    with pytest.raises(ValueError):
        FaultPlan(rate=1.5)
    with pytest.raises(ValueError):
        FakeOpenAIServer(permanent="418")


def test_no_key_for_the_openai_api_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IAPO_NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigError, match="IAPO_NO_SUCH_KEY"):
        OpenAIChatClient(None, "gpt-x", api_key_env="IAPO_NO_SUCH_KEY")


def test_a_missing_openai_package_is_a_one_line_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'iapo\[openai\]'"):
        OpenAIChatClient("http://127.0.0.1:1/v1", "m")


# ------------------------------------------------------------------------------------------------
# concurrency and rate


def test_concurrency_bound_holds_server_side() -> None:
    with FakeOpenAIServer(latency=0.05) as srv:
        client = fast_client(srv, concurrency=3, n_mode="fanout")

        async def go() -> list[list[Completion]]:
            return list(await asyncio.gather(*(client.complete(MSGS, 4, {}) for _ in range(3))))

        out = run(go, client)
        assert [len(r) for r in out] == [4, 4, 4]
        assert srv.requests == 12
        assert srv.max_in_flight <= 3
        assert srv.max_in_flight >= 2  # it did run requests side by side


def test_requests_per_minute_cap() -> None:
    with FakeOpenAIServer() as srv:
        client = fast_client(srv, rpm=1200, n_mode="fanout")  # 20 per second: 50 ms apart
        t0 = time.monotonic()
        run(lambda: client.complete(MSGS, 6, {}), client)
        assert time.monotonic() - t0 >= 5 * 0.05 * 0.9
        assert srv.requests == 6


# ------------------------------------------------------------------------------------------------
# token splitting


@given(st.integers(0, 10_000), st.lists(st.integers(0, 5_000), min_size=1, max_size=16))
def test_proportional_split_is_exact(total: int, weights: list[int]) -> None:
    shares = split_proportional(total, weights)
    assert sum(shares) == total and all(s >= 0 for s in shares)
    if sum(weights) > 0:
        for s, w in zip(shares, weights, strict=True):
            assert abs(s - total * w / sum(weights)) < 1 + 1e-9


def test_parse_body_without_usage_invents_nothing() -> None:
    body = (
        b'{"choices": [{"index": 1, "message": {"content": "b"}},'
        b' {"index": 0, "message": {"content": "a"}}]}'
    )
    choices, usage = parse_body(body)
    assert [text for text, _ in choices] == ["a", "b"]  # ordered by index
    assert usage == Usage(None, None, "usage_missing")
    out, anomalies = settle(choices, usage, 2, max_tokens=7, prompt_bound=None)
    assert all(c.prompt_tokens is None and c.completion_tokens is None for c in out)
    assert [c.billed_completion_tokens for c in out] == [7, 7]  # costed at the worst case
    assert anomalies == {"usage_missing": 1}
    with pytest.raises(ValueError):
        parse_body(b'{"choices": []}')
    with pytest.raises(ValueError):
        parse_body(b'{"choices": [{"index": 0, "message": {"content": "trunc')


# ------------------------------------------------------------------------------------------------
# LLMBackend


PROMPTS = {
    "plain": PromptSpec("plain", system="Solve it.", template="{question}"),
    "cot": PromptSpec("cot", system="Think step by step.", template="Q: {question}\nA:"),
}
QUERIES = {
    "q1": Query("q1", "What is 6 times 7?", gold="42"),
    "q2": Query("q2", "What is 2 plus 2?", gold="4"),
}


def make_backend(client: OpenAIChatClient, **kw: Any) -> LLMBackend:
    kw.setdefault("params", {"temperature": 0.8, "max_tokens": 256})
    kw.setdefault("extract", get_extractor("number"))
    return LLMBackend(client, PROMPTS, QUERIES, **kw)


def test_backend_samples_are_scored_and_costed(server: FakeOpenAIServer) -> None:
    backend = make_backend(
        fast_client(server), scorers={"words": lambda text, q: float(len(text.split()))}
    )

    async def go() -> list[Sample]:
        try:
            return await backend.sample("cot", "q1", range(10, 16))
        finally:
            await backend.aclose()

    samples = run(go)
    assert len(samples) == 6 and server.requests == 1
    for s in samples:
        assert s.text is not None
        assert s.answer == s.text.rsplit("The answer is ", 1)[1].strip()
        assert s.scores["words"] == len(s.text.split())
        assert s.cost == s.usage["completion_tokens"]
        assert set(s.usage) == {"prompt_tokens", "completion_tokens"}
    assert sum(s.cost for s in samples) == server.completion_tokens_served
    assert len({s.answer for s in samples}) >= 2  # majority vote has something to do
    messages, params, _ = server.log[0]
    assert messages == PROMPTS["cot"].render(QUERIES["q1"])
    assert params["temperature"] == 0.8 and "seed" not in params
    assert backend.gold("q1") == "42" and backend.gold("nope") is None


def test_backend_custom_cost_and_missing_usage() -> None:
    with FakeOpenAIServer(faults=FaultPlan(sequence=["no-usage"])) as srv:
        backend = make_backend(fast_client(srv), cost=lambda c: 0.5)
        samples = run(lambda: backend.sample("plain", "q2", [0, 1]), backend)
        assert [s.cost for s in samples] == [0.5, 0.5]
        assert all(s.usage == {} for s in samples)

    with FakeOpenAIServer(faults=FaultPlan(sequence=["no-usage"])) as srv:
        backend = make_backend(fast_client(srv))
        samples = run(lambda: backend.sample("plain", "q2", [0, 1]), backend)
        # default cost: unreported tokens cost the worst case (max_tokens), never 0
        assert [s.cost for s in samples] == [256.0, 256.0]
        assert all(s.usage == {} for s in samples)


def test_backend_refuses_seed_and_unknown_ids(server: FakeOpenAIServer) -> None:
    with pytest.raises(ValueError, match="seed"):
        make_backend(fast_client(server), params={"temperature": 1.0, "seed": 7})
    backend = make_backend(fast_client(server))
    with pytest.raises(PermanentBackendError, match="unknown"):
        run(lambda: backend.sample("nope", "q1", [0]), backend)
    assert run(lambda: backend.sample("plain", "q1", []), backend) == []
    assert server.requests == 0


def test_cache_keys_cover_the_distribution_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def key(
        base_url: str = "http://a.example/v1", model: str = "m", api_key: str = "k1", **kw: Any
    ) -> str:
        client = OpenAIChatClient(base_url, model, api_key=api_key)
        prompt = kw.pop("prompt", "plain")
        query = kw.pop("query", "q1")
        return make_backend(client, **kw).cache_key(prompt, query)

    base = key()
    assert base == key()  # stable
    # not the endpoint's address, not the key, not how n is requested
    assert base == key(base_url="http://b.example:9999/v1", api_key="k2")
    # the model, the full messages, every sampling parameter, the extractor and the scorers
    assert base != key(model="m2")
    assert base != key(prompt="cot")
    assert base != key(query="q2")
    assert base != key(params={"temperature": 0.8, "max_tokens": 255})
    assert base != key(params={"temperature": 0.8, "max_tokens": 256, "top_p": 0.95})
    assert base != key(extract=get_extractor("final_number"))
    assert base != key(scorers={"len": lambda t, q: 0.0})
    assert key(scorers={"len": lambda t, q: 0.0}, scorer_ids={"len": "v1"}) != key(
        scorers={"len": lambda t, q: 0.0}, scorer_ids={"len": "v2"}
    )

    # partials are told apart by their arguments
    def scale(text: str, q: Query, k: float) -> float:
        return k

    assert key(scorers={"s": functools.partial(scale, k=1.0)}) != key(
        scorers={"s": functools.partial(scale, k=2.0)}
    )
    # the same rendered text under another prompt id is the same distribution
    monkeypatch.setitem(PROMPTS, "plain-copy", PromptSpec("plain-copy", "Solve it.", "{question}"))
    assert base == key(prompt="plain-copy")
