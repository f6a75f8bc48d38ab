"""Majority-voting (MV) estimators (DESIGN §1-2).

Credit of one aggregated vote over a multiset of answers: let n* be the top vote count among the
non-abstaining answers and t the number of distinct answers that reach it; the credit is ``1/t`` if
the gold answer is one of them, else 0. Abstentions (label ``-1``) never win; if every sample
abstains the credit is 0, and so it is when the gold answer never appears.

The U-statistic and the categorical expectation share one generating-function programme. Fix the
number j ≥ 1 of gold votes in the k samples. Every other answer class s contributes the polynomial
``Σ_{x<j} w_s(x) z^x + w_s(j) z^j y`` (``y`` marks a class tied with gold), abstentions contribute
``Σ_x w_a(x) z^x``; the credit mass at N = k is ``Σ_j w_g(j) Σ_t [z^{k-j} y^t] / (1 + t)``. The
weights are binomials ``C(c, x)`` for subsets of a pool of counts and ``p^x / x!`` (exponential
generating functions, times ``k!`` at the end) for i.i.d. draws. The ``1/(1+t)`` weighting is
``∫_0^1 u^t du``, integrated exactly by Gauss-Legendre quadrature in ``y = u``. Every term is
non-negative, so the result carries no cancellation error.

``tie_credit`` chooses the rule for ties (:data:`TIE_CREDITS`): ``"fractional"`` (the default,
above) credits ``1/t`` for t answers tied at the top with gold among them; ``"half"`` credits
0.5 for any such tie (t ≥ 2), 1 when gold wins alone, 0 otherwise (the rule of the paper's
released research code, as reported in issue #12: "0.5 to any tie"). In the generating function
its weight ``[t = 0] + 0.5·[t ≥ 1]`` is ``0.5·(y^t at y = 0) + 0.5·(y^t at y = 1)``: the same
programme with two quadrature nodes, 0 and 1, of weight 0.5 each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from iapo.estimators._mv_fast import ustat_totals

__all__ = ["TIE_CREDITS", "TieCredit", "check_tie_credit", "mv_blocks", "mv_ustat", "vote_credit"]

#: How a vote whose top count is shared by t ≥ 2 answers, gold among them, is credited:
#: ``"fractional"`` 1/t, ``"half"`` 0.5 (the paper's released code).
TieCredit = Literal["fractional", "half"]
TIE_CREDITS: tuple[TieCredit, ...] = ("fractional", "half")

ABSTAIN = -1
#: ``half``'s "quadrature": nodes 0 and 1 of weight 0.5 (read-only).
_HALF_NODES = (np.array([0.0, 1.0]), np.array([0.5, 0.5]))
_HALF_NODES[0].setflags(write=False)
_HALF_NODES[1].setflags(write=False)
_CHUNK = 4096  # rows per pass: bounds the working memory
#: From this many samples per row on, :func:`mv_ustat` takes the vectorised programme of
#: ``_mv_fast`` (equal to a few ulps); below, the loops whose bits stored results were made with.
_FAST_FROM = 65
_MAX_N = 1000


def _pascal(n: int) -> NDArray[np.float64]:
    """``tab[a, b] = C(a, b)`` for ``0 ≤ a, b ≤ n`` (0 where b > a), each correctly rounded: a
    corner of a table for the next power of two (runs pull many sizes n; one table serves)."""
    size = 64
    while size < n:
        size *= 2
    return _pascal_table(size)[: n + 1, : n + 1]


@lru_cache(maxsize=8)
def _pascal_table(n: int) -> NDArray[np.float64]:
    tab = np.zeros((n + 1, n + 1))
    row = [1]
    for a in range(n + 1):
        tab[a, : a + 1] = [float(v) for v in row]
        row = [1, *(row[i] + row[i + 1] for i in range(a)), 1]
    tab.setflags(write=False)
    return tab


@lru_cache(maxsize=16)
def _gauss01(n_nodes: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Gauss-Legendre nodes and weights on [0, 1] (exact for polynomials of degree < 2·n_nodes)."""
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    nodes = np.asarray((x + 1.0) / 2.0, dtype=np.float64)
    weights = np.asarray(w / 2.0, dtype=np.float64)
    nodes.setflags(write=False)
    weights.setflags(write=False)
    return nodes, weights


def check_tie_credit(tie_credit: str) -> TieCredit:
    """``tie_credit`` if it is one of :data:`TIE_CREDITS`, else a ValueError naming them."""
    for name in TIE_CREDITS:
        if tie_credit == name:
            return name
    raise ValueError(f"tie_credit must be fractional or half (got {tie_credit!r})")


def vote_credit(
    answers: Sequence[Hashable | None],
    gold: Hashable | None,
    tie_credit: TieCredit = "fractional",
) -> float:
    """The majority vote's credit (DESIGN §1): 1 if ``gold`` alone has the most votes; if it is
    among t ≥ 2 answers tied for the most, 1/t (``tie_credit="fractional"``) or 0.5
    (``"half"``); else 0. None abstains. What every estimator here estimates."""
    rule = check_tie_credit(tie_credit)
    counts = Counter(a for a in answers if a is not None)
    if not counts or gold is None:
        return 0.0
    top = max(counts.values())
    tied = [a for a, c in counts.items() if c == top]
    if gold not in tied:
        return 0.0
    if len(tied) > 1 and rule == "half":
        return 0.5
    return 1.0 / len(tied)


