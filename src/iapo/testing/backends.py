"""A reusable pytest suite for :class:`iapo.backends.Backend` implementations.

Subclass :class:`BackendSuite` in a test module (the class name must start with ``Test``) and
override its fixtures; every contract of :class:`~iapo.backends.Backend` is then checked for your
backend::

    class TestMyBackend(BackendSuite):
        @pytest.fixture
        def backend_factory(self) -> Callable[[], Backend]:
            return lambda: MyBackend(model="m", temperature=0.7)

        @pytest.fixture
        def cell(self) -> tuple[str, str]:
            return ("prompt-a", "query-1")  # a (prompt id, query id) the backend can sample

Optional fixtures: ``other_cells`` (cells whose distribution differs from ``cell``: another
prompt, another query; their keys must differ), ``changed_backend_factory`` (a backend built with
a setting that changes the distribution, such as another temperature or model; its key must
differ). Set ``reproducible = False`` for a backend that cannot reproduce a draw by its index
(an endpoint that ignores seeds); the batching test is then skipped.

Each test runs its coroutines with :func:`asyncio.run` and closes every backend it builds, so
the suite needs no asyncio plugin. Importing this module imports pytest.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import pytest

from iapo.backends import Backend
from iapo.errors import ConfigError
from iapo.types import Query, Sample

__all__ = ["BackendSuite"]

T = TypeVar("T")
Cell = tuple[str, str]
#: Indices the batching and cost tests draw.
INDICES = tuple(range(6))


def _fields(s: Sample) -> tuple[Any, ...]:
    """What must agree between two draws of one index (usage and cost included)."""
    return (s.answer, dict(s.scores), s.cost, s.text, dict(s.usage))


def _using(factory: Callable[[], Backend], work: Callable[[Backend], Coroutine[Any, Any, T]]) -> T:
    """``work(backend)`` on a fresh backend, closed in the same event loop."""

    async def main() -> T:
        async with factory() as backend:
            return await work(backend)

    return asyncio.run(main())


class BackendSuite:
    """The conformance tests every backend passes (see the module doc for what to override)."""

    #: Whether sample ``i`` of a cell is the same sample on every request for it.
    reproducible: bool = True

    # -- fixtures to override ----------------------------------------------------------------

    @pytest.fixture
    def backend_factory(self) -> Callable[[], Backend]:
        """Builds the backend under test; every call builds it the same way (same keys)."""
        raise NotImplementedError("override the backend_factory fixture")

    @pytest.fixture
    def cell(self) -> Cell:
        """A (prompt id, query id) the backend can sample."""
        raise NotImplementedError("override the cell fixture")

    @pytest.fixture
    def other_cells(self) -> Sequence[Cell]:
        """Cells whose distributions differ from ``cell``'s (default: none)."""
        return ()

    @pytest.fixture
    def changed_backend_factory(self) -> Callable[[], Backend] | None:
        """A backend with a setting that changes ``cell``'s distribution (default: none)."""
        return None

    # -- the tests -----------------------------------------------------------------------------

    @pytest.fixture
    def backend(self, backend_factory: Callable[[], Backend]) -> Iterator[Backend]:
        """An open backend from the factory, closed after the test."""
        backend = backend_factory()
        try:
            yield backend
        finally:
            asyncio.run(backend.aclose())

    def test_sample_returns_one_sample_per_index(
        self, backend_factory: Callable[[], Backend], cell: Cell
    ) -> None:
        async def work(b: Backend) -> tuple[list[Sample], list[Sample]]:
            return await b.sample(*cell, []), await b.sample(*cell, INDICES)

        empty, drawn = _using(backend_factory, work)
        assert empty == []
        assert len(drawn) == len(INDICES)
        assert all(isinstance(s, Sample) for s in drawn)

    def test_same_index_gives_the_same_sample_however_batched(
        self, backend_factory: Callable[[], Backend], cell: Cell
    ) -> None:
        if not self.reproducible:
            pytest.skip("this backend does not reproduce a draw by its index")

        async def at_once(b: Backend) -> list[Sample]:
            return await b.sample(*cell, INDICES)

        async def one_by_one(b: Backend) -> list[Sample]:
            return [(await b.sample(*cell, [i]))[0] for i in INDICES]

        async def reversed_order(b: Backend) -> list[Sample]:
            return (await b.sample(*cell, INDICES[::-1]))[::-1]

        async def split_concurrently(b: Backend) -> list[Sample]:
            evens, odds = await asyncio.gather(
                b.sample(*cell, INDICES[::2]), b.sample(*cell, INDICES[1::2])
            )
            return [(evens if i % 2 == 0 else odds)[i // 2] for i in INDICES]

        expected = [_fields(s) for s in _using(backend_factory, at_once)]
        for work in (one_by_one, reversed_order, split_concurrently):
            got = [_fields(s) for s in _using(backend_factory, work)]
            assert got == expected, f"{work.__name__} drew other samples than one batch"

    def test_sample_each_reports_every_index_once_as_returned(
        self, backend_factory: Callable[[], Backend], cell: Cell
    ) -> None:
        reported: list[tuple[int, Sample]] = []

        async def keep(items: Sequence[tuple[int, Sample]]) -> None:
            reported.extend(items)

        async def work(b: Backend) -> list[Sample]:
            return await b.sample_each(*cell, INDICES, keep)

        drawn = _using(backend_factory, work)
        assert len(drawn) == len(INDICES)
        assert sorted(i for i, _ in reported) == list(INDICES), "each index reported once"
        by_index = dict(reported)
        assert [_fields(by_index[i]) for i in INDICES] == [_fields(s) for s in drawn]

    def test_a_reproducible_backend_restores_what_the_bank_leaves_out(
        self, backend_factory: Callable[[], Backend], cell: Cell
    ) -> None:
        async def work(b: Backend) -> tuple[list[Sample], list[Sample]]:
            drawn = await b.sample(*cell, INDICES)
            banked = [replace(s, text=None) for s in drawn] if b.reproducible else drawn
            return drawn, [b.restore(*cell, i, s) for i, s in zip(INDICES, banked, strict=True)]

        drawn, restored = _using(backend_factory, work)
        assert [_fields(s) for s in restored] == [_fields(s) for s in drawn]

    def test_cache_key_is_stable(self, backend_factory: Callable[[], Backend], cell: Cell) -> None:
        async def key(b: Backend) -> tuple[str, str]:
            return b.cache_key(*cell), b.cache_key(*cell)

        first, again = _using(backend_factory, key)
        assert isinstance(first, str) and first
        assert first == again
        assert _using(backend_factory, key)[0] == first, "a backend built the same way differs"

    def test_cache_key_follows_the_distribution(
        self,
        backend_factory: Callable[[], Backend],
        changed_backend_factory: Callable[[], Backend] | None,
        cell: Cell,
        other_cells: Sequence[Cell],
    ) -> None:
        if not other_cells and changed_backend_factory is None:
            pytest.skip("no other_cells and no changed_backend_factory to compare with")

        async def keys(b: Backend) -> list[str]:
            return [b.cache_key(*c) for c in (cell, *other_cells)]

        got = _using(backend_factory, keys)
        assert len(set(got)) == len(got), "distinct cells share a cache key"
        if changed_backend_factory is not None:
            changed = _using(changed_backend_factory, keys)[0]
            assert changed != got[0], "a changed backend kept the cache key"

    def test_max_cost_bounds_every_sample(
        self, backend_factory: Callable[[], Backend], cell: Cell, other_cells: Sequence[Cell]
    ) -> None:
        async def check(b: Backend) -> int:
            bounded = 0
            for c in (cell, *other_cells):
                bound = b.max_cost(*c)
                if bound is None:
                    continue
                bounded += 1
                for s in await b.sample(*c, INDICES):
                    assert s.cost <= bound, f"sample of {c} costs {s.cost} > max_cost {bound}"
            return bounded

        if _using(backend_factory, check) == 0:
            pytest.skip("max_cost is None: nothing bounds the cost")

    def test_recost_of_a_fresh_sample_keeps_it(
        self, backend_factory: Callable[[], Backend], cell: Cell
    ) -> None:
        async def work(b: Backend) -> list[tuple[Sample, Sample]]:
            return [(s, b.recost(s)) for s in await b.sample(*cell, INDICES[:2])]

        for fresh, recosted in _using(backend_factory, work):
            assert _fields(recosted) == _fields(fresh)

    def test_add_query_answers_the_question_or_refuses(
        self, backend_factory: Callable[[], Backend], cell: Cell
    ) -> None:
        query = Query("backend-suite-adhoc", "What is 2 plus 3?")

        async def work(b: Backend) -> list[Sample] | None:
            try:
                b.add_query(query)
            except ConfigError as exc:
                assert "cannot answer new questions" in str(exc)
                return None
            return await b.sample(cell[0], query.id, [0, 1])

        drawn = _using(backend_factory, work)
        assert drawn is None or len(drawn) == 2

    def test_describe_and_concurrency(self, backend: Backend) -> None:
        info = backend.describe()
        assert isinstance(info, dict)
        json.dumps(info)  # JSON-serialisable, for results and pool files
        assert isinstance(backend.concurrency, int) and backend.concurrency >= 1
        assert isinstance(backend.name, str) and backend.name

    def test_aclose_is_idempotent_and_async_with_closes(
        self, backend_factory: Callable[[], Backend], cell: Cell
    ) -> None:
        async def main() -> None:
            unused = backend_factory()
            await unused.aclose()
            await unused.aclose()
            async with backend_factory() as used:
                await used.sample(*cell, [0])
            await used.aclose()  # already closed by ``async with``: a no-op

        asyncio.run(main())
