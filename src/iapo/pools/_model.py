"""In-memory pool: recorded completions per (prompt, query) cell, as categorical distributions,
and the builders of cells and pools that the file reader and the importers share."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from iapo.pools._arrays import PoolArrays
from iapo.types import Sample

__all__ = [
    "ACCURACY",
    "Cell",
    "Pool",
    "compact_cell",
    "full_cell",
    "pool_from_arrays",
    "pool_from_cells",
]

ACCURACY = "accuracy"
"""The majority-vote objective; computed from answers and gold, never stored as a score."""


@dataclass(frozen=True, eq=False)
class Cell:
    """The recorded outcomes of one (prompt, query).

    ``outcomes[i]`` occurs with weight ``weights[i]`` (a count). The full pool form gives one
    outcome per recorded sample with weight 1; the compact form gives one outcome per distinct
    answer with its count. Replay draws i.i.d. outcomes with probability ∝ weight.
    """

    prompt: str
    query: str
    gold: str | None
    outcomes: tuple[Sample, ...]
    weights: NDArray[np.float64]

    @property
    def probs(self) -> NDArray[np.float64]:
        return self.weights / self.weights.sum()

    @property
    def size(self) -> float:
        """Number of recorded samples (sum of weights)."""
        return float(self.weights.sum())

    def mean_cost(self) -> float:
        return float(np.dot(self.probs, [o.cost for o in self.outcomes]))

    @cached_property
    def digest(self) -> str:
        """The content identity of the cell's distribution: a hash of its ids, gold, every
        outcome (answer, scores, cost, text, usage) and weight, in order. Computed once per
        cell; equal cells (whatever file or import they came from) have equal digests, and any
        change to what replay could draw changes it."""
        h = hashlib.sha256()
        head = [self.prompt, self.query, self.gold, [float(w) for w in self.weights]]
        h.update(json.dumps(head, ensure_ascii=False).encode())
        for o in self.outcomes:
            blob = [o.answer, sorted(o.scores.items()), o.cost, o.text, sorted(o.usage.items())]
            h.update(b"\x00" + json.dumps(blob, ensure_ascii=False).encode())
        return h.hexdigest()[:32]


@dataclass(frozen=True, eq=False)
class Pool:
    """A complete grid of cells over ``prompts × queries``.

    ``objectives`` are the score names the samples carry (for majority voting the only objective
    is ``accuracy``, computed from answers and gold). ``meta`` keeps provenance: source, licence,
    description.
    """

    objectives: tuple[str, ...]
    prompts: tuple[str, ...]
    queries: tuple[str, ...]
    cells: Mapping[tuple[str, str], Cell]
    cost_unit: str = "unit"
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.cells, _ArrayCells):
            object.__setattr__(self, "cells", MappingProxyType(dict(self.cells)))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    @cached_property
    def arrays(self) -> PoolArrays:
        """The pool as columnar arrays (built once from the cells unless the pool was read into
        arrays, see :func:`pool_from_arrays`)."""
        return PoolArrays.from_cells(self.prompts, self.queries, self.cells)

    def _array_backed(self) -> PoolArrays | None:
        """The arrays the cells are built from, if they are (every outcome plain)."""
        return self.cells.arrays if isinstance(self.cells, _ArrayCells) else None

    def cell(self, prompt: str, query: str) -> Cell:
        return self.cells[(prompt, query)]

    def gold(self, query: str) -> str | None:
        return self.cells[(self.prompts[0], query)].gold

    def subset(
        self, prompts: Iterable[str] | None = None, queries: Iterable[str] | None = None
    ) -> Pool:
        ps = tuple(prompts) if prompts is not None else self.prompts
        qs = tuple(queries) if queries is not None else self.queries
        return Pool(
            objectives=self.objectives,
            prompts=ps,
            queries=qs,
            cells={(p, q): self.cells[(p, q)] for p in ps for q in qs},
            cost_unit=self.cost_unit,
            meta=self.meta,
        )

    def scale_costs(self, factor: float) -> Pool:
        """A copy with every cost multiplied by ``factor`` (e.g. to normalise costs to [0, 1])."""
        backing = self._array_backed()
        if backing is not None:
            return pool_from_arrays(
                backing.scaled(factor), self.objectives, self.cost_unit, self.meta
            )
        cells = {
            key: Cell(
                c.prompt,
                c.query,
                c.gold,
                tuple(
                    Sample(o.answer, o.scores, o.cost * factor, o.text, o.usage) for o in c.outcomes
                ),
                c.weights,
            )
            for key, c in self.cells.items()
        }
        return Pool(self.objectives, self.prompts, self.queries, cells, self.cost_unit, self.meta)

    def max_cost(self) -> float:
        backing = self._array_backed()
        if backing is not None:
            return float(backing.cost.max()) if backing.cost.size else 0.0
        return max((o.cost for c in self.cells.values() for o in c.outcomes), default=0.0)

    @cached_property
    def digest(self) -> str:
        """The content identity of the pool: a hash of its objectives, cost unit and every
        cell's :attr:`Cell.digest` in grid order (``meta`` is provenance, not content)."""
        h = hashlib.sha256(json.dumps([self.objectives, self.cost_unit]).encode())
        for p in self.prompts:
            for q in self.queries:
                h.update(self.cells[(p, q)].digest.encode())
        return h.hexdigest()[:32]


