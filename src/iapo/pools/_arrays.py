"""A pool as columnar numpy arrays: one row per recorded outcome, cells as contiguous slices.

:class:`PoolArrays` is what the benchmark simulator and the exact tables read: no per-sample
objects. It is built from a :class:`~iapo.pools.Pool`'s cells (:meth:`PoolArrays.from_cells`),
or directly by the pool file reader (:mod:`iapo.pools._columns`) and its cache
(:mod:`iapo.pools._cache`), in which case the pool's cells are built from it only on demand.

Per-cell reductions (:meth:`PoolArrays.cell_sums`, :meth:`PoolArrays.cell_dots`) run on all cells
of one outcome count at once, on a contiguous (cells, count) array: numpy reduces each row as it
reduces that cell's own 1-D array, so the results are those of the per-cell code, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

__all__ = ["PoolArrays"]


class _Outcome(Protocol):
    @property
    def answer(self) -> str | None: ...
    @property
    def scores(self) -> Mapping[str, float]: ...
    @property
    def cost(self) -> float: ...
    @property
    def text(self) -> str | None: ...
    @property
    def usage(self) -> Mapping[str, int]: ...


class _CellLike(Protocol):
    @property
    def gold(self) -> str | None: ...
    @property
    def outcomes(self) -> Sequence[_Outcome]: ...
    @property
    def weights(self) -> NDArray[np.float64]: ...


@dataclass(frozen=True, eq=False)
class PoolArrays:
    """The outcomes of every (prompt, query) cell, cell ``i = p · Q + q`` (prompt-major) holding
    rows ``start[i]:start[i + 1]``.

    ``labels`` is the table of answer strings (answers and gold answers); ``answer`` and ``gold``
    index it, ``-1`` meaning none. ``scores`` (outcomes, score names) is NaN where an outcome has
    no such score. ``order`` lists the cells' grid indices in the pool's own cell order (its
    file's line order). ``plain``: every outcome is ``Sample(answer, {}, cost)`` (no scores, text
    or usage), so the cells can be rebuilt from these arrays alone. ``source``: the pool file
    these arrays were read from and a key of their content (the file's SHA-256, and any cost
    scaling since), under which tables computed from them may be cached; None: not cached.
    """

    prompts: tuple[str, ...]
    queries: tuple[str, ...]
    labels: tuple[str, ...]
    gold: NDArray[np.int64]
    start: NDArray[np.int64]
    answer: NDArray[np.int64]
    cost: NDArray[np.float64]
    weight: NDArray[np.float64]
    score_names: tuple[str, ...]
    scores: NDArray[np.float64]
    order: NDArray[np.int64]
    plain: bool
    source: tuple[Path, str] | None = None

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def from_cells(
        cls,
        prompts: Sequence[str],
        queries: Sequence[str],
        cells: Mapping[tuple[str, str], _CellLike],
    ) -> PoolArrays:
        """The arrays of a pool's cells (one pass over its outcomes)."""
        label_id: dict[str, int] = {}
        names: dict[str, int] = {}
        gold: list[int] = []
        lengths: list[int] = []
        answer: list[int] = []
        cost: list[float] = []
        weights: list[NDArray[np.float64]] = []
        score_rows: list[tuple[int, int, float]] = []
        plain = True
        n = 0
        for p in prompts:
            for q in queries:
                cell = cells[(p, q)]
                g = cell.gold
                gold.append(-1 if g is None else label_id.setdefault(g, len(label_id)))
                lengths.append(len(cell.outcomes))
                weights.append(np.asarray(cell.weights, dtype=np.float64))
                for o in cell.outcomes:
                    a = o.answer
                    answer.append(-1 if a is None else label_id.setdefault(a, len(label_id)))
                    cost.append(o.cost)
                    if o.scores or o.text is not None or o.usage:
                        plain = False
                    for k, v in o.scores.items():
                        score_rows.append((n, names.setdefault(k, len(names)), float(v)))
                    n += 1
        scores = np.full((n, len(names)), np.nan)
        if score_rows:
            rows, cols, vals = zip(*score_rows, strict=True)
            scores[list(rows), list(cols)] = vals
        start = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=start[1:])
        index = {
            (p, q): i * len(queries) + j
            for i, p in enumerate(prompts)
            for j, q in enumerate(queries)
        }
        order = np.fromiter((index[k] for k in cells if k in index), np.int64)
        return cls(
            prompts=tuple(prompts),
            queries=tuple(queries),
            labels=tuple(label_id),
            gold=np.asarray(gold, dtype=np.int64),
            start=start,
            answer=np.asarray(answer, dtype=np.int64),
            cost=np.asarray(cost, dtype=np.float64),
            weight=np.concatenate(weights) if weights else np.zeros(0),
            score_names=tuple(names),
            scores=scores,
            order=order,
            plain=plain,
        )

    def scaled(self, factor: float) -> PoolArrays:
        """A copy with every cost multiplied by ``factor`` (elementwise, as cell by cell)."""
        source = (
            None
            if self.source is None
            else (self.source[0], f"{self.source[1]}*{float(factor).hex()}")
        )
        return replace(self, cost=self.cost * factor, source=source)

    # -- shape --------------------------------------------------------------------------------
    @property
    def n_cells(self) -> int:
        return len(self.start) - 1

    @property
    def lengths(self) -> NDArray[np.int64]:
        """Outcomes per cell, (cells,)."""
        return np.diff(self.start)

    def cell_ids(
        self, prompts: Iterable[str] | None = None, queries: Iterable[str] | None = None
    ) -> NDArray[np.int64]:
        """Grid indices (len(prompts), len(queries)) of these cells (default: all)."""
        pi = {p: i for i, p in enumerate(self.prompts)}
        qi = {q: i for i, q in enumerate(self.queries)}
        ps = np.array([pi[p] for p in (self.prompts if prompts is None else prompts)], np.int64)
        qs = np.array([qi[q] for q in (self.queries if queries is None else queries)], np.int64)
        return np.asarray(ps[:, None] * len(self.queries) + qs[None, :], dtype=np.int64)

    def rows_of(self, cells: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The outcome rows of ``cells`` (1-D, in order) and each row's position in ``cells``."""
        lengths = self.lengths[cells]
        owner = np.repeat(np.arange(len(cells), dtype=np.int64), lengths)
        first = np.zeros(len(cells), dtype=np.int64)
        np.cumsum(lengths[:-1], out=first[1:])
        rows = self.start[cells][owner] + (np.arange(len(owner), dtype=np.int64) - first[owner])
        return rows, owner

    def by_length(
        self, cells: NDArray[np.int64]
    ) -> Iterator[tuple[int, NDArray[np.int64], NDArray[np.int64]]]:
        """``(length, positions in cells, rows (cells, length))`` for each outcome count."""
        lengths = self.lengths[cells]
        for length in np.unique(lengths):
            pos = np.flatnonzero(lengths == length)
            rows = self.start[cells[pos]][:, None] + np.arange(int(length), dtype=np.int64)
            yield int(length), pos, rows

    # -- per-cell reductions, bit for bit those of the per-cell code ---------------------------
    def cell_sums(self, values: NDArray[np.float64], cells: NDArray[np.int64]) -> NDArray[Any]:
        """``values[start:end].sum()`` of each cell (values: one per outcome row)."""
        out = np.zeros(len(cells), dtype=values.dtype)
        for length, pos, rows in self.by_length(cells):
            if length:
                out[pos] = np.ascontiguousarray(values[rows]).sum(axis=1)
        return out

    def cell_dots(
        self, a: NDArray[np.float64], b: NDArray[np.float64], cells: NDArray[np.int64]
    ) -> NDArray[np.float64]:
        """``np.dot(a[start:end], b[start:end])`` of each cell (matmul calls the same BLAS dot
        per stacked pair)."""
        out = np.zeros(len(cells))
        for length, pos, rows in self.by_length(cells):
            if length:
                x = np.ascontiguousarray(a[rows])[:, None, :]
                y = np.ascontiguousarray(b[rows])[:, :, None]
                out[pos] = np.matmul(x, y)[:, 0, 0]
        return out

    def probs(self, cells: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """The rows of ``cells`` and their probabilities ``weights / weights.sum()`` per cell."""
        rows, owner = self.rows_of(cells)
        total = self.cell_sums(self.weight, cells)
        return rows, self.weight[rows] / total[owner]

    def first_ranks(
        self, rows: NDArray[np.int64], owner: NDArray[np.int64], mask: NDArray[Any]
    ) -> NDArray[np.int64]:
        """For each row (of ``rows_of``) with ``mask``: the 0-based rank of its answer among the
        distinct answers of its cell's masked rows, in order of first appearance (-1 elsewhere)."""
        out = np.full(len(rows), -1, dtype=np.int64)
        sel = np.flatnonzero(mask)
        if sel.size == 0:
            return out
        width = len(self.labels) + 1
        key = owner[sel] * width + self.answer[rows[sel]]
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        is_first = np.zeros(sel.size, dtype=np.int64)
        is_first[first] = 1
        count = np.cumsum(is_first)  # distinct answers seen so far, over all cells
        cell_of = owner[sel]
        begin = np.ones(sel.size, dtype=bool)
        begin[1:] = cell_of[1:] != cell_of[:-1]
        base = np.maximum.accumulate(np.where(begin, count - is_first, 0))
        ranks = count - base - 1  # rank of each first appearance within its cell
        out[sel] = ranks[first][np.asarray(inverse).ravel()]
        return out
