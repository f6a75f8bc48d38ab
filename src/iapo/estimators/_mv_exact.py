"""Majority-vote credit under i.i.d. draws from a categorical distribution: the ground truth of
replayed pools (DESIGN §1-2; the generating-function programme of :mod:`iapo.estimators._majority`,
with exponential weights ``p^x / x!``).

:func:`mv_exact` computes rows in chunks; :func:`mv_exact_many` gives what :func:`mv_exact` gives
for each of several blocks of rows, bit for bit, computing each distinct profile once (a pool's
exact table: one block per prompt). The programme skips the terms that are structurally zero
(polynomial coefficients beyond a product's degree: every weight is finite and ≥ 0, so those
terms add +0.0 and change no bit) — the same numbers as before, with less arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from iapo.estimators._majority import _CHUNK, TieCredit, _check, _tie_nodes, check_tie_credit

__all__ = ["mv_exact", "mv_exact_many"]

#: Distinct profiles per pass of :func:`mv_exact_many` (rows are independent given their class
#: count: any size gives the same bits; this bounds the working memory).
_CORE_CHUNK = 4096


def mv_exact(
    probs: NDArray[np.float64],
    gold_index: NDArray[np.int64],
    k_max: int,
    tie_credit: TieCredit = "fractional",
) -> NDArray[np.float64]:
    """Expected MV credit of k i.i.d. draws from a categorical answer distribution, k = 1..k_max.

    ``probs`` (rows, M): probabilities of M answer classes; the remaining mass
    ``1 - probs.sum()`` (clipped at 0) is abstention. ``gold_index`` (rows,): column of the gold
    class, or -1 if the gold answer is none of them (credit 0). Columns of probability 0 are
    harmless padding. ``tie_credit`` as in :func:`mv_ustat`. Returns (rows, k_max), no NaN.
    """
    tie_credit = check_tie_credit(tie_credit)
    probs, gold_index, rows = _inputs(probs, gold_index, k_max)
    out = np.zeros((probs.shape[0], k_max))
    for lo in range(0, rows.size, _CHUNK):
        sel = rows[lo : lo + _CHUNK]
        out[sel] = _mv_exact_rows(probs[sel], gold_index[sel], k_max, tie_credit)
    return out


def mv_exact_many(
    blocks: Sequence[tuple[NDArray[np.float64], NDArray[np.int64]]],
    k_max: int,
    tie_credit: TieCredit = "fractional",
) -> list[NDArray[np.float64]]:
    """``[mv_exact(probs, gold_index, k_max, tie_credit) for probs, gold_index in blocks]``, bit
    for bit, with every distinct answer profile computed once.

    A row's credit depends only on its profile (gold probability, abstention mass, the other
    classes' probabilities in descending order), on the number of classes its chunk of
    :func:`mv_exact` carries and on whether that chunk is a single row; rows that agree in all
    of these, in any block, share one computation (a pool's exact table repeats profiles:
    unanimous cells, equal vote counts)."""
    tie_credit = check_tie_credit(tie_credit)
    outs: list[NDArray[np.float64]] = []
    # (class count, single row?) -> [(block, rows, profiles)]: the two things besides a row's
    # profile that its bits depend on (numpy's einsum reduces a one-row chunk differently)
    parts: dict[tuple[int, bool], list[tuple[int, NDArray[np.int64], NDArray[np.float64]]]] = {}
    for b, (probs_in, gold_in) in enumerate(blocks):
        probs, gold_index, rows = _inputs(probs_in, gold_in, k_max)
        outs.append(np.zeros((probs.shape[0], k_max)))
        for lo in range(0, rows.size, _CHUNK):
            sel = rows[lo : lo + _CHUNK]
            prof = _mv_exact_profile(probs[sel], gold_index[sel])
            parts.setdefault((prof.shape[1], sel.size == 1), []).append((b, sel, prof))
    for (_, single), group in parts.items():
        stacked = np.ascontiguousarray(np.concatenate([prof for _, _, prof in group]))
        bits = stacked.view(np.dtype((np.void, stacked.shape[1] * 8))).ravel()
        _, first, inverse = np.unique(bits, return_index=True, return_inverse=True)  # equal bits
        distinct = stacked[first]
        vals = np.empty((len(first), k_max))
        step = 1 if single else _CORE_CHUNK
        for lo in range(0, len(first), step):
            part = distinct[lo : lo + step]
            if not single and len(part) == 1:
                part = np.concatenate([part, part])  # a lone row of a larger chunk: two rows
            vals[lo : lo + step] = _mv_exact_core(
                part[:, 0], part[:, 1], part[:, 2:], k_max, tie_credit
            )[: min(step, len(first) - lo)]
        res = vals[np.asarray(inverse).ravel()]
        at = 0
        for b, sel, _ in group:
            outs[b][sel] = res[at : at + len(sel)]
            at += len(sel)
    return outs


def _inputs(
    probs: NDArray[np.float64], gold_index: NDArray[np.int64], k_max: int
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """The arrays of one block, checked (shapes, ``k_max``, gold columns in -1..M-1), and the
    rows whose gold class has positive probability (the others' credit is 0)."""
    probs = np.asarray(probs, dtype=np.float64)
    gold_index = np.asarray(gold_index, dtype=np.int64)
    _check(probs, gold_index, k_max)
    n_cls = probs.shape[1]
    if np.any(gold_index >= n_cls) or np.any(gold_index < -1):
        raise ValueError(f"gold_index must lie in -1..{n_cls - 1}")
    has = gold_index >= 0
    pg = np.zeros(probs.shape[0])
    pg[has] = probs[has, gold_index[has]]
    return probs, gold_index, np.flatnonzero(pg > 0.0)


def _mv_exact_profile(
    probs: NDArray[np.float64], gold_index: NDArray[np.int64]
) -> NDArray[np.float64]:
    """(rows, 2 + S): gold probability, abstention mass, the other classes' probabilities in
    descending order, S = the most other classes of positive probability in any row."""
    n_rows = probs.shape[0]
    every = np.arange(n_rows)
    pg = probs[every, gold_index]
    abstain = np.clip(1.0 - probs.sum(axis=1), 0.0, None)
    others = np.clip(probs, 0.0, None)
    others[every, gold_index] = 0.0
    others = -np.sort(-others, axis=1)
    others = others[:, : int((others > 0.0).sum(axis=1).max())]
    return np.concatenate([pg[:, None], abstain[:, None], others], axis=1)


def _mv_exact_rows(
    probs: NDArray[np.float64], gold_index: NDArray[np.int64], k_max: int, tie_credit: TieCredit
) -> NDArray[np.float64]:
    """Rows whose gold class has positive probability."""
    prof = _mv_exact_profile(probs, gold_index)
    return _mv_exact_core(prof[:, 0], prof[:, 1], prof[:, 2:], k_max, tie_credit)


def _mv_exact_core(
    pg: NDArray[np.float64],
    abstain: NDArray[np.float64],
    others: NDArray[np.float64],
    k_max: int,
    tie_credit: TieCredit,
) -> NDArray[np.float64]:
    """Expected credit (rows, k_max) of profiles: gold probability ``pg``, abstention mass, the
    other classes' probabilities ``others`` (rows, S), descending."""
    n_rows = pg.shape[0]
    n_others = others.shape[1]
    free_all = abstain + others.sum(axis=1)

    # Exponential generating functions in λz, λ = k_max / e, keep every weight λ^x p^x / x! and
    # every factor k! / λ^k in floating-point range: credit(k) = k! / λ^k · [z^k] (product).
    lam = max(k_max / math.e, 1.0)
    degree = np.arange(k_max + 1)
    scale = np.exp(degree * math.log(lam) - np.array([math.lgamma(x + 1.0) for x in degree]))
    base = np.concatenate([others.T, abstain[None], free_all[None], pg[None]])  # (S + 3, R)
    pw = np.empty((k_max + 1, *base.shape))
    pw[0] = 1.0
    for x in range(1, k_max + 1):
        pw[x] = pw[x - 1] * base
    pw *= scale[:, None, None]
    pw_cls, pw_abstain = pw[:, :n_others], pw[:, n_others]
    pw_free, pw_gold = pw[:, n_others + 1], pw[:, n_others + 2]

    total = np.zeros((k_max, n_rows))
    for j in range(1, k_max + 1):
        dmax = k_max - j
        if j > dmax or n_others == 0:
            total[j - 1 :] += pw_gold[j] * pw_free[: dmax + 1]
            continue
        lower = pw_cls[1:j].transpose(1, 0, 2)  # (S, j - 1, R)
        q, top = _tie_poly_exact(lower, pw_cls[j], j, dmax, tie_credit)
        total[j - 1 :] += pw_gold[j] * _trunc_conv_exact(pw_abstain[: dmax + 1], q, top)
    return np.asarray((total / scale[1:, None]).T, dtype=np.float64)


def _tie_poly_exact(
    lower: NDArray[np.float64],
    tie: NDArray[np.float64],
    j: int,
    dmax: int,
    tie_credit: TieCredit,
) -> tuple[NDArray[np.float64], int]:
    """:func:`iapo.estimators._majority._tie_poly` without its zero terms, and the degree of the
    result (its coefficients beyond are 0).

    After s classes the product has degree ≤ s·j, so ``new[x:] += w · q[: dmax + 1 - x]`` only
    changes ``new[x : x + deg + 1]``: beyond, it adds ``w · 0 = +0.0`` to numbers ≥ +0.0."""
    n_cls, _, n_rows = lower.shape
    if j == 1:
        elem = np.zeros((dmax + 1, n_rows))
        elem[0] = 1.0
        for s in range(n_cls):
            top = min(s, dmax - 1)  # elem has degree ≤ s
            if top >= 0:
                elem[1 : top + 2] += tie[s] * elem[: top + 1]
        deg = min(n_cls, dmax)
        if tie_credit == "half":
            elem[1:] *= 0.5
            return elem, deg
        return elem / np.arange(1.0, dmax + 2.0)[:, None], deg
    tmax = min(n_cls, dmax // j)
    nodes, weights = _tie_nodes(tie_credit, tmax)
    q = np.zeros((dmax + 1, nodes.size, n_rows))
    q[0] = 1.0
    tie_u = nodes[None, :, None] * tie[:, None, :]  # (S, U, R)
    xmax = min(j - 1, dmax)
    deg = 0
    for s in range(n_cls):
        new = q.copy()
        for x in range(1, xmax + 1):
            top = min(deg, dmax - x)
            new[x : x + top + 1] += lower[s, x - 1] * q[: top + 1]
        if tmax >= 1:
            top = min(deg, dmax - j)
            if top >= 0:
                new[j : j + top + 1] += tie_u[s] * q[: top + 1]
        deg = min(deg + j, dmax)
        q = new
    return np.asarray(np.einsum("dur,u->dr", q, weights), dtype=np.float64), deg


def _trunc_conv_exact(
    a: NDArray[np.float64], b: NDArray[np.float64], deg: int
) -> NDArray[np.float64]:
    """``_trunc_conv(a, b)`` for ``b`` of degree ≤ ``deg`` (its terms beyond add +0.0)."""
    size = a.shape[0]
    out = np.zeros_like(a)
    for x in range(min(size, deg + 1)):
        out[x:] += b[x] * a[: size - x]
    return out
