"""Best-of-N (BoN) estimators (DESIGN §1-2).

The aggregated value of a set of samples: the sample with the highest ``select`` score is chosen
(ties broken uniformly at random) and its ``value`` is reported; with ``value=None`` the value is
the select score itself, so the aggregate is the maximum. All estimators return the expectation over
the random tie break, which is the mean value of the tied samples.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

__all__ = ["bon_blocks", "bon_exact", "bon_ustat"]


@lru_cache(maxsize=16)
def _max_weights(n: int, k_max: int) -> NDArray[np.float64]:
    """``w[i - 1, k - 1] = C(i - 1, k - 1) / C(n, k)``: P(the i-th smallest is a k-subset's max)."""
    w = np.zeros((n, k_max))
    for k in range(1, min(n, k_max) + 1):
        denom = math.comb(n, k)
        w[k - 1 :, k - 1] = [math.comb(i - 1, k - 1) / denom for i in range(k, n + 1)]
    w.setflags(write=False)
    return w


def _sort_by_select(
    select: NDArray[np.float64], others: list[NDArray[np.float64]]
) -> tuple[NDArray[np.float64], list[NDArray[np.float64]], NDArray[np.intp]]:
    """Sort rows by ``select``; return the sorted arrays and each position's tie-group id."""
    order = np.argsort(select, axis=1, kind="stable")
    srt = np.take_along_axis(select, order, axis=1)
    rows, n = srt.shape
    start = np.ones((rows, n), dtype=bool)
    start[:, 1:] = srt[:, 1:] != srt[:, :-1]
    group = np.cumsum(start.ravel()) - 1  # global id of each position's tie group
    return srt, [np.take_along_axis(a, order, axis=1) for a in others], group.reshape(rows, n)


def _group_sum(x: NDArray[np.float64], group: NDArray[np.intp]) -> NDArray[np.float64]:
    """Sum of ``x`` over each position's tie group, broadcast back to the positions."""
    sums = np.bincount(group.ravel(), weights=x.ravel())
    return np.asarray(sums[group], dtype=np.float64)


def _check(select: NDArray[np.float64], *others: NDArray[np.float64] | None) -> None:
    if select.ndim != 2:
        raise ValueError(f"expected a 2-D array (rows, samples), got shape {select.shape}")
    for other in others:
        if other is not None and other.shape != select.shape:
            raise ValueError(f"shape {other.shape} does not match select's {select.shape}")


def bon_ustat(
    select: NDArray[np.float64], value: NDArray[np.float64] | None, k_max: int
) -> NDArray[np.float64]:
    """Mean BoN value over all C(n, k) k-subsets of each row, k = 1..k_max (NaN for k > n).

    ``select`` (rows, n) are the selection scores, ``value`` (rows, n) the values to report
    (``None``: the scores themselves, i.e. the expected maximum).
    """
    select = np.asarray(select, dtype=np.float64)
    _check(select)
    n_rows, n = select.shape
    out = np.full((n_rows, k_max), np.nan)
    kc = min(n, k_max)
    if kc <= 0 or n_rows == 0:
        return out
    if value is None:
        vals = np.sort(select, axis=1)
    else:
        value = np.asarray(value, dtype=np.float64)
        _check(select, value)
        _, (vals,), group = _sort_by_select(select, [value])
        # A tie group's items are interchangeable: each may be replaced by the group mean.
        vals = _group_sum(vals, group) / _group_sum(np.ones_like(vals), group)
    out[:, :kc] = vals @ _max_weights(n, kc)
    return out


def bon_blocks(
    select: NDArray[np.float64], value: NDArray[np.float64] | None, k_max: int
) -> NDArray[np.float64]:
    """Mean BoN value over the ⌊n/k⌋ consecutive disjoint blocks of size k (the paper's re-use)."""
    select = np.asarray(select, dtype=np.float64)
    vals = select if value is None else np.asarray(value, dtype=np.float64)
    _check(select, vals)
    n_rows, n = select.shape
    out = np.full((n_rows, k_max), np.nan)
    for k in range(1, min(n, k_max) + 1):
        b = n // k
        blk = select[:, : b * k].reshape(n_rows, b, k)
        top = blk.max(axis=2)
        if value is None:
            out[:, k - 1] = top.mean(axis=1)
            continue
        tied = blk == top[:, :, None]
        picked = np.where(tied, vals[:, : b * k].reshape(n_rows, b, k), 0.0).sum(axis=2)
        out[:, k - 1] = (picked / tied.sum(axis=2)).mean(axis=1)
    return out


def bon_exact(
    select: NDArray[np.float64],
    probs: NDArray[np.float64],
    value: NDArray[np.float64] | None,
    k_max: int,
) -> NDArray[np.float64]:
    """Expected BoN value of k i.i.d. draws from a categorical over V outcomes, k = 1..k_max.

    ``select``, ``probs``, ``value`` have shape (rows, V); each row of ``probs`` sums to 1 (it is
    normalised here); zero-probability outcomes are harmless padding. With F the CDF of the select
    score, the result is ``Σ_s [F(s)^k − F(s⁻)^k] · (mean value at level s, weighted by probs)``.
    """
    select = np.asarray(select, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    vals = select if value is None else np.asarray(value, dtype=np.float64)
    _check(select, probs, vals)
    n_rows, n_out = select.shape
    out = np.zeros((n_rows, k_max))
    if n_rows == 0 or n_out == 0 or k_max <= 0:
        return out
    mass = probs.sum(axis=1, keepdims=True)
    probs = probs / np.where(mass > 0.0, mass, 1.0)
    _, (p, v), group = _sort_by_select(select, [probs, vals])
    p_level = _group_sum(p, group)
    with np.errstate(invalid="ignore"):  # 0 · inf on zero-probability padding
        pv_level = _group_sum(np.where(p > 0.0, p * v, 0.0), group)
    first = np.ones(group.shape, dtype=bool)
    first[:, 1:] = group[:, 1:] != group[:, :-1]
    last = np.ones(group.shape, dtype=bool)
    last[:, :-1] = first[:, 1:]
    cdf = np.cumsum(p, axis=1)
    # F at each level and just below it, kept at the level's first item (0 elsewhere).
    level_cdf = np.zeros(int(group[-1, -1]) + 1)
    level_cdf[group[last]] = cdf[last]
    f_at = np.where(first, level_cdf[group], 0.0)
    f_below = np.zeros_like(f_at)
    f_below[:, 1:] = np.where(first[:, 1:], cdf[:, :-1], 0.0)
    mean_v = np.where(
        first & (p_level > 0.0), pv_level / np.where(p_level > 0.0, p_level, 1.0), 0.0
    )
    pow_at = np.ones_like(f_at)
    pow_below = np.ones_like(f_below)
    for k in range(1, k_max + 1):
        pow_at *= f_at
        pow_below *= f_below
        out[:, k - 1] = ((pow_at - pow_below) * mean_v).sum(axis=1)
    return out
