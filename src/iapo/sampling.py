"""The read-through sampler: look in the sample bank, draw what is missing, store it.

Every completion anyone draws (a study, ``iapo record``, a deployed policy) goes through
:class:`CachedSampler`, so the bank stays the single source of truth: completion ``i`` of a
distribution is drawn once, stored under ``(backend.cache_key(prompt, query), i)`` as soon as it
arrives, and read back by every later request for the same index.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from iapo.backends import Backend
from iapo.bank import SampleBank
from iapo.types import Sample

__all__ = ["CachedSampler"]


class _Slots:
    """At most ``capacity`` samples in flight; a request takes what it needs at once (capped)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.used = 0
        self._cond = asyncio.Condition()

    async def acquire(self, n: int) -> int:
        n = min(n, self.capacity)
        async with self._cond:
            await self._cond.wait_for(lambda: self.used + n <= self.capacity)
            self.used += n
        return n

    async def release(self, n: int) -> None:
        async with self._cond:
            self.used -= n
            self._cond.notify_all()


class CachedSampler:
    """Samples of ``backend`` through ``bank`` (None: straight from the backend, nothing stored).

    ``max_in_flight`` bounds the samples requested from the backend at once (None: unbounded;
    the backend's own client still enforces its concurrency). Bounding it keeps what an
    interruption loses (drawn but not yet banked) small.
    """

    def __init__(
        self, backend: Backend, bank: SampleBank | None, *, max_in_flight: int | None = None
    ) -> None:
        self.backend = backend
        self.bank = bank
        self._slots = _Slots(max_in_flight) if max_in_flight is not None else None

    async def draw(
        self,
        prompt: str,
        query: str,
        indices: Sequence[int],
        *,
        on_stored: Callable[[int], None] | None = None,
    ) -> tuple[list[Sample], int]:
        """Completions number ``indices`` of (prompt, query), in that order and re-costed under
        the backend's current cost settings, and how many of them were drawn fresh.

        ``on_stored(k)`` is told how many were already in the bank before anything is drawn.
        """
        dist = self.backend.cache_key(prompt, query)
        stored = self.bank.get(dist, indices) if self.bank is not None else {}
        if on_stored is not None:
            on_stored(len(stored))
        missing = [i for i in indices if i not in stored]
        if missing:
            fresh = await self._sample(prompt, query, missing)
            if len(fresh) != len(missing):
                raise RuntimeError(
                    f"backend returned {len(fresh)} completions for {len(missing)} requested"
                )
            new = list(zip(missing, fresh, strict=True))
            if self.bank is not None:
                self.bank.put(dist, prompt, query, new)
            stored.update(new)
        return [self.backend.recost(stored[i]) for i in indices], len(missing)

    async def _sample(self, prompt: str, query: str, indices: list[int]) -> list[Sample]:
        if self._slots is None:
            return await self.backend.sample(prompt, query, indices)
        units = await self._slots.acquire(len(indices))
        try:
            return await self.backend.sample(prompt, query, indices)
        finally:
            await self._slots.release(units)
