"""The state space of the exact programmes: vote-count vectors, level by level.

A state after n samples is the vector of counts of each answer class (class roles: gold, other
answer, abstention), plus, for rules that look back (``window``: memory w), the class of the last
sample and the length of the trailing run of equal answers capped at w (an abstention resets it
to 0). Level n holds every state reachable in n samples with class counts ≤ their caps (N_max
for draws with replacement; a pull's class counts for draws without replacement); a sparse 0/1
matrix per class maps level n to level n + 1. Spaces are cached by their shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from iapo.adaptive._rules import StopRule, VoteState
from iapo.estimators import TieCredit

__all__ = [
    "ABSTAIN",
    "DEFAULT_MAX_STATES",
    "GOLD",
    "OTHER",
    "UNBOUNDED",
    "Level",
    "count_states",
    "credit_vector",
    "space",
    "stop_mask",
    "unique_rows",
]

GOLD, OTHER, ABSTAIN = 0, 1, 2
#: States (summed over levels) above which an exact programme refuses (memory and time).
DEFAULT_MAX_STATES = 2_000_000


@dataclass(frozen=True)
class Level:
    """The states after ``n`` samples: ``counts`` (S, M), ``last`` and ``run`` (S,) when the
    space tracks runs; ``into[a]`` (S_next, S): 1 where adding class a leads (absent at N_max)."""

    n: int
    counts: NDArray[np.int64]
    last: NDArray[np.int64] | None
    run: NDArray[np.int64] | None
    into: tuple[sparse.csr_matrix, ...]


def count_states(caps: tuple[int, ...], n_max: int, memory: int, n_answers: int) -> int:
    """An upper bound of the states of a space (exact without runs): count vectors of total
    ≤ n_max with count ≤ cap per class, times ``1 + n_answers · memory`` with runs."""
    poly = np.zeros(n_max + 1, dtype=object)
    poly[0] = 1
    for cap in caps:
        new = np.zeros(n_max + 1, dtype=object)
        for x in range(min(cap, n_max) + 1):
            new[x:] += poly[: n_max + 1 - x]
        poly = new
    total = int(sum(poly))
    return total * (1 + n_answers * memory) if memory else total


#: A cap that never binds (draws with replacement): counts stay below N_max anyway.
UNBOUNDED = 1 << 30
_SPACES: dict[tuple[tuple[int, ...], tuple[int, ...], int], list[Level]] = {}
#: States kept in the cache of spaces (least recently used dropped first).
_CACHE_STATES = 4_000_000


def row_keys(arr: NDArray[np.int64]) -> NDArray[np.int64] | None:
    """One int64 per row (mixed radix) when the rows' non-negative entries fit, else None."""
    if arr.shape[1] == 0:
        return np.zeros(len(arr), dtype=np.int64)
    base = int(arr.max()) + 1 if arr.size else 1
    if arr.shape[1] * np.log2(max(base, 2)) >= 62:
        return None
    return np.asarray(arr @ (base ** np.arange(arr.shape[1], dtype=np.int64)), dtype=np.int64)


