"""A fast, vectorised replay simulator for benchmarks.

A pool is encoded once into arrays: per (prompt, query) cell, the cumulative probabilities of its
distinct outcomes, each outcome's cost, and either its answer code relative to gold (majority
vote: gold = 0, abstain = -1, wrong answers 1, 2, …) or its context-weighted selection score
(Best-of-N). A pull of (p, q, n) draws n outcome indices with numpy; the utility estimates for
every N = k ≤ n come from the estimator kernels directly, pulls grouped by n, and reach the
algorithm through :meth:`~iapo.algorithms.Algorithm.tell_estimates`. The numbers are the ones
:meth:`~iapo.strategies.Strategy.estimate` computes from equivalent :class:`~iapo.types.PullResult`
objects (``tests/test_bench.py`` checks it); only the per-sample Python objects are skipped.

Majority-vote U-statistics depend only on a pull's vote profile (gold count, abstentions, the
other answers' counts), so they are computed once per distinct profile and cached per process:
the one-pull-per-step baselines (UCB, ε-greedy) then cost a dictionary lookup per pull.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from iapo.estimators import bon_blocks, bon_ustat, mv_blocks, mv_ustat, sum_blocks, sum_ustat
from iapo.estimators._bon import _max_weights
from iapo.pools import Pool
from iapo.strategies import BestOfN, MajorityVote, Method, Strategy
from iapo.types import Context, PullRequest

__all__ = ["EncodedPool", "encode_pool"]

_PAD_CUM = 2.0  # cumulative probability of padding outcomes: never drawn (u < 1)


@dataclass
class EncodedPool:
    """A pool as arrays, for one strategy and context set. Index order: (prompt, query, outcome).

    ``exact`` is the ground truth per cell, (P, Q, C, n_max): the expected utility of
    (prompt, N = k) on that query under i.i.d. draws from the cell (costs already scaled).
    """

    prompts: tuple[str, ...]
    queries: tuple[str, ...]
    contexts: tuple[Context, ...]
    strategy: Strategy
    n_max: int
    cum: NDArray[np.float64]  # (P, Q, V) cumulative outcome probabilities, padding = 2
    cost: NDArray[np.float64]  # (P, Q, V) per-sample cost (scaled)
    codes: NDArray[np.int64] | None  # MV: (P, Q, V) answer code, gold = 0, abstain = -1
    select: NDArray[np.float64] | None  # BoN: (P, Q, V, C) context-weighted score
    exact: NDArray[np.float64]  # (P, Q, C, n_max)
    accuracy_weight: NDArray[np.float64]  # (C,) MV accuracy weights
    cost_weight: NDArray[np.float64]  # (C,)
    n_labels: int = 0
    _k: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0), repr=False)
    prompt_index: dict[str, int] = field(default_factory=dict)
    query_index: dict[str, int] = field(default_factory=dict)
    _mv_cache: dict[bytes, NDArray[np.float64]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.prompt_index = {p: i for i, p in enumerate(self.prompts)}
        self.query_index = {q: i for i, q in enumerate(self.queries)}
        # answer codes besides abstention (gold + wrong answers), at least 1
        self.n_labels = max(int(self.codes.max()) + 1, 1) if self.codes is not None else 0
        self._k = np.arange(1, self.n_max + 1, dtype=np.float64)

    def __getstate__(self) -> dict[str, object]:  # the cache stays in its process
        state = dict(self.__dict__)
        state["_mv_cache"] = {}
        return state

    @property
    def is_mv(self) -> bool:
        return self.codes is not None

    # -- ground truth -------------------------------------------------------------------------
    def q_table(self, queries: Sequence[int] | NDArray[np.int64]) -> NDArray[np.float64]:
        """Exact Q (C, P, n_max) on the queries with these indices (mean over queries)."""
        idx = np.asarray(queries, dtype=np.int64)
        return np.asarray(self.exact[:, idx].mean(axis=1).transpose(1, 0, 2), dtype=np.float64)

    # -- sampling -----------------------------------------------------------------------------
    def draw(
        self, prompt: NDArray[np.int64], query: NDArray[np.int64], n: int, rng: np.random.Generator
    ) -> NDArray[np.int64]:
        """Outcome indices (m, n) of m pulls of size n from cells (prompt[i], query[i])."""
        cum = self.cum[prompt, query]  # (m, V)
        u = rng.random((len(prompt), n))
        return np.asarray((u[:, :, None] >= cum[:, None, :]).sum(axis=2), dtype=np.int64)

    def estimates_for(
        self,
        prompt: NDArray[np.int64],
        query: NDArray[np.int64],
        outcomes: NDArray[np.int64],
        method: Method,
        k_max: int | None = None,
    ) -> NDArray[np.float64]:
        """Utility estimates (m, C, k_max) of m pulls with the same n, from drawn outcomes
        (``k_max`` defaults to n_max; NaN where k > n)."""
        m, n = outcomes.shape
        width = self.n_max if k_max is None else k_max
        kc = min(n, width)
        out = np.full((m, len(self.contexts), width), np.nan)
        pi, qi = prompt[:, None], query[:, None]
        costs = self.cost[pi, qi, outcomes]
        cost_est = (sum_ustat if method == "ustat" else sum_blocks)(costs, kc)
        if self.codes is not None:
            labels = self.codes[pi, qi, outcomes]
            credit = self.mv_credit(labels, method)[:, :kc]
            quality = credit[:, None, :] * self.accuracy_weight[None, :, None]
        else:
            assert self.select is not None
            sel = self.select[pi, qi, outcomes]  # (m, n, C)
            rows = sel.transpose(0, 2, 1).reshape(m * len(self.contexts), n)
            est = (bon_ustat if method == "ustat" else bon_blocks)(rows, None, kc)
            quality = est.reshape(m, len(self.contexts), kc)
        out[:, :, :kc] = quality - self.cost_weight[None, :, None] * cost_est[:, None, :]
        return out

    def mv_credit(self, labels: NDArray[np.int64], method: Method) -> NDArray[np.float64]:
        """Majority-vote credit (m, n_max) of label rows (gold = 0, abstain = -1)."""
        m, n = labels.shape
        gold = np.zeros(m, dtype=np.int64)
        if method == "blocks":  # order matters: no profile sharing
            return mv_blocks(labels, gold, self.n_max)
        if n == 1:  # one vote: credit 1 for gold, 0 for a wrong answer or an abstention
            out1 = np.full((m, self.n_max), np.nan)
            out1[:, 0] = labels[:, 0] == 0
            return out1
        # vote profile: n, gold count, abstentions, the other answers' counts (descending)
        width = self.n_labels + 1  # column 0: abstain, 1: gold, 2…: wrong answers
        flat = (np.arange(m)[:, None] * width + labels + 1).ravel()
        counts = np.bincount(flat, minlength=m * width).reshape(m, width)
        profile = np.empty((m, width + 1), dtype=np.int64)
        profile[:, 0] = n
        profile[:, 1] = counts[:, 1]
        profile[:, 2] = counts[:, 0]
        profile[:, 3:] = -np.sort(-counts[:, 2:], axis=1)
        out = np.empty((m, self.n_max))
        cache = self._mv_cache
        if m == 1:
            key = profile[0].tobytes()
            hit = cache.get(key)
            if hit is None:
                hit = cache[key] = self._mv_ustat_profile(profile[0])
            out[0] = hit
            return out
        base = n + 1  # profile entries lie in 0..n: one integer key per profile when it fits
        if (profile.shape[1] - 1) * math.log2(base) < 62:
            key = profile[:, 1:] @ (base ** np.arange(profile.shape[1] - 1, dtype=np.int64))
            _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
            uniq = profile[first]
        else:
            uniq, inverse = np.unique(profile, axis=0, return_inverse=True)
        vals = np.empty((len(uniq), self.n_max))
        for i, prof in enumerate(uniq):
            key = prof.tobytes()
            hit = cache.get(key)
            if hit is None:
                hit = cache[key] = self._mv_ustat_profile(prof)
            vals[i] = hit
        out[:] = vals[np.asarray(inverse).ravel()]
        return out

    def _one(
        self, p: int, q: int, n: int, width: int, rng: np.random.Generator
    ) -> NDArray[np.float64]:
        """One U-statistic pull (the UCB / ε-greedy path): the batch path's numbers, less numpy
        overhead. Returns (1, C, width)."""
        idx = np.searchsorted(self.cum[p, q], rng.random(n), side="right")
        kc = min(n, width)
        cost_k = float(self.cost[p, q][idx].mean()) * self._k[:kc]
        if self.codes is not None:
            counts = np.bincount(self.codes[p, q][idx] + 1, minlength=self.n_labels + 1)
            wrong = sorted(counts[2:].tolist(), reverse=True)
            prof = np.array([n, counts[1], counts[0], *wrong], dtype=np.int64)
            key = prof.tobytes()
            credit = self._mv_cache.get(key)
            if credit is None:
                credit = self._mv_cache[key] = self._mv_ustat_profile(prof)
            quality = credit[None, :kc] * self.accuracy_weight[:, None]
        else:
            assert self.select is not None
            rows = np.sort(self.select[p, q][idx].T, axis=1)  # (C, n)
            quality = rows @ _max_weights(n, kc)
        out = np.full((1, len(self.contexts), width), np.nan)
        out[0, :, :kc] = quality - self.cost_weight[:, None] * cost_k[None, :]
        return out

    def _mv_ustat_profile(self, prof: NDArray[np.int64]) -> NDArray[np.float64]:
        n, gold_count, abstain = int(prof[0]), int(prof[1]), int(prof[2])
        row = [0] * gold_count + [-1] * abstain
        for label, c in enumerate(prof[3:], start=1):
            row += [label] * int(c)
        assert len(row) == n
        res = mv_ustat(np.array([row], dtype=np.int64), np.zeros(1, dtype=np.int64), self.n_max)
        return np.asarray(res[0], dtype=np.float64)

    def pull_arrays(
        self, batch: Sequence[PullRequest]
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        pidx, qidx = self.prompt_index, self.query_index
        prompt = np.fromiter((pidx[r.prompt] for r in batch), np.int64, len(batch))
        query = np.fromiter((qidx[r.query] for r in batch), np.int64, len(batch))
        n = np.fromiter((r.n for r in batch), np.int64, len(batch))
        return prompt, query, n

    def simulate(
        self,
        batch: Sequence[PullRequest],
        method: Method,
        rng: np.random.Generator,
        *,
        narrow: bool = False,
    ) -> NDArray[np.float64]:
        """Draw every pull of ``batch`` and return its estimates (len(batch), C, n_max).

        ``narrow``: return only the columns up to the batch's largest n, (len(batch), C, max n):
        the columns beyond are NaN anyway, and :class:`~iapo.algorithms.ArmStats` takes the
        narrower array to the same effect (adding NaN-masked zeros changes nothing), at a
        fraction of the cost when N_max is large and the pulls small (TRIPLE, screening).
        """
        if len(batch) == 1 and method == "ustat":
            r = batch[0]
            width = min(r.n, self.n_max) if narrow else self.n_max
            return self._one(
                self.prompt_index[r.prompt], self.query_index[r.query], r.n, width, rng
            )
        prompt, query, n = self.pull_arrays(batch)
        width = min(int(n.max()), self.n_max) if (narrow and len(batch)) else self.n_max
        out = np.empty((len(batch), len(self.contexts), width))
        for size in np.unique(n):
            sel = np.flatnonzero(n == size)
            outcomes = self.draw(prompt[sel], query[sel], int(size), rng)
            out[sel] = self.estimates_for(prompt[sel], query[sel], outcomes, method, width)
        return out


def _merge_outcomes(
    keys: list[tuple[object, ...]], weights: NDArray[np.float64]
) -> tuple[list[tuple[object, ...]], NDArray[np.float64]]:
    """Merge identical outcomes (same answer/scores and cost): the same categorical law."""
    merged: dict[tuple[object, ...], float] = {}
    for k, w in zip(keys, weights, strict=True):
        merged[k] = merged.get(k, 0.0) + float(w)
    return list(merged), np.array(list(merged.values()), dtype=np.float64)


def encode_pool(
    pool: Pool,
    strategy: Strategy,
    contexts: Sequence[Context],
    n_max: int,
    *,
    prompts: Sequence[str] | None = None,
) -> EncodedPool:
    """Encode ``pool`` (costs already scaled as they should enter utilities) into arrays."""
    ps = tuple(prompts) if prompts is not None else pool.prompts
    qs = pool.queries
    ctx = tuple(contexts)
    is_mv = isinstance(strategy, MajorityVote)
    if not is_mv and not isinstance(strategy, BestOfN):
        raise TypeError(f"no simulator for strategy {strategy.name!r}")
    objectives = strategy.objectives
    wmat = np.array([c.weight_vector(objectives) for c in ctx]).T  # (K, C)
    cells: list[tuple[int, int, list[tuple[object, ...]], NDArray[np.float64]]] = []
    v_max = 1
    for pi, p in enumerate(ps):
        for qi, q in enumerate(qs):
            cell = pool.cell(p, q)
            keys: list[tuple[object, ...]] = []
            for o in cell.outcomes:
                if is_mv:
                    if o.answer is None:
                        code = -1
                    elif cell.gold is not None and o.answer == cell.gold:
                        code = 0
                    else:
                        code = None  # numbered below
                    keys.append((code, o.answer, float(o.cost)))
                else:
                    keys.append((tuple(float(o.scores[k]) for k in objectives), float(o.cost)))
            merged, w = _merge_outcomes(keys, cell.weights)
            keep = w > 0
            merged = [k for k, ok in zip(merged, keep, strict=True) if ok]
            cells.append((pi, qi, merged, w[keep]))
            v_max = max(v_max, len(merged))
    shape = (len(ps), len(qs), v_max)
    cum = np.full(shape, _PAD_CUM)
    cost = np.zeros(shape)
    codes = np.full(shape, -1, dtype=np.int64) if is_mv else None
    select = None if is_mv else np.zeros((*shape, len(ctx)))
    for pi, qi, merged, w in cells:
        v = len(merged)
        c = np.cumsum(w) / w.sum()
        c[-1] = 1.0
        cum[pi, qi, :v] = c
        if is_mv:
            assert codes is not None
            wrong: dict[object, int] = {}
            for j, (known, answer, co) in enumerate(merged):
                label = wrong.setdefault(answer, len(wrong) + 1) if known is None else known
                codes[pi, qi, j] = int(label)  # type: ignore[call-overload]
                cost[pi, qi, j] = float(co)  # type: ignore[arg-type]
        else:
            assert select is not None
            scores = np.array([k[0] for k in merged], dtype=np.float64)  # (v, K)
            select[pi, qi, :v] = scores @ wmat
            cost[pi, qi, :v] = [float(k[1]) for k in merged]  # type: ignore[arg-type]
    exact = np.zeros((len(ps), len(qs), len(ctx), n_max))
    for pi, p in enumerate(ps):
        exact[pi] = strategy.exact_utility([pool.cell(p, q) for q in qs], ctx, n_max)
    return EncodedPool(
        prompts=ps,
        queries=qs,
        contexts=ctx,
        strategy=strategy,
        n_max=n_max,
        cum=cum,
        cost=cost,
        codes=codes,
        select=select,
        exact=exact,
        accuracy_weight=np.array([float(c.weights.get("accuracy", 1.0)) for c in ctx]),
        cost_weight=np.array([c.cost_weight for c in ctx]),
    )
