"""An in-process backend whose samples come from a function (the style of httpx.MockTransport)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from iapo.backends._base import DEFAULT_CONCURRENCY, KEY_SCHEMA, Backend, stable_key
from iapo.types import Query, Sample

__all__ = ["Handler", "MockBackend"]

#: ``handler(prompt id, query id, sample index) -> Sample``, plain or ``async``.
Handler = Callable[[str, str, int], Sample | Awaitable[Sample]]


class MockBackend(Backend):
    """Samples from ``handler(prompt, query, index)``, for tests and examples (no network).

    Sample ``i`` of (prompt, query) is ``handler(prompt, query, i)``, called once per index in
    the order asked; a handler that depends only on its arguments makes every draw reproducible
    however requests are batched. ``cache_key`` covers the key schema, ``fingerprint`` (default:
    the handler's qualified name; change it whenever the handler's samples change, or a bank
    would serve the old ones), the prompt and the query. ``max_cost``: a bound on every sample's
    cost, enforced (a sample above it raises ``ValueError``: the bound is what budget caps rely
    on). ``gold`` maps query ids to reference answers. Questions added with :meth:`add_query`
    land in ``queries``, where a handler can read their text.

    Observable for tests: ``calls`` lists every ``sample`` call as ``(prompt, query, indices)``;
    ``closed`` turns true on :meth:`aclose`.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        name: str = "mock",
        fingerprint: str | None = None,
        max_cost: float | None = None,
        gold: Mapping[str, str | None] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.handler = handler
        self.name = name
        self.fingerprint = fingerprint or (
            f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', '?')}"
        )
        self._max_cost = max_cost
        self._gold = dict(gold or {})
        self._concurrency = int(concurrency)
        self.queries: dict[str, Query] = {}
        self.calls: list[tuple[str, str, tuple[int, ...]]] = []
        self.closed = False

    def __repr__(self) -> str:
        return f"MockBackend({self.name!r}, fingerprint={self.fingerprint!r})"

    def cache_key(self, prompt: str, query: str) -> str:
        return stable_key([KEY_SCHEMA, "mock", self.fingerprint, prompt, query])

    async def sample(self, prompt: str, query: str, indices: Sequence[int]) -> list[Sample]:
        self.calls.append((prompt, query, tuple(indices)))
        out = []
        for i in indices:
            result: Any = self.handler(prompt, query, i)
            if inspect.isawaitable(result):
                result = await result
            if not isinstance(result, Sample):
                raise TypeError(
                    f"{self.name}: handler returned {type(result).__name__}, not a Sample"
                )
            if self._max_cost is not None and result.cost > self._max_cost:
                raise ValueError(
                    f"{self.name}: sample {i} of ({prompt!r}, {query!r}) costs {result.cost}, "
                    f"above max_cost {self._max_cost}"
                )
            out.append(result)
        return out

    def max_cost(self, prompt: str, query: str) -> float | None:
        return self._max_cost

    def gold(self, query: str) -> str | None:
        if query in self._gold:
            return self._gold[query]
        added = self.queries.get(query)
        return added.gold if added is not None else None

    @property
    def concurrency(self) -> int:
        return self._concurrency

    def add_query(self, query: Query) -> None:
        self.queries[query.id] = query

    async def aclose(self) -> None:
        self.closed = True