def unique_rows(arr: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Indices of one row per distinct row, and each row's distinct-row number."""
    keys = row_keys(arr)
    if keys is None:
        _, first, inv = np.unique(arr, axis=0, return_index=True, return_inverse=True)
    else:
        _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    return np.asarray(first), np.asarray(inv).ravel()


def space(
    roles: tuple[int, ...],
    caps: tuple[int, ...],
    n_max: int,
    memory: int,
    limit: int = DEFAULT_MAX_STATES,
) -> tuple[Level, ...]:
    """Levels 0..n_max of the space of classes with these roles and caps (see module doc);
    the ``into`` maps of level n_max may be present (a space serves every smaller N_max: it is
    cached per roles, caps and memory and extended on demand). ValueError once the levels hold
    more than ``limit`` states."""
    key = (roles, caps, memory)
    levels = _SPACES.pop(key, None)
    if levels is None:
        m = len(roles)
        zero = np.zeros((1, m), dtype=np.int64)
        first = Level(
            0,
            zero,
            np.full(1, -1, dtype=np.int64) if memory else None,
            np.zeros(1, dtype=np.int64) if memory else None,
            (),
        )
        levels = [first]
    if len(levels) > n_max and key not in _SPACES:  # cached and long enough: no new states
        _SPACES[key] = levels  # most recently used last
        return tuple(levels[: n_max + 1])
    size = sum(len(lv.counts) for lv in levels)
    while len(levels) <= n_max:
        levels[-1], nxt = _extend(levels[-1], roles, caps, memory)
        levels.append(nxt)
        size += len(nxt.counts)
        if size > limit:
            raise ValueError(
                f"adaptive programme too large: more than {limit:,} states for {len(roles)} "
                f"answer classes (with abstention), N_max {n_max}, memory {memory}; use fewer "
                "classes or a smaller N_max, or random orderings for estimates"
            )
    _SPACES[key] = levels  # most recently used last
    total = sum(len(lv.counts) for lvs in _SPACES.values() for lv in lvs)
    while total > _CACHE_STATES and len(_SPACES) > 1:
        dropped = _SPACES.pop(next(iter(_SPACES)))
        total -= sum(len(lv.counts) for lv in dropped)
    return tuple(levels[: n_max + 1])


def _extend(
    lv: Level, roles: tuple[int, ...], caps: tuple[int, ...], memory: int
) -> tuple[Level, Level]:
    """The level with its ``into`` maps, and the next level."""
    m = len(roles)
    counts, last, run = lv.counts, lv.last, lv.run
    parts_k, parts_l, parts_r, src, cls = [], [], [], [], []
    for a in range(m):
        idx = np.flatnonzero(counts[:, a] < caps[a])
        k = counts[idx].copy()
        k[:, a] += 1
        parts_k.append(k)
        src.append(idx)
        cls.append(np.full(len(idx), a))
        if memory:
            assert last is not None and run is not None
            if roles[a] == ABSTAIN:
                parts_l.append(np.full(len(idx), -1))
                parts_r.append(np.zeros(len(idx), dtype=np.int64))
            else:
                parts_l.append(np.full(len(idx), a))
                parts_r.append(np.where(last[idx] == a, np.minimum(run[idx] + 1, memory), 1))
    allk = np.concatenate(parts_k)
    key = allk
    if memory:
        key = np.column_stack([allk, np.concatenate(parts_l) + 1, np.concatenate(parts_r)])
    first, inv = unique_rows(key)
    uniq = key[first]
    all_src, all_cls = np.concatenate(src), np.concatenate(cls)
    into = []
    for a in range(m):
        sel = all_cls == a
        into.append(
            sparse.csr_matrix(
                (np.ones(int(sel.sum())), (inv[sel], all_src[sel])),
                shape=(len(uniq), len(counts)),
            )
        )
    done = Level(lv.n, counts, last, run, tuple(into))
    nxt = Level(
        lv.n + 1,
        np.ascontiguousarray(uniq[:, :m]),
        uniq[:, m] - 1 if memory else None,
        uniq[:, m + 1].copy() if memory else None,
        (),
    )
    return done, nxt


def stop_mask(
    level: Level, roles: tuple[int, ...], rule: StopRule, n_max: int
) -> NDArray[np.bool_]:
    """Where the rule stops at this level (every state at N_max), asking it once per distinct
    :class:`VoteState`."""
    if level.n >= n_max:
        return np.ones(len(level.counts), dtype=bool)
    answers = np.array([r != ABSTAIN for r in roles])
    votes = -np.sort(-level.counts[:, answers], axis=1)
    abstain = level.counts[:, ~answers].sum(axis=1)
    run = level.run if level.run is not None else np.zeros(len(votes), dtype=np.int64)
    key = np.column_stack([votes, abstain, run])
    first, inv = unique_rows(key)
    uniq = key[first]
    out = np.empty(len(uniq), dtype=bool)
    for i, row in enumerate(uniq.tolist()):
        st = VoteState(tuple(v for v in row[:-2] if v > 0), row[-2], level.n, n_max, row[-1])
        out[i] = bool(rule.stop(st))
    return np.asarray(out[inv], dtype=bool)


def credit_vector(
    level: Level, roles: tuple[int, ...], tie_credit: TieCredit
) -> NDArray[np.float64]:
    """The vote's credit in every state of the level (0 without a gold class)."""
    if GOLD not in roles:
        return np.zeros(len(level.counts))
    answers = np.array([r != ABSTAIN for r in roles])
    votes = level.counts[:, answers]
    g = level.counts[:, roles.index(GOLD)]
    top = votes.max(axis=1)
    ties = (votes == top[:, None]).sum(axis=1)
    win = (g > 0) & (g == top)
    share = np.where(ties > 1, 0.5, 1.0) if tie_credit == "half" else 1.0 / np.maximum(ties, 1)
    return np.where(win, share, 0.0)
