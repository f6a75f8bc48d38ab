"""Exact expected credit, samples and cost of an adaptive scheme on categorical cells.

Rows are reduced to profiles (gold probability, the other answers' probabilities in descending
order, abstention mass; zero-probability classes dropped), grouped by their class layout (gold
present?, number of other answers, abstention present?) and computed once per distinct profile
by the programme of :mod:`iapo.adaptive._dp`. Expected cost is expected samples × the cell's
mean cost per sample (Wald's identity: whether sample i is drawn is decided before it is drawn,
so ``E[Σ_{i≤τ} cost_i] = Σ_i E[cost_i] P(τ ≥ i) = E[cost] E[τ]``, even when costs depend on
the answer).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from iapo.adaptive._dp import check_size, propagate
from iapo.adaptive._scheme import AdaptiveScheme
from iapo.adaptive._space import ABSTAIN, DEFAULT_MAX_STATES, GOLD, OTHER, UNBOUNDED
from iapo.estimators import TieCredit, check_tie_credit

__all__ = [
    "ExactAdaptive",
    "adaptive_exact",
    "adaptive_exact_cells",
    "answer_probs",
    "cell_arrays",
    "layout_groups",
    "layout_table",
]


@dataclass(frozen=True)
class ExactAdaptive:
    """Per row: expected ``credit``, expected ``samples`` drawn, expected ``cost`` (samples ×
    mean cost; 0 where no cost was given)."""

    credit: NDArray[np.float64]
    samples: NDArray[np.float64]
    cost: NDArray[np.float64]


def layout_groups(
    gold: NDArray[np.float64], others: NDArray[np.float64], abstain: NDArray[np.float64]
) -> dict[tuple[bool, int, bool], NDArray[np.int64]]:
    """Rows by class layout: (gold > 0, number of others > 0, abstain > 0) → row indices.
    ``others`` (rows, S) must be sorted descending per row."""
    key = np.column_stack([gold > 0, (others > 0).sum(axis=1), abstain > 0]).astype(np.int64)
    out: dict[tuple[bool, int, bool], NDArray[np.int64]] = {}
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    inv = np.asarray(inv).ravel()
    for i, (g, s, a) in enumerate(uniq.tolist()):
        out[(bool(g), int(s), bool(a))] = np.flatnonzero(inv == i)
    return out


def layout_table(
    layout: tuple[bool, int, bool],
    gold: NDArray[np.float64],
    others: NDArray[np.float64],
    abstain: NDArray[np.float64],
) -> tuple[tuple[int, ...], NDArray[np.float64]]:
    """The roles of a layout and its rows' columns in that order."""
    has_gold, n_others, has_abstain = layout
    roles = (GOLD,) * has_gold + (OTHER,) * n_others + (ABSTAIN,) * has_abstain
    cols = ([gold[:, None]] if has_gold else []) + [others[:, :n_others]]
    cols += [abstain[:, None]] if has_abstain else []
    return roles, np.concatenate(cols, axis=1)


