"""The dynamic programme over vote-count states, vectorised over rows of one class layout.

Mass flows level by level through the state space (:mod:`iapo.adaptive._space`): at a batch
boundary the states where the rule stops hand their mass to the outcome (credit, samples drawn,
class counts drawn) and leave; the others move on by one sample. Two ways to draw a sample:

* ``probs`` (rows, M): i.i.d. draws from a categorical distribution (the exact ground truth);
* ``pool`` (rows, M): draws without replacement from a pull's class counts (the U-statistic
  over orderings), probability ``(c_a − k_a) / (n − drawn)``.

Drawing one sample at a time and asking the rule only at batch ends is the batch programme:
the rule does not act inside a batch, so a batch's multinomial transition is the product of
its samples' categorical ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from iapo.adaptive._scheme import AdaptiveScheme
from iapo.adaptive._space import (
    ABSTAIN,
    DEFAULT_MAX_STATES,
    count_states,
    credit_vector,
    space,
    stop_mask,
)
from iapo.estimators import TieCredit

__all__ = ["Outcome", "propagate"]

#: Working-memory bound: states of the widest level × rows per pass.
_CELLS = 1 << 22


@dataclass(frozen=True)
class Outcome:
    """Expected credit (rows,), samples drawn (rows,) and class counts drawn (rows, M)."""

    credit: NDArray[np.float64]
    samples: NDArray[np.float64]
    drawn: NDArray[np.float64]


@lru_cache(maxsize=512)
def _schedule(
    roles: tuple[int, ...],
    caps: tuple[int, ...],
    scheme: AdaptiveScheme,
    tie_credit: TieCredit,
    limit: int,
) -> tuple[tuple[NDArray[np.bool_] | None, ...], tuple[NDArray[np.float64] | None, ...]]:
    levels = space(roles, caps, scheme.n_max, scheme.rule.memory, limit)
    ends = set(scheme.boundaries())
    stops: list[NDArray[np.bool_] | None] = []
    credits: list[NDArray[np.float64] | None] = []
    for lv in levels:
        if lv.n in ends:
            stops.append(stop_mask(lv, roles, scheme.rule, scheme.n_max))
            credits.append(credit_vector(lv, roles, tie_credit))
        else:
            stops.append(None)
            credits.append(None)
    return tuple(stops), tuple(credits)


def check_size(
    roles: tuple[int, ...], caps: tuple[int, ...], scheme: AdaptiveScheme, limit: int
) -> None:
    n_answers = sum(r != ABSTAIN for r in roles)
    size = count_states(caps, scheme.n_max, 0, n_answers)  # runs: checked while building
    if size > limit:
        raise ValueError(
            f"adaptive programme too large: about {size:,} states for {len(roles)} answer classes "
            f"(with abstention), N_max {scheme.n_max}, rule {scheme.rule.id} (limit {limit:,}); "
            "use fewer classes or a smaller N_max, or random orderings for estimates"
        )


def propagate(
    roles: tuple[int, ...],
    caps: tuple[int, ...],
    scheme: AdaptiveScheme,
    tie_credit: TieCredit,
    *,
    probs: NDArray[np.float64] | None = None,
    pool: NDArray[np.int64] | None = None,
    limit: int = DEFAULT_MAX_STATES,
) -> Outcome:
    """The outcome of ``scheme`` on every row of ``probs`` or of ``pool`` (exactly one given;
    columns in the order of ``roles``, capped by ``caps``)."""
    levels = space(roles, caps, scheme.n_max, scheme.rule.memory, limit)
    stops, credits = _schedule(roles, caps, scheme, tie_credit, limit)
    table = probs if probs is not None else pool
    assert table is not None and (probs is None) != (pool is None)
    rows, m = table.shape
    widest = max(len(lv.counts) for lv in levels)
    step = max(1, _CELLS // widest)
    credit = np.zeros(rows)
    samples = np.zeros(rows)
    drawn = np.zeros((rows, m))
    for lo in range(0, rows, step):
        part = slice(lo, min(lo + step, rows))
        tab = np.asarray(table[part], dtype=np.float64)
        total = tab.sum(axis=1) if pool is not None else None
        mass = np.ones((1, tab.shape[0]))
        for lv, stop, cred in zip(levels, stops, credits, strict=True):
            if stop is not None and cred is not None:
                out = mass[stop]  # (stopping states, rows)
                credit[part] += cred[stop] @ out
                samples[part] += lv.n * out.sum(axis=0)
                drawn[part] += (lv.counts[stop].T @ out).T
                mass = np.where(stop[:, None], 0.0, mass)
            if lv.n >= scheme.n_max:
                break
            nxt = None
            for a, into in enumerate(lv.into):
                if total is not None:
                    left = np.clip(tab[None, :, a] - lv.counts[:, a, None], 0.0, None)
                    w = mass * left / np.maximum(total - lv.n, 1.0)[None, :]
                else:
                    w = mass * tab[None, :, a]
                term = into @ w
                nxt = term if nxt is None else nxt + term
            assert nxt is not None
            mass = np.asarray(nxt)
    return Outcome(credit, samples, drawn)
