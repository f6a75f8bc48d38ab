"""A frozen copy of the pool encoding and exact tables as they were at 466008b (before pools became
arrays): the oracle the array code is checked against, bit for bit. Do not edit; it is the old
behaviour, not the current one."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from iapo.estimators import bon_exact
from iapo.pools import Cell, Pool
from iapo.strategies import BestOfN, MajorityVote, Strategy
from iapo.types import Context

TieCredit = str
_CHUNK = 4096
_PAD_CUM = 2.0

_HALF_NODES = (np.array([0.0, 1.0]), np.array([0.5, 0.5]))
_HALF_NODES[0].setflags(write=False)
_HALF_NODES[1].setflags(write=False)


@lru_cache(maxsize=16)
def _gauss01(n_nodes: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Gauss-Legendre nodes and weights on [0, 1] (exact for polynomials of degree < 2·n_nodes)."""
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    nodes = np.asarray((x + 1.0) / 2.0, dtype=np.float64)
    weights = np.asarray(w / 2.0, dtype=np.float64)
    nodes.setflags(write=False)
    weights.setflags(write=False)
    return nodes, weights


def _tie_nodes(tie_credit: TieCredit, tmax: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Nodes and weights on [0, 1] whose sum ``Σ w·u^t`` is the credit of a gold answer tied
    with t others, for every 0 ≤ t ≤ tmax: 1/(1 + t) (Gauss-Legendre, exact), or
    ``[t = 0] + 0.5·[t ≥ 1]`` (nodes 0 and 1, weight 0.5 each)."""
    if tie_credit == "half":
        return _HALF_NODES
    return _gauss01(tmax // 2 + 1)


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
    probs = np.asarray(probs, dtype=np.float64)
    gold_index = np.asarray(gold_index, dtype=np.int64)
    n_rows, n_cls = probs.shape
    if np.any(gold_index >= n_cls) or np.any(gold_index < -1):
        raise ValueError(f"gold_index must lie in -1..{n_cls - 1}")
    out = np.zeros((n_rows, k_max))
    has = gold_index >= 0
    pg = np.zeros(n_rows)
    pg[has] = probs[has, gold_index[has]]
    rows = np.flatnonzero(pg > 0.0)
    for lo in range(0, rows.size, _CHUNK):
        sel = rows[lo : lo + _CHUNK]
        out[sel] = _mv_exact_rows(probs[sel], gold_index[sel], k_max, tie_credit)
    return out


def _mv_exact_rows(
    probs: NDArray[np.float64], gold_index: NDArray[np.int64], k_max: int, tie_credit: TieCredit
) -> NDArray[np.float64]:
    """Rows whose gold class has positive probability."""
    n_rows = probs.shape[0]
    every = np.arange(n_rows)
    pg = probs[every, gold_index]
    abstain = np.clip(1.0 - probs.sum(axis=1), 0.0, None)
    others = np.clip(probs, 0.0, None)
    others[every, gold_index] = 0.0
    others = -np.sort(-others, axis=1)
    others = others[:, : int((others > 0.0).sum(axis=1).max())]
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
        q = _tie_poly(lower, pw_cls[j], j, dmax, tie_credit)
        total[j - 1 :] += pw_gold[j] * _trunc_conv(pw_abstain[: dmax + 1], q)
    return np.asarray((total / scale[1:, None]).T, dtype=np.float64)


# -- strategies: exact_quality / exact_utility, per cell ------------------------------------


def mv_exact_quality(
    strategy: MajorityVote, cells: Sequence[Cell], contexts: Sequence[Context], k_max: int
) -> NDArray[np.float64]:
    classes: list[dict[str, float]] = []
    for cell in cells:
        probs: dict[str, float] = {}
        for o, p in zip(cell.outcomes, cell.probs, strict=True):
            if o.answer is not None:
                probs[o.answer] = probs.get(o.answer, 0.0) + float(p)
        classes.append(probs)
    m = max([len(c) for c in classes] + [1])
    probs_arr = np.zeros((len(cells), m))
    gold_idx = np.full(len(cells), -1, dtype=np.int64)
    for r, (cell, cls) in enumerate(zip(cells, classes, strict=True)):
        for j, (answer, p) in enumerate(cls.items()):
            probs_arr[r, j] = p
            if answer == cell.gold:
                gold_idx[r] = j
    credit = mv_exact(probs_arr, gold_idx, k_max, strategy.tie_credit)
    weights = np.array([float(c.weights.get("accuracy", 1.0)) for c in contexts])
    return credit[:, None, :] * weights[None, :, None]


def bon_exact_quality(
    strategy: BestOfN, cells: Sequence[Cell], contexts: Sequence[Context], k_max: int
) -> NDArray[np.float64]:
    v = max(len(c.outcomes) for c in cells)
    wm = np.array([c.weight_vector(strategy.objectives) for c in contexts]).T
    select = np.zeros((len(cells), len(contexts), v))
    probs = np.zeros((len(cells), len(contexts), v))
    for r, cell in enumerate(cells):
        scores = np.array([[o.scores[k] for k in strategy.objectives] for o in cell.outcomes])
        select[r, :, : len(cell.outcomes)] = (scores @ wm).T
        probs[r, :, : len(cell.outcomes)] = cell.probs[None, :]
    est = bon_exact(select.reshape(-1, v), probs.reshape(-1, v), None, k_max)
    return est.reshape(len(cells), len(contexts), k_max)


def exact_utility(
    strategy: Strategy, cells: Sequence[Cell], contexts: Sequence[Context], k_max: int
) -> NDArray[np.float64]:
    if isinstance(strategy, MajorityVote):
        q = mv_exact_quality(strategy, cells, contexts, k_max)
    else:
        assert isinstance(strategy, BestOfN)
        q = bon_exact_quality(strategy, cells, contexts, k_max)
    wc = np.array([c.cost_weight for c in contexts])
    mean_cost = np.array([c.mean_cost() for c in cells])
    k = np.arange(1, k_max + 1)
    return q - wc[None, :, None] * mean_cost[:, None, None] * k[None, None, :]


def exact_cell_utilities(
    pool: Pool,
    strategy: Strategy,
    contexts: Sequence[Context],
    n_max: int,
    *,
    prompts: Sequence[str] | None = None,
    queries: Sequence[str] | None = None,
) -> NDArray[np.float64]:
    ps = tuple(prompts) if prompts is not None else pool.prompts
    qs = tuple(queries) if queries is not None else pool.queries
    out = np.zeros((len(ps), len(qs), len(contexts), n_max))
    for pi, p in enumerate(ps):
        out[pi] = exact_utility(strategy, [pool.cell(p, q) for q in qs], contexts, n_max)
    return out


# -- bench: encode_pool's arrays -------------------------------------------------------------


def encode_pool(
    pool: Pool,
    strategy: Strategy,
    contexts: Sequence[Context],
    n_max: int,
    *,
    prompts: Sequence[str] | None = None,
) -> dict[str, NDArray[Any]]:
    """cum, cost, codes, exact of the old ``encode_pool``."""
    ps = tuple(prompts) if prompts is not None else pool.prompts
    qs = pool.queries
    ctx = tuple(contexts)
    cells: list[tuple[int, int, NDArray[Any], NDArray[np.float64], NDArray[np.float64]]] = []
    for pi, p in enumerate(ps):
        for qi, q in enumerate(qs):
            cell = pool.cell(p, q)
            rows = strategy.encode(cell.outcomes, cell.gold, ctx)
            merged: dict[tuple[bytes, float], int] = {}
            keep: list[int] = []
            weight: list[float] = []
            for j, (o, w) in enumerate(zip(cell.outcomes, cell.weights, strict=True)):
                at = merged.setdefault((rows[j].tobytes(), float(o.cost)), len(keep))
                if at == len(keep):
                    keep.append(j)
                    weight.append(0.0)
                weight[at] += float(w)
            w_arr = np.array(weight, dtype=np.float64)
            idx = np.array(keep, dtype=np.int64)[w_arr > 0]
            costs = np.array([float(cell.outcomes[j].cost) for j in idx], dtype=np.float64)
            cells.append((pi, qi, rows[idx], costs, w_arr[w_arr > 0]))
    v_max = max([len(c[3]) for c in cells] + [1])
    shape = (len(ps), len(qs), v_max)
    features = cells[0][2].shape[1] if cells else 1
    cum = np.full(shape, _PAD_CUM)
    cost = np.zeros(shape)
    codes = np.zeros((*shape, features), dtype=cells[0][2].dtype if cells else np.float64)
    for pi, qi, rows, costs, w in cells:
        v = len(w)
        c = np.cumsum(w) / w.sum()
        c[-1] = 1.0
        cum[pi, qi, :v] = c
        cost[pi, qi, :v] = costs
        codes[pi, qi, :v] = rows
    exact = exact_cell_utilities(pool, strategy, ctx, n_max, prompts=ps, queries=qs)
    return {"cum": cum, "cost": cost, "codes": codes, "exact": exact}