def _tie_nodes(tie_credit: TieCredit, tmax: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Nodes and weights on [0, 1] whose sum ``Σ w·u^t`` is the credit of a gold answer tied
    with t others, for every 0 ≤ t ≤ tmax: 1/(1 + t) (Gauss-Legendre, exact), or
    ``[t = 0] + 0.5·[t ≥ 1]`` (nodes 0 and 1, weight 0.5 each)."""
    if tie_credit == "half":
        return _HALF_NODES
    return _gauss01(tmax // 2 + 1)


def _run_counts(sorted_labels: NDArray[np.int64]) -> NDArray[np.int64]:
    """Run lengths of a row-sorted array, written at each run's first position (0 elsewhere)."""
    rows, n = sorted_labels.shape
    start = np.ones((rows, n), dtype=bool)
    start[:, 1:] = sorted_labels[:, 1:] != sorted_labels[:, :-1]
    first = np.flatnonzero(start)
    counts = np.zeros(rows * n, dtype=np.int64)
    counts[first] = np.diff(np.append(first, rows * n))
    return counts.reshape(rows, n)


def _gold_counts(labels: NDArray[np.int64], gold: NDArray[np.int64]) -> NDArray[np.int64]:
    g = np.asarray((labels == gold[:, None]).sum(axis=1), dtype=np.int64)
    g[gold == ABSTAIN] = 0
    return g


def _credit(
    labels: NDArray[np.int64], gold: NDArray[np.int64], tie_credit: TieCredit
) -> NDArray[np.float64]:
    """Credit of one vote per row of ``labels`` (shape (rows, k), k ≥ 1)."""
    srt = np.sort(labels, axis=1)
    counts = _run_counts(srt)
    counts[srt == ABSTAIN] = 0
    top = counts.max(axis=1)
    ties = (counts == top[:, None]).sum(axis=1)
    g = _gold_counts(labels, gold)
    win = (g > 0) & (g == top)
    if tie_credit == "half":
        return np.where(win, np.where(ties > 1, 0.5, 1.0), 0.0)
    return np.where(win, 1.0 / np.maximum(ties, 1), 0.0)


def _tie_poly(
    lower: NDArray[np.float64],
    tie: NDArray[np.float64],
    j: int,
    dmax: int,
    tie_credit: TieCredit,
) -> NDArray[np.float64]:
    """Tie-weighted product of the non-gold class polynomials at gold count ``j``.

    ``lower[s, x - 1]`` (shape (S, j - 1, R)) is the weight of x votes (1 ≤ x < j) for class s,
    the weight of 0 votes being 1; ``tie[s]`` (shape (S, R)) is the weight of exactly j votes.
    Returns ``q`` of shape (dmax + 1, R) with ``q[d] = Σ_t [z^d y^t] Π_s P_s · f(t)``, the tie
    credit ``f(t)`` being 1/(1 + t) (``fractional``) or ``[t = 0] + 0.5·[t ≥ 1]`` (``half``).
    """
    n_cls, _, n_rows = lower.shape
    if j == 1:
        # Every class votes 0 or 1 (= tied) times: the product is Σ_t e_t(tie) (z y)^t with e_t the
        # elementary symmetric polynomials, so the tie count equals the degree.
        elem = np.zeros((dmax + 1, n_rows))
        elem[0] = 1.0
        for s in range(n_cls):
            elem[1:] += tie[s] * elem[:-1]
        if tie_credit == "half":
            elem[1:] *= 0.5
            return elem
        return elem / np.arange(1.0, dmax + 2.0)[:, None]
    tmax = min(n_cls, dmax // j)
    nodes, weights = _tie_nodes(tie_credit, tmax)
    q = np.zeros((dmax + 1, nodes.size, n_rows))
    q[0] = 1.0
    tie_u = nodes[None, :, None] * tie[:, None, :]  # (S, U, R)
    xmax = min(j - 1, dmax)
    for s in range(n_cls):
        new = q.copy()
        for x in range(1, xmax + 1):
            new[x:] += lower[s, x - 1] * q[: dmax + 1 - x]
        if tmax >= 1:
            new[j:] += tie_u[s] * q[: dmax + 1 - j]
        q = new
    return np.asarray(np.einsum("dur,u->dr", q, weights), dtype=np.float64)


def _trunc_conv(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """``c[d] = Σ_{x ≤ d} a[d - x] b[x]`` for d < len(a); arrays of shape (D + 1, R)."""
    size = a.shape[0]
    out = np.zeros_like(a)
    for x in range(size):
        out[x:] += b[x] * a[: size - x]
    return out


def _check(rows_arr: NDArray[np.generic], per_row: NDArray[np.generic], k_max: int) -> None:
    if rows_arr.ndim != 2:
        raise ValueError(f"expected a 2-D array (rows, samples), got shape {rows_arr.shape}")
    if per_row.shape != (rows_arr.shape[0],):
        raise ValueError(f"expected {rows_arr.shape[0]} gold entries, got shape {per_row.shape}")
    if k_max < 0:
        raise ValueError(f"k_max must be >= 0, got {k_max}")


def mv_ustat(
    labels: NDArray[np.int64],
    gold: NDArray[np.int64],
    k_max: int,
    tie_credit: TieCredit = "fractional",
) -> NDArray[np.float64]:
    """Mean MV credit over all C(n, k) k-subsets of each row's n answers, for k = 1..k_max.

    ``labels`` (rows, n) holds arbitrary integer answers, ``-1`` = abstain; ``gold`` (rows,) the
    gold answer of each row (possibly absent from the row). Returns (rows, k_max), NaN for k > n.
    Exact up to rounding; polynomial time (n ≤ 1000, so that binomials fit in float64).
    ``tie_credit``: the credit of a tie at the top that includes gold (:data:`TIE_CREDITS`).
    """
    tie_credit = check_tie_credit(tie_credit)
    labels = np.asarray(labels, dtype=np.int64)
    gold = np.asarray(gold, dtype=np.int64)
    _check(labels, gold, k_max)
    n_rows, n = labels.shape
    if n > _MAX_N:
        raise ValueError(f"mv_ustat supports n <= {_MAX_N} samples per row, got {n}")
    out = np.full((n_rows, k_max), np.nan)
    kc = min(n, k_max)
    if kc > 0:
        for lo in range(0, n_rows, _CHUNK):
            hi = min(lo + _CHUNK, n_rows)
            out[lo:hi, :kc] = _mv_ustat_rows(labels[lo:hi], gold[lo:hi], kc, tie_credit)
    return out


def _mv_ustat_rows(
    labels: NDArray[np.int64], gold: NDArray[np.int64], kc: int, tie_credit: TieCredit
) -> NDArray[np.float64]:
    n_rows, n = labels.shape
    srt = np.sort(labels, axis=1)
    counts = _run_counts(srt)
    counts[(srt == ABSTAIN) | (srt == gold[:, None])] = 0
    cls = -np.sort(-counts, axis=1)  # non-gold class counts, descending, zero-padded
    cls = cls[:, : int((cls > 0).sum(axis=1).max())]
    g = _gold_counts(labels, gold)
    pas = _pascal(n)
    if n >= _FAST_FROM:  # the same sums in fewer numpy calls (to a few ulps): see _mv_fast
        total = ustat_totals(cls, g, n, kc, pas, lambda tmax: _tie_nodes(tie_credit, tmax))
        return np.asarray((total / pas[n, 1 : kc + 1, None]).T, dtype=np.float64)

    total = np.zeros((kc, n_rows))  # total[k - 1, r]: credit summed over the k-subsets
    for j in range(1, kc + 1):
        rows = np.flatnonzero(g >= j)
        if rows.size == 0:
            break
        dmax = kc - j
        gj = pas[g[rows], j]
        c = cls[rows]
        # A class with fewer than j answers (any class, when j > dmax) cannot reach j votes in a
        # subset: it joins the abstentions in one free binomial factor (1 + z)^free.
        n_big = int((c >= j).sum(axis=1).max()) if (j <= dmax and c.shape[1] > 0) else 0
        if n_big == 0:
            free = n - g[rows]
            total[j - 1 :, rows] += gj * pas[free, : dmax + 1].T
            continue
        c = c[:, :n_big].T  # (S, R)
        big = c >= j
        below = pas[c[:, None, :], np.arange(1, j)[None, :, None]]  # C(c, x), 1 <= x < j
        lower = np.where(big[:, None, :], below, 0.0)
        tie = np.where(big, pas[c, j], 0.0)
        q = _tie_poly(lower, tie, j, dmax, tie_credit)
        free = n - g[rows] - np.where(big, c, 0).sum(axis=0)
        total[j - 1 :, rows] += gj * _trunc_conv(pas[free, : dmax + 1].T, q)
    return np.asarray((total / pas[n, 1 : kc + 1, None]).T, dtype=np.float64)


def mv_blocks(
    labels: NDArray[np.int64],
    gold: NDArray[np.int64],
    k_max: int,
    tie_credit: TieCredit = "fractional",
) -> NDArray[np.float64]:
    """Mean MV credit over the ⌊n/k⌋ consecutive disjoint blocks of size k (the paper's re-use).

    Same arguments and shape conventions as :func:`mv_ustat`.
    """
    tie_credit = check_tie_credit(tie_credit)
    labels = np.asarray(labels, dtype=np.int64)
    gold = np.asarray(gold, dtype=np.int64)
    _check(labels, gold, k_max)
    n_rows, n = labels.shape
    out = np.full((n_rows, k_max), np.nan)
    if n_rows == 0:
        return out
    for k in range(1, min(n, k_max) + 1):
        b = n // k
        credit = _credit(labels[:, : b * k].reshape(n_rows * b, k), np.repeat(gold, b), tie_credit)
        out[:, k - 1] = credit.reshape(n_rows, b).mean(axis=1)
    return out
