"""Untrusted endpoints (issue 10, items 8–10): the account and the cost cap hold against a server
that lies about usage, answers more than was asked, or trickles its answer, all on the real
loopback :class:`FakeOpenAIServer`."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from live_helpers import (  # noqa: F401 (each_http_client: a fixture)
    each_http_client,
    fast_client,
    script,
    write_config,
)

import iapo
from iapo.answers import get_extractor
from iapo.backends import LLMBackend, OpenAIChatClient
from iapo.commands import format_result
from iapo.errors import TransientBackendError
from iapo.testing import FakeOpenAIServer, FaultPlan
from iapo.types import PromptSpec, Query, Sample

#: every test runs on each HTTP stack (aiohttp, httpx): fault semantics must not depend on it
pytestmark = pytest.mark.usefixtures("each_http_client")
T = TypeVar("T")
KEY = "sk-untrusted-0123456789abcdef"
MAX_TOKENS = 50
PROMPTS = {"plain": PromptSpec("plain", system="Solve it.", template="{question}")}
QUERIES = {"q": Query("q", "What is 6 times 7?", gold="42")}


def run(make: Callable[[], Awaitable[T]], *closing: OpenAIChatClient | LLMBackend) -> T:
    async def go() -> T:
        try:
            return await make()
        finally:
            for c in closing:
                await c.aclose()

    return asyncio.run(go())


def backend_for(srv: FakeOpenAIServer, **kw: Any) -> LLMBackend:
    client = fast_client(srv, n_mode="native", **kw)
    return LLMBackend(
        client,
        PROMPTS,
        QUERIES,
        params={"temperature": 0.7, "max_tokens": MAX_TOKENS},
        extract=get_extractor("number"),
    )


def sample(srv: FakeOpenAIServer, n: int) -> tuple[list[Sample], LLMBackend]:
    backend = backend_for(srv)
    return run(lambda: backend.sample("plain", "q", range(n)), backend), backend


# -- item 8: reported usage is untrusted ------------------------------------------------------


def test_inflated_usage_is_counted_as_reported_and_flagged() -> None:
    plan = FaultPlan(sequence=["inflated-usage"], inflate=100_000)
    with FakeOpenAIServer(faults=plan) as srv:
        samples, backend = sample(srv, 2)
        # the account keeps what the server says it billed, however implausible
        assert sum(s.cost for s in samples) == 100_000 == srv.completion_tokens_served
        assert sum(s.usage["completion_tokens"] for s in samples) == 100_000
        # ... and says it was implausible: above the request's worst case (2 × max_tokens)
        assert backend.anomalies == {"usage_above_max": 1}


@pytest.mark.parametrize(
    "fault", ["negative-usage", "non-numeric-usage", "partial-usage", "no-usage"]
)
def test_unusable_usage_is_costed_at_the_worst_case(fault: str) -> None:
    with FakeOpenAIServer(faults=FaultPlan(sequence=[fault])) as srv:
        samples, backend = sample(srv, 3)
        # costed at max_tokens per completion (never 0), stored usage invents nothing
        assert [s.cost for s in samples] == [MAX_TOKENS] * 3
        assert all("completion_tokens" not in s.usage for s in samples)
        kind = "usage_missing" if fault in ("partial-usage", "no-usage") else "usage_invalid"
        assert backend.anomalies == {kind: 1}


def test_recosting_a_stored_sample_without_completion_tokens_uses_the_worst_case() -> None:
    with FakeOpenAIServer() as srv:
        backend = backend_for(srv)
        stored = Sample(answer="42", cost=MAX_TOKENS, usage={"prompt_tokens": 5})
        assert backend.recost(stored).cost == MAX_TOKENS


def test_a_lying_server_stops_the_run_at_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every answer claims 100,000 completion tokens for max_tokens 64; the cap is 2,000. The
    run stops as soon as the first lie is booked: only the requests already in flight then
    (at most ``concurrency`` = 4) reach the server, the account holds what was reported, and
    the anomaly is in the account and the summary."""
    monkeypatch.setenv("IAPO_TEST_KEY", KEY)
    plan = FaultPlan(rate=1.0, kinds=["inflated-usage"], inflate=100_000)
    with FakeOpenAIServer(script, api_key=KEY, faults=plan) as srv:
        cfg = write_config(tmp_path, srv.base_url, extra="cost: {cap: 2000}")
        result = iapo.run(cfg)
        acc = result.account
        assert 1 <= srv.requests <= 4
        assert acc["cost"] == acc["completion_tokens"] == srv.completion_tokens_served
        assert acc["anomalies"]["usage_above_max"] == srv.requests
        assert result.extra["stopped"] and "cost cap" in result.extra["stopped"]
        assert "usage_above_max" in format_result(result)


