"""Replay a recorded pool as if it were the LLM: i.i.d. draws from each cell, seeded per index."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import replace

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
        self._cdf = {
            key: np.cumsum(cell.weights) / cell.weights.sum() for key, cell in pool.cells.items()
        }

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

    def draw(self, prompt: str, query: str, indices: Sequence[int]) -> list[Sample]:
        cell = self.pool.cell(prompt, query)
        cdf = self._cdf[(prompt, query)]
        base = f"{self.seed}\x00{prompt}\x00{query}\x00".encode()
        u = np.empty(len(indices))
        for j, i in enumerate(indices):
            digest = hashlib.blake2b(base + str(i).encode(), digest_size=8).digest()
            u[j] = (struct.unpack("<Q", digest)[0] >> 11) / float(1 << 53)
        picks = np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)
        return [cell.outcomes[k] for k in picks]

    async def sample(self, prompt: str, query: str, indices: Sequence[int]) -> list[Sample]:
        return self.draw(prompt, query, indices)

    def max_cost(self, prompt: str, query: str) -> float | None:
        return max(o.cost for o in self.pool.cell(prompt, query).outcomes)

    def gold(self, query: str) -> str | None:
        return self.pool.gold(query)