def adaptive_exact(
    probs: NDArray[np.float64],
    gold_index: NDArray[np.int64],
    scheme: AdaptiveScheme,
    tie_credit: TieCredit = "fractional",
    mean_cost: NDArray[np.float64] | None = None,
    *,
    max_states: int = DEFAULT_MAX_STATES,
) -> ExactAdaptive:
    """Exact expectations of ``scheme`` under i.i.d. draws from each row's categorical answer
    distribution (the conventions of :func:`iapo.estimators.mv_exact`): ``probs`` (rows, M)
    class probabilities, the rest of the mass (clipped at 0) abstains; ``gold_index`` (rows,)
    the gold column or -1. ``mean_cost`` (rows,): cost per sample (for the expected cost).
    Raises ValueError if a layout's programme exceeds ``max_states`` states."""
    tie_credit = check_tie_credit(tie_credit)
    probs = np.asarray(probs, dtype=np.float64)
    gold_index = np.asarray(gold_index, dtype=np.int64)
    if probs.ndim != 2 or gold_index.shape != (probs.shape[0],):
        raise ValueError(
            f"expected probs (rows, M) and gold_index (rows,), got {probs.shape}, "
            f"{gold_index.shape}"
        )
    rows, m = probs.shape
    if np.any(gold_index >= m) or np.any(gold_index < -1):
        raise ValueError(f"gold_index must lie in -1..{m - 1}")
    p = np.clip(probs, 0.0, None)
    every = np.arange(rows)
    has = gold_index >= 0
    gold = np.where(has, p[every, np.maximum(gold_index, 0)], 0.0)
    others = p.copy()
    others[every[has], gold_index[has]] = 0.0
    others = -np.sort(-others, axis=1)
    abstain = np.clip(1.0 - probs.sum(axis=1), 0.0, None)
    abstain = np.where(abstain > 1e-12, abstain, 0.0)  # rounding of probabilities summing to 1
    credit = np.zeros(rows)
    samples = np.zeros(rows)
    for layout, idx in layout_groups(gold, others, abstain).items():
        roles, table = layout_table(layout, gold[idx], others[idx], abstain[idx])
        if len(roles) == 0:
            raise ValueError("a row has no probability mass")
        caps = (UNBOUNDED,) * len(roles)
        check_size(roles, caps, scheme, max_states)
        table = table / table.sum(axis=1, keepdims=True)
        uniq, inv = np.unique(table, axis=0, return_inverse=True)
        res = propagate(roles, caps, scheme, tie_credit, probs=uniq, limit=max_states)
        inv = np.asarray(inv).ravel()
        credit[idx] = res.credit[inv]
        samples[idx] = res.samples[inv]
    cost = np.zeros(rows) if mean_cost is None else samples * np.asarray(mean_cost, float)
    return ExactAdaptive(credit, samples, cost)


class CellLike(Protocol):
    """What :func:`adaptive_exact_cells` reads of a pool cell (:class:`iapo.pools.Cell`)."""

    @property
    def gold(self) -> str | None: ...

    @property
    def outcomes(self) -> Sequence[object]: ...

    @property
    def probs(self) -> NDArray[np.float64]: ...

    def mean_cost(self) -> float: ...


def answer_probs(cells: Sequence[CellLike]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """``(probs, gold_index)`` of pool cells, the inputs of :func:`~iapo.estimators.mv_exact`
    and :func:`adaptive_exact`: outcome probabilities summed per answer in first-appearance
    order (None abstains: the rest of the mass), gold's column or -1."""
    classes: list[dict[Hashable, float]] = []
    for cell in cells:
        acc: dict[Hashable, float] = {}
        for o, pr in zip(cell.outcomes, cell.probs, strict=True):
            a = getattr(o, "answer", None)
            if a is not None:
                acc[a] = acc.get(a, 0.0) + float(pr)
        classes.append(acc)
    width = max([len(c) for c in classes] + [1])
    probs = np.zeros((len(cells), width))
    gold_index = np.full(len(cells), -1, dtype=np.int64)
    for r, (cell, acc) in enumerate(zip(cells, classes, strict=True)):
        for j, (answer, pr) in enumerate(acc.items()):
            probs[r, j] = pr
            if answer == cell.gold:
                gold_index[r] = j
    return probs, gold_index


def cell_arrays(
    cells: Sequence[CellLike],
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]:
    """``(probs, gold_index, mean_cost)`` of pool cells, the inputs of :func:`adaptive_exact`:
    :func:`answer_probs`, and cost per sample = ``cell.mean_cost()``."""
    probs, gold_index = answer_probs(cells)
    return probs, gold_index, np.array([c.mean_cost() for c in cells], dtype=np.float64)


def adaptive_exact_cells(
    cells: Sequence[CellLike],
    scheme: AdaptiveScheme,
    tie_credit: TieCredit = "fractional",
    *,
    max_states: int = DEFAULT_MAX_STATES,
) -> ExactAdaptive:
    """:func:`adaptive_exact` of pool cells (:func:`cell_arrays`)."""
    probs, gold_index, mean_cost = cell_arrays(cells)
    return adaptive_exact(probs, gold_index, scheme, tie_credit, mean_cost, max_states=max_states)
