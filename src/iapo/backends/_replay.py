"""Replay a recorded pool as if it were the LLM: i.i.d. draws from each cell, seeded per index."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import replace
from hashlib import blake2b

import numpy as np

from iapo.backends._base import KEY_SCHEMA, Backend, stable_key
from iapo.pools import Pool
from iapo.types import Sample

__all__ = ["ReplayBackend"]


class ReplayBackend(Backend):
    """Draws sample ``i`` of (prompt, query) from the cell's categorical distribution.

    The draw depends only on (seed, prompt, query, i): the same index always gives the same sample,
    whatever order or batch it is asked in, which makes cached and fresh runs identical. The
    cache key covers the cell's content (:attr:`~iapo.pools.Cell.digest`), so samples banked
    from one pool are never served for an edited, re-recorded or swapped one. Replay is
    ``reproducible``: the bank keeps no text for its samples, :meth:`restore` re-derives it.
    """

    reproducible = True

    def __init__(self, pool: Pool, seed: int = 0, *, fingerprint: str | None = None) -> None:
        self.pool = pool
        self.seed = int(seed)
        self.name = f"replay({pool.meta.get('name', 'pool')}, seed={self.seed})"
        self._fingerprint = fingerprint or stable_key({"seed": self.seed})
        self._texts = {
            key for key, cell in pool.cells.items() if any(o.text for o in cell.outcomes)
        }
        # (prompt, query) -> (cdf as floats, last outcome index, outcomes, hash prefix), on use
        self._cells: dict[tuple[str, str], tuple[list[float], int, tuple[Sample, ...], bytes]] = {}

    def cache_key(self, prompt: str, query: str) -> str:
        cell = self.pool.cells.get((prompt, query))
        content = cell.digest if cell is not None else None
        return stable_key(["replay", KEY_SCHEMA, "cell", self._fingerprint, prompt, query, content])

    def restore(self, prompt: str, query: str, index: int, sample: Sample) -> Sample:
        """A banked replay sample with its text re-drawn from the pool (same cell, same index:
        the same outcome, since the key covers the cell's content)."""
        if sample.text is not None or (prompt, query) not in self._texts:
            return sample
        text = self.draw(prompt, query, [index])[0].text
        return sample if text is None else replace(sample, text=text)

    def _cell(self, prompt: str, query: str) -> tuple[list[float], int, tuple[Sample, ...], bytes]:
        got = self._cells.get((prompt, query))
        if got is None:
            cell = self.pool.cell(prompt, query)
            cdf = (np.cumsum(cell.weights) / cell.weights.sum()).tolist()
            base = f"{self.seed}\x00{prompt}\x00{query}\x00".encode()
            got = self._cells[(prompt, query)] = (cdf, len(cdf) - 1, cell.outcomes, base)
        return got

    def draw(self, prompt: str, query: str, indices: Sequence[int]) -> list[Sample]:
        """Sample ``i``: the outcome where the cell's cumulative weights pass ``u``, the top 53
        bits of ``blake2b(seed, prompt, query, i)`` as a uniform in [0, 1)."""
        cdf, last, outcomes, base = self._cell(prompt, query)
        out = []
        for i in indices:
            h = int.from_bytes(blake2b(base + b"%d" % i, digest_size=8).digest(), "little")
            k = bisect_right(cdf, (h >> 11) / 9007199254740992.0)  # / 2**53
            out.append(outcomes[k if k < last else last])
        return out

    async def sample(self, prompt: str, query: str, indices: Sequence[int]) -> list[Sample]:
        return self.draw(prompt, query, indices)

    def max_cost(self, prompt: str, query: str) -> float | None:
        return max(o.cost for o in self.pool.cell(prompt, query).outcomes)

    def gold(self, query: str) -> str | None:
        return self.pool.gold(query)
