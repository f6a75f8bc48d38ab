"""Every built-in backend passes iapo.testing.BackendSuite, and the suite catches broken ones."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytest
from live_helpers import fast_client
from test_local import HAVE_SMOLLM, PROMPTS, QUERIES, SMOL

from iapo.answers import get_extractor
from iapo.backends import Backend, LLMBackend, MockBackend, ReplayBackend, build_live_backend
from iapo.config import LocalBackendConfig
from iapo.errors import ConfigError
from iapo.pools import Cell, Pool
from iapo.testing import BackendSuite, FakeOpenAIServer
from iapo.types import Query, Sample

CELL = ("terse", "q0")
OTHERS = [("steps", "q0"), ("terse", "q1")]


def tiny_pool() -> Pool:
    prompts, queries = ("terse", "steps"), ("q0", "q1")
    outcomes = (Sample("5", {}, 3.0), Sample("6", {}, 7.0), Sample(None, {}, 1.0))
    cells = {
        (p, q): Cell(p, q, "5", outcomes, np.array([0.5 + 0.2 * i, 0.3, 0.2 - 0.1 * j]))
        for i, p in enumerate(prompts)
        for j, q in enumerate(queries)
    }
    return Pool(("accuracy",), prompts, queries, cells, "tokens", {"name": "tiny"})


class TestReplayBackend(BackendSuite):
    @pytest.fixture
    def backend_factory(self) -> Callable[[], Backend]:
        pool = tiny_pool()
        return lambda: ReplayBackend(pool, seed=1)

    @pytest.fixture
    def changed_backend_factory(self) -> Callable[[], Backend]:
        pool = tiny_pool()
        return lambda: ReplayBackend(pool, seed=2)

    @pytest.fixture
    def cell(self) -> tuple[str, str]:
        return CELL

    @pytest.fixture
    def other_cells(self) -> Sequence[tuple[str, str]]:
        return OTHERS


def _mock_sample(prompt: str, query: str, index: int) -> Sample:
    h = hashlib.sha256(f"{prompt}/{query}/{index}".encode()).digest()
    return Sample(str(h[0] % 3), {"helpful": h[1] / 255}, float(h[2] % 10), f"text {h[3]}")


async def _async_mock_sample(prompt: str, query: str, index: int) -> Sample:
    await asyncio.sleep(0)
    return _mock_sample(prompt, query, index)


class TestMockBackend(BackendSuite):
    @pytest.fixture(params=["sync", "async"])
    def backend_factory(self, request: pytest.FixtureRequest) -> Callable[[], Backend]:
        handler = _mock_sample if request.param == "sync" else _async_mock_sample
        return lambda: MockBackend(handler, fingerprint="mock-v1", max_cost=9.0)

    @pytest.fixture
    def changed_backend_factory(self) -> Callable[[], Backend]:
        return lambda: MockBackend(_mock_sample, fingerprint="mock-v2")

    @pytest.fixture
    def cell(self) -> tuple[str, str]:
        return CELL

    @pytest.fixture
    def other_cells(self) -> Sequence[tuple[str, str]]:
        return OTHERS


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def _llm(srv: FakeOpenAIServer, temperature: float) -> LLMBackend:
    return LLMBackend(
        fast_client(srv),
        PROMPTS,
        QUERIES,
        params={"temperature": temperature, "max_tokens": 12},
        extract=get_extractor("number"),
        seed_per_sample=True,  # the fake server honours seeds: draws are reproducible
    )


class TestLLMBackend(BackendSuite):
    @pytest.fixture
    def backend_factory(self, fake_server: FakeOpenAIServer) -> Callable[[], Backend]:
        return lambda: _llm(fake_server, 0.7)

    @pytest.fixture
    def changed_backend_factory(self, fake_server: FakeOpenAIServer) -> Callable[[], Backend]:
        return lambda: _llm(fake_server, 0.9)

    @pytest.fixture
    def cell(self) -> tuple[str, str]:
        return CELL

    @pytest.fixture
    def other_cells(self) -> Sequence[tuple[str, str]]:
        return OTHERS


def _local(temperature: float) -> Backend:
    cfg = LocalBackendConfig(
        kind="local", model=SMOL, params={"temperature": temperature, "max_tokens": 6}
    )
    return build_live_backend(cfg, PROMPTS, QUERIES, get_extractor("number"))


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_SMOLLM, reason="needs the local extra and SmolLM2")
class TestLocalBackend(BackendSuite):
    @pytest.fixture
    def backend_factory(self) -> Callable[[], Backend]:
        return lambda: _local(0.7)

    @pytest.fixture
    def changed_backend_factory(self) -> Callable[[], Backend]:
        return lambda: _local(0.9)

    @pytest.fixture
    def cell(self) -> tuple[str, str]:
        return CELL  # one cell only, to keep it short (test_local checks keys across cells)


# ------------------------------------------------------------------------------------------------
# the suite fails backends that break a contract


def _run_suite(cls: type[BackendSuite], test: str, factory: Callable[[], Backend]) -> None:
    suite = cls()
    getattr(suite, test)(factory, CELL)


def test_the_suite_catches_a_backend_whose_draws_depend_on_batching() -> None:
    def broken() -> Backend:
        drawn: list[int] = []

        def handler(prompt: str, query: str, index: int) -> Sample:
            drawn.append(index)  # numbers samples in the order drawn, not by index
            return Sample(str(len(drawn) * 7 % 5), {}, 1.0)

        return MockBackend(handler, fingerprint="counting")

    with pytest.raises(AssertionError, match="drew other samples"):
        _run_suite(BackendSuite, "test_same_index_gives_the_same_sample_however_batched", broken)


def test_the_suite_catches_an_unstable_cache_key() -> None:
    built = iter(range(100))

    def unstable() -> Backend:
        return MockBackend(_mock_sample, fingerprint=f"instance-{next(built)}")

    with pytest.raises(AssertionError, match="built the same way"):
        _run_suite(BackendSuite, "test_cache_key_is_stable", unstable)


def test_the_suite_catches_a_lying_max_cost() -> None:
    class Lying(MockBackend):
        def max_cost(self, prompt: str, query: str) -> float | None:
            return 0.5

    with pytest.raises(AssertionError, match="max_cost"):
        BackendSuite().test_max_cost_bounds_every_sample(lambda: Lying(_mock_sample), CELL, [])


# ------------------------------------------------------------------------------------------------
# MockBackend and the base contract


def test_mock_backend_records_calls_closes_and_answers_new_questions() -> None:
    backend = MockBackend(_mock_sample, gold={"q0": "5"}, concurrency=3)

    async def main() -> list[Sample]:
        async with backend:
            backend.add_query(Query("new", "What is 1 plus 1?", "2"))
            return await backend.sample("terse", "new", [4, 2])

    drawn = asyncio.run(main())
    assert drawn == [_mock_sample("terse", "new", 4), _mock_sample("terse", "new", 2)]
    assert backend.calls == [("terse", "new", (4, 2))]
    assert backend.closed and backend.concurrency == 3
    assert backend.gold("q0") == "5" and backend.gold("new") == "2" and backend.gold("q9") is None
    assert backend.queries["new"].text == "What is 1 plus 1?"


def test_mock_backend_enforces_max_cost_and_the_sample_type() -> None:
    over = MockBackend(lambda p, q, i: Sample("1", {}, 2.0), max_cost=1.0)
    with pytest.raises(ValueError, match=r"above max_cost 1\.0"):
        asyncio.run(over.sample("p", "q", [0]))
    wrong = MockBackend(lambda p, q, i: "1")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="not a Sample"):
        asyncio.run(wrong.sample("p", "q", [0]))


def test_a_replayed_pool_refuses_new_questions() -> None:
    backend = ReplayBackend(tiny_pool())
    with pytest.raises(ConfigError, match="cannot answer new questions"):
        backend.add_query(Query("new", "What is 1 plus 1?"))


def test_concurrency_is_the_clients_for_a_live_backend(fake_server: FakeOpenAIServer) -> None:
    assert ReplayBackend(tiny_pool()).concurrency == 8
    backend = LLMBackend(
        fast_client(fake_server, concurrency=5),
        PROMPTS,
        QUERIES,
        params={},
        extract=get_extractor("number"),
    )
    assert backend.concurrency == 5
    backend.add_query(Query("new", "What is 1 plus 1?"))
    assert asyncio.run(backend.sample("terse", "new", [0]))[0].text
    asyncio.run(backend.aclose())