# --------------------------------------------------------------------------------------------
# building cells
# --------------------------------------------------------------------------------------------


def compact_cell(
    prompt: str,
    query: str,
    gold: str | None,
    answer_counts: Mapping[str, int],
    abstain: int,
    cost: float,
) -> Cell:
    """A compact-form cell: one outcome per answer (weight = count), abstentions last."""
    outcomes = [Sample(answer, {}, cost) for answer in answer_counts]
    weights = [float(n) for n in answer_counts.values()]
    if abstain > 0:
        outcomes.append(Sample(None, {}, cost))
        weights.append(float(abstain))
    return Cell(prompt, query, gold, tuple(outcomes), np.asarray(weights, dtype=np.float64))


def full_cell(prompt: str, query: str, gold: str | None, samples: Sequence[Sample]) -> Cell:
    """A full-form cell: one outcome per recorded sample, each with weight 1."""
    return Cell(prompt, query, gold, tuple(samples), np.ones(len(samples), dtype=np.float64))


def pool_from_cells(
    cells: Iterable[Cell],
    *,
    objectives: Sequence[str] | None = None,
    cost_unit: str = "unit",
    meta: Mapping[str, Any] | None = None,
) -> Pool:
    """A Pool over the prompts and queries of ``cells`` in first-appearance order.

    The caller guarantees a complete grid without duplicates. ``objectives`` defaults to the sorted
    union of score names, else ``("accuracy",)``.
    """
    prompts: dict[str, None] = {}
    queries: dict[str, None] = {}
    by_key: dict[tuple[str, str], Cell] = {}
    names: set[str] = set()
    for cell in cells:
        prompts.setdefault(cell.prompt)
        queries.setdefault(cell.query)
        by_key[(cell.prompt, cell.query)] = cell
        if objectives is None:
            for o in cell.outcomes:
                names.update(o.scores)
    objs = tuple(objectives) if objectives is not None else (tuple(sorted(names)) or (ACCURACY,))
    return Pool(objs, tuple(prompts), tuple(queries), by_key, cost_unit, dict(meta or {}))


# --------------------------------------------------------------------------------------------
# cells built on demand from arrays
# --------------------------------------------------------------------------------------------


class _ArrayCells(Mapping[tuple[str, str], Cell]):
    """The cells of plain :class:`PoolArrays` (answers, costs and weights only), each built the
    way :func:`compact_cell` builds it when first looked up; iterated in the pool's cell order."""

    def __init__(self, arrays: PoolArrays) -> None:
        if not arrays.plain:
            raise ValueError("only plain pool arrays (no scores, text or usage) give cells")
        self.arrays = arrays
        self._prompt = {p: i for i, p in enumerate(arrays.prompts)}
        self._query = {q: i for i, q in enumerate(arrays.queries)}
        self._built: dict[int, Cell] = {}

    def __getitem__(self, key: tuple[str, str]) -> Cell:
        if not (isinstance(key, tuple) and len(key) == 2):
            raise KeyError(key)
        p, q = self._prompt.get(key[0]), self._query.get(key[1])
        if p is None or q is None:
            raise KeyError(key)
        i = p * len(self._query) + q
        cell = self._built.get(i)
        if cell is None:
            a = self.arrays
            lo, hi = int(a.start[i]), int(a.start[i + 1])
            labels = a.labels
            outcomes = tuple(
                Sample(labels[x] if x >= 0 else None, {}, c)
                for x, c in zip(a.answer[lo:hi].tolist(), a.cost[lo:hi].tolist(), strict=True)
            )
            g = int(a.gold[i])
            cell = Cell(
                key[0], key[1], labels[g] if g >= 0 else None, outcomes, a.weight[lo:hi].copy()
            )
            self._built[i] = cell
        return cell

    def __iter__(self) -> Iterator[tuple[str, str]]:
        a = self.arrays
        n_q = len(a.queries)
        for i in a.order.tolist():
            yield a.prompts[i // n_q], a.queries[i % n_q]

    def __len__(self) -> int:
        return len(self._prompt) * len(self._query)


def pool_from_arrays(
    arrays: PoolArrays,
    objectives: Sequence[str],
    cost_unit: str = "unit",
    meta: Mapping[str, Any] | None = None,
) -> Pool:
    """A Pool over plain ``arrays``: its cells are built on demand, and ``pool.arrays`` is
    ``arrays`` (no per-sample object is made to encode it or to scale its costs)."""
    pool = Pool(
        tuple(objectives),
        arrays.prompts,
        arrays.queries,
        _ArrayCells(arrays),
        cost_unit,
        dict(meta or {}),
    )
    pool.__dict__["arrays"] = arrays
    return pool