@pytest.mark.parametrize("fault", ["no-usage", "non-numeric-usage"])
def test_a_server_hiding_its_usage_still_meets_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """A server that never reports usage usably used to cost 0 per completion, so the cap never
    stopped a run (234 completions, up to 15,000 tokens, under a cap of 5,000); costed at the
    worst case (max_tokens 64), the cap holds."""
    monkeypatch.setenv("IAPO_TEST_KEY", KEY)
    cap = 5000
    with FakeOpenAIServer(script, api_key=KEY, faults=FaultPlan(rate=1.0, kinds=[fault])) as srv:
        cfg = write_config(tmp_path, srv.base_url, extra=f"cost: {{cap: {cap}}}")
        result = iapo.run(cfg)
        acc = result.account
        assert srv.completions_served * 64 <= cap  # what was served, at its worst, fits
        assert acc["cost"] == 64 * acc["drawn"] <= cap
        assert result.extra["stopped"] and "cost cap" in result.extra["stopped"]
        kind = "usage_missing" if fault == "no-usage" else "usage_invalid"
        assert acc["anomalies"] == {kind: srv.requests}


# -- item 9: more choices than n ----------------------------------------------------------------


def test_extra_choices_are_dropped_and_the_account_says_what_arrived() -> None:
    with FakeOpenAIServer(faults=FaultPlan(sequence=["extra-choices"], extra=2)) as srv:
        samples, backend = sample(srv, 3)
        assert len(samples) == 3 and srv.completions_served == 5
        # the kept completions carry the whole request's reported usage: nothing billed vanishes
        assert sum(s.usage["completion_tokens"] for s in samples) == srv.completion_tokens_served
        assert sum(s.usage["prompt_tokens"] for s in samples) == srv.prompt_tokens_served
        assert backend.anomalies["extra_choices"] == 2


def test_a_run_against_extra_choices_stores_only_what_it_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IAPO_TEST_KEY", KEY)
    plan = FaultPlan(rate=1.0, kinds=["extra-choices"], extra=2)
    with FakeOpenAIServer(script, api_key=KEY, faults=plan) as srv:
        cfg = write_config(tmp_path, srv.base_url, budget=120)
        result = iapo.run(cfg)
        acc = result.account
        with sqlite3.connect(tmp_path / "run" / "bank.sqlite") as db:
            stored = int(db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])
        assert stored == acc["drawn"] == acc["completions"] <= 120
        assert acc["completion_tokens"] == srv.completion_tokens_served
        assert acc["anomalies"]["extra_choices"] == srv.completions_served - acc["drawn"] > 0


# -- item 10: a total deadline per request --------------------------------------------------------


def test_a_slow_drip_answer_is_cut_at_the_total_deadline() -> None:
    """The body trickles in one byte every 50 ms (a whole answer would take ~20 s), which no
    per-read timeout catches; the 0.5 s total deadline fails each attempt, retried up to
    max_attempts, and nothing is delivered."""
    plan = FaultPlan(rate=1.0, kinds=["drip"], drip=0.05)
    with FakeOpenAIServer(faults=plan) as srv:
        client = fast_client(srv, timeout=0.5, max_attempts=2)
        with pytest.raises(TransientBackendError, match=r"after 2 attempts.*within 0\.5 s"):
            run(lambda: client.complete([{"role": "user", "content": "hi"}], 1, {}), client)
        assert srv.requests == 2 and client.retries == 1
        assert srv.completions_served == 0
