"""The majority-vote U-statistic for large n: the generating-function programme of
:mod:`iapo.estimators._majority` with each polynomial product done in one numpy call.

The sums are those of ``_majority``'s loops over (gold count j, class, vote count x, degree d);
only their order changes (every term is non-negative, so the result agrees to a few ulps). Per
gold count j a class multiplies the running product by its polynomial in one batched, truncated
convolution (a sliding-window product) instead of one numpy call per (x, d); every row and gold
count whose non-gold classes cannot reach j votes (all of them once j > k_max / 2) contributes
``C(g, j) · C(n - g, d)``, summed for all such j at once in a single convolution. The numpy calls
per chunk of rows drop from about S·k_max²/4 to about S·k_max/2 (S: classes that reach j).

One row (a memoised vote profile, the ``iapo bench`` path) takes scalar bookkeeping and numpy's
own convolution; the gold counts at which only the largest class can tie gold (every j above the
second-largest class count) take a closed form from one cumulative (k_max × j) table.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import NDArray

__all__ = ["conv_trunc", "ustat_totals"]

Nodes = Callable[[int], tuple[NDArray[np.float64], NDArray[np.float64]]]


def conv_trunc(q: NDArray[np.float64], coef: NDArray[np.float64], dmax: int) -> NDArray[np.float64]:
    """``out[b, d] = Σ_{x ≤ d} coef[b, x] · q[b, d - x]`` for d ≤ dmax; ``q`` (B, dmax + 1),
    ``coef`` (B, L)."""
    width = coef.shape[1]
    if width == 1:
        return np.asarray(q * coef, dtype=np.float64)
    if q.shape[0] <= 4:  # a few rows (the memoised single profiles): numpy's own convolution
        return np.array([np.convolve(a, b)[: dmax + 1] for a, b in zip(q, coef, strict=True)])
    pad = np.zeros((q.shape[0], dmax + width))
    pad[:, width - 1 :] = q
    step = pad.strides[1]
    # win[b, d, i] = pad[b, d + i] = q[b, d + i - width + 1]
    win = as_strided(pad, (pad.shape[0], dmax + 1, width), (pad.strides[0], step, step))
    return np.asarray(np.einsum("bdi,bi->bd", win, coef[:, ::-1]), dtype=np.float64)


def ustat_totals(
    cls: NDArray[np.int64],
    g: NDArray[np.int64],
    n: int,
    kc: int,
    pas: NDArray[np.float64],
    tie_nodes: Nodes,
) -> NDArray[np.float64]:
    """(kc, rows): the MV credit summed over the k-subsets of each row, k = 1..kc.

    ``cls`` (rows, S): non-gold class counts, descending; ``g`` (rows,): gold counts; ``pas``:
    binomials up to n; ``tie_nodes(tmax)``: nodes and weights of the tie credit (t ≤ tmax)."""
    n_rows = len(g)
    if n_rows == 1:
        return _one_row([int(x) for x in cls[0] if x > 0], int(g[0]), n, kc, pas, tie_nodes)
    total = np.zeros((kc, n_rows))
    # plain[r, j]: C(g, j) where row r's gold count j meets no class that reaches j in a subset
    # of size ≤ kc; those terms are C(g, j)·C(n - g, d), summed for all such j at the end
    plain = np.zeros((n_rows, kc + 1))
    for j in range(1, kc + 1):
        rows = np.flatnonzero(g >= j)
        if rows.size == 0:
            break
        dmax = kc - j
        c = cls[rows]
        has_big = (c[:, 0] >= j) if (j <= dmax and c.shape[1] > 0) else np.zeros(len(rows), bool)
        plain[rows[~has_big], j] = pas[g[rows[~has_big]], j]
        if not has_big.any():
            continue
        rows, c = rows[has_big], c[has_big]
        n_big = int((c >= j).sum(axis=1).max())
        c = c[:, :n_big]
        big = c >= j
        nodes, weights = tie_nodes(min(n_big, dmax // j))
        n_u, m = nodes.size, len(rows)
        q = np.zeros((m * n_u, dmax + 1))
        q[:, 0] = 1.0
        xs = np.arange(j + 1)
        for s in range(n_big):
            coef = pas[np.where(big[:, s], c[:, s], 0)[:, None], xs[None, :]]  # C(c, x), x ≤ j
            coef = np.repeat(coef, n_u, axis=0)  # (m·U, j + 1), row-major in (row, node)
            coef[:, j] *= np.tile(nodes, m)  # exactly j votes: tied with gold
            q = conv_trunc(q, coef, dmax)
        q = np.einsum("rud,u->rd", q.reshape(m, n_u, dmax + 1), weights)
        free = n - g[rows] - np.where(big, c, 0).sum(axis=1)
        binom = pas[free[:, None], np.arange(min(int(free.max()), dmax) + 1)[None, :]]
        q = conv_trunc(q, binom, dmax)
        total[j - 1 :, rows] += (pas[g[rows], j][:, None] * q).T
    # the plain terms: total[k - 1] += Σ_j plain[j] · C(n - g, k - j)
    rest = pas[(n - g)[:, None], np.arange(min(int((n - g).max()), kc) + 1)[None, :]]
    total += conv_trunc(plain, rest, kc)[:, 1:].T
    return total


def _one_row(
    cls: list[int], g: int, n: int, kc: int, pas: NDArray[np.float64], tie_nodes: Nodes
) -> NDArray[np.float64]:
    """:func:`ustat_totals` of one row (a memoised vote profile), with scalar bookkeeping."""
    total = np.zeros(kc)
    plain = np.zeros(kc + 1)
    # gold counts j where the largest class alone can reach j: closed form, see _one_class
    top, second = [*cls, 0, 0][:2]
    alone = range(second + 1, min(top, kc // 2, g) + 1)
    if len(alone):
        _one_class(total, alone, top, g, n, kc, pas)
    for j in range(1, min(g, kc) + 1):
        if j in alone:
            continue
        dmax = kc - j
        big = [c for c in cls if c >= j] if j <= dmax else []
        if not big:
            plain[j] = pas[g, j]
            continue
        nodes, weights = tie_nodes(min(len(big), dmax // j))
        q = np.zeros((nodes.size, dmax + 1))
        q[:, 0] = 1.0
        for c in big:
            coef = np.outer(np.ones(nodes.size), pas[c, : j + 1])
            coef[:, j] *= nodes
            q = conv_trunc(q, coef, dmax)
        free = n - g - sum(big)
        last = weights @ q
        last = np.convolve(last, pas[free, : min(free, dmax) + 1])[: dmax + 1]
        total[j - 1 :] += pas[g, j] * last
    total += np.convolve(plain, pas[n - g, : min(n - g, kc) + 1])[1 : kc + 1]
    return total[:, None]


def _one_class(
    total: NDArray[np.float64],
    gold_counts: range,
    c: int,
    g: int,
    n: int,
    kc: int,
    pas: NDArray[np.float64],
) -> None:
    """Add the terms of gold counts j at which one class (of c answers) alone can tie gold.

    The other answers are free: ``[z^d] (1 + z)^free · (Σ_{x<j} C(c, x) z^x + ½ C(c, j) z^j)``
    (a tie of two: 1/2 under either rule) is a prefix sum over x of C(c, x)·C(free, d - x) plus
    the tie term, so every j costs one slice of one cumulative table."""
    free = n - g - c
    rows, cols = kc - gold_counts[0] + 1, gold_counts[-1]  # d ≤ kc - j, x ≤ j - 1
    lagged = np.zeros(2 * kc + 1)
    lagged[kc : kc + min(free, kc) + 1] = pas[free, : min(free, kc) + 1]
    step = lagged.strides[0]
    # toeplitz[d, x] = C(free, d - x), 0 where x > d (a strided view, no copy)
    toeplitz = as_strided(lagged[kc:], (rows, cols), (step, -step))
    prefix = np.cumsum(toeplitz * pas[c, :cols], axis=1)  # Σ_{x ≤ m} C(c, x)·C(free, d - x)
    for j in gold_counts:
        dmax = kc - j
        q = prefix[: dmax + 1, j - 1].copy()
        q[j:] += 0.5 * pas[c, j] * pas[free, : dmax + 1 - j]
        total[j - 1 :] += pas[g, j] * q
