"""A fast, vectorised replay simulator for benchmarks.

A pool is encoded once into arrays: per (prompt, query) cell, the cumulative probabilities of its
distinct outcomes, each outcome's cost, and its encoded row (:meth:`Strategy.encode
<iapo.strategies.Strategy.encode>`: majority vote, an answer code; Best-of-N, the
context-weighted scores). A pull of (p, q, n) draws n outcome indices with numpy; the utility
estimates for every N = k ≤ n come from the strategy's own encoded estimator
(:meth:`~iapo.strategies.Strategy.estimate_encoded`), pulls grouped by n, and reach the algorithm
through :meth:`~iapo.algorithms.Algorithm.tell_estimates`. The numbers are the ones
:meth:`~iapo.strategies.Strategy.estimate` computes from equivalent :class:`~iapo.types.PullResult`
objects (``tests/test_bench.py`` checks it); only the per-sample Python objects are skipped.

The simulator keeps a per-process memo for the strategy (majority-vote U-statistics depend only
on a pull's vote profile), so the one-pull-per-step baselines (UCB, ε-greedy) cost little more
than a dictionary lookup per pull.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from iapo.adaptive import ArmLayout
from iapo.algorithms import Estimates
from iapo.pools import Pool, cached_tables, code_fingerprint
from iapo.strategies import (
    BestOfN,
    MajorityVote,
    Method,
    ProfileCache,
    Strategy,
    encode_outcomes,
    exact_adaptive_utilities,
    exact_cell_utilities,
)
from iapo.types import Context, PullRequest

__all__ = ["EncodedPool", "encode_pool"]

Ids = tuple[str, ...]  # adaptive arm ids, "<rule>/b<batch>"

_PAD_CUM = 2.0  # cumulative probability of padding outcomes: never drawn (u < 1)
#: The modules whose code computes an encoded pool: part of its cache key.
_CODE = (
    "bench/_sim.py",
    "pools/_arrays.py",
    "strategies/_truth.py",
    "adaptive/_dp.py",  # and below: the adaptive arms' tables (issue #15)
    "adaptive/_exact.py",
    "adaptive/_rules.py",
    "strategies/_base.py",
    "strategies/_majority.py",
    "strategies/_bon.py",
    "estimators/_majority.py",
    "estimators/_mv_exact.py",
    "estimators/_bon.py",
)


class _Drawn(Estimates):
    """The estimates of a simulated batch, computed from its drawn outcomes when read.

    ``drawn[n]``: the outcome indices (pulls of size n, n) of the batch's pulls of size n, in
    batch order; a block of pulls is estimated per size as :meth:`EncodedPool.simulate` does."""

    def __init__(
        self,
        sim: EncodedPool,
        pulls: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]],
        drawn: dict[int, NDArray[np.int64]],
        method: Method,
        width: int,
        adaptive: Ids = (),
    ) -> None:
        self.prompt, self.query, n = pulls
        super().__init__(len(n), len(sim.contexts), width, sizes=n)
        self.sim, self.drawn, self.method, self.adaptive = sim, drawn, method, adaptive
        self.at = np.empty(len(n), dtype=np.int64)  # each pull's row in drawn[its n]
        for size in drawn:
            sel = np.flatnonzero(n == size)
            self.at[sel] = np.arange(len(sel))

    def rows(self, index: NDArray[np.int64], width: int) -> NDArray[np.float64]:
        out = np.empty((len(index), self.shape[1], width))
        sizes = self.sizes[index] if self.sizes is not None else np.zeros(0, np.int64)
        for size in np.unique(sizes):
            sel = np.flatnonzero(sizes == size)
            pulls = index[sel]
            out[sel] = self.sim.estimates_for(
                self.prompt[pulls],
                self.query[pulls],
                self.drawn[int(size)][self.at[pulls]],
                self.method,
                width,
                self.adaptive,
            )
        return out

    def width_of(self, index: NDArray[np.int64]) -> int:  # adaptive arms: never narrowed
        return self.shape[2] if self.adaptive else super().width_of(index)


@dataclass
class EncodedPool:
    """A pool as arrays, for one strategy and context set. Index order: (prompt, query, outcome).

    ``exact`` is the ground truth per cell, (P, Q, C, n_max): the expected utility of
    (prompt, N = k) on that query under i.i.d. draws from the cell (costs already scaled).
    With ``adaptive`` arm ids (issue #15) it is (P, Q, C, width) in the columns of
    :class:`iapo.adaptive.ArmLayout`, and ``samples`` (P, Q, width) holds each arm's expected
    samples per query (N for a fixed arm).
    """

    prompts: tuple[str, ...]
    queries: tuple[str, ...]
    contexts: tuple[Context, ...]
    strategy: Strategy
    n_max: int
    cum: NDArray[np.float64]  # (P, Q, V) cumulative outcome probabilities, padding = 2
    cost: NDArray[np.float64]  # (P, Q, V) per-sample cost (scaled)
    codes: NDArray[Any]  # (P, Q, V, F) each outcome's row of strategy.encode
    exact: NDArray[np.float64]  # (P, Q, C, n_max)
    adaptive: Ids = ()
    samples: NDArray[np.float64] | None = None  # (P, Q, width), with adaptive arms
    prompt_index: dict[str, int] = field(default_factory=dict)
    query_index: dict[str, int] = field(default_factory=dict)
    _cache: ProfileCache = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.prompt_index = {p: i for i, p in enumerate(self.prompts)}
        self.query_index = {q: i for i, q in enumerate(self.queries)}

    def __getstate__(self) -> dict[str, object]:  # the memo stays in its process
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    # -- ground truth -------------------------------------------------------------------------
    def q_table(self, queries: Sequence[int] | NDArray[np.int64]) -> NDArray[np.float64]:
        """Exact Q (C, P, n_max) on the queries with these indices (mean over queries)."""
        idx = np.asarray(queries, dtype=np.int64)
        return np.asarray(self.exact[:, idx].mean(axis=1).transpose(1, 0, 2), dtype=np.float64)

    def samples_table(self, queries: Sequence[int] | NDArray[np.int64]) -> NDArray[np.float64]:
        """Expected samples (P, width) of every arm on these queries (mean over queries)."""
        idx = np.asarray(queries, dtype=np.int64)
        if self.samples is None:
            sizes = ArmLayout(self.n_max, self.adaptive).sizes.astype(np.float64)
            return np.broadcast_to(sizes, (len(self.prompts), len(sizes))).copy()
        return np.asarray(self.samples[:, idx].mean(axis=1), dtype=np.float64)

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
        adaptive: Ids = (),
    ) -> NDArray[np.float64]:
        """Utility estimates (m, C, k_max) of m pulls with the same n, from drawn outcomes
        (``k_max`` defaults to n_max; NaN where k > n). With ``adaptive`` arm ids: every
        column of their :class:`~iapo.adaptive.ArmLayout` (``k_max`` is then ignored)."""
        pi, qi = prompt[:, None], query[:, None]
        return self.strategy.estimate_encoded(
            self.codes[pi, qi, outcomes],
            self.cost[pi, qi, outcomes],
            self.contexts,
            self.n_max if (k_max is None or adaptive) else k_max,
            method,
            self._cache,
            adaptive=adaptive,
        )

    def _one(
        self, p: int, q: int, n: int, width: int, rng: np.random.Generator, adaptive: Ids = ()
    ) -> NDArray[np.float64]:
        """One U-statistic pull (the UCB / ε-greedy path): the batch path's numbers, less numpy
        overhead. Returns (1, C, width)."""
        idx = np.searchsorted(self.cum[p, q], rng.random(n), side="right")
        codes, cost = self.codes[p, q][idx][None], self.cost[p, q][idx][None]
        return self.strategy.estimate_encoded(
            codes, cost, self.contexts, width, "ustat", self._cache, adaptive=adaptive
        )

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
        adaptive: Ids = (),
    ) -> NDArray[np.float64]:
        """Draw every pull of ``batch`` and return its estimates (len(batch), C, n_max).

        ``narrow``: return only the columns up to the batch's largest n, (len(batch), C, max n):
        the columns beyond are NaN anyway, and :class:`~iapo.algorithms.ArmStats` takes the
        narrower array to the same effect (adding NaN-masked zeros changes nothing), at a
        fraction of the cost when N_max is large and the pulls small (TRIPLE, screening).
        """
        got = self.simulate_lazy(batch, method, rng, narrow=narrow, adaptive=adaptive)
        return got.dense() if isinstance(got, Estimates) else got

    def simulate_lazy(
        self,
        batch: Sequence[PullRequest],
        method: Method,
        rng: np.random.Generator,
        *,
        narrow: bool = True,
        adaptive: Ids = (),
    ) -> NDArray[np.float64] | Estimates:
        """:meth:`simulate` (narrow by default) without the dense array: the outcomes are drawn
        now (the same random stream), the estimates computed from them a block of pulls at a
        time when read (:class:`~iapo.algorithms.Estimates`; the same numbers). A single
        U-statistic pull comes back as its small array. ``adaptive``: the problem's adaptive
        arm ids (their columns follow the fixed ones; never narrowed)."""
        narrow = narrow and not adaptive
        if len(batch) == 1 and method == "ustat":
            r = batch[0]
            width = min(r.n, self.n_max) if narrow else self.n_max
            return self._one(
                self.prompt_index[r.prompt], self.query_index[r.query], r.n, width, rng, adaptive
            )
        prompt, query, n = self.pull_arrays(batch)
        width = min(int(n.max()), self.n_max) if (narrow and len(batch)) else self.n_max
        width *= 1 + len(adaptive)
        drawn = {}
        for size in np.unique(n):
            sel = np.flatnonzero(n == size)
            drawn[int(size)] = self.draw(prompt[sel], query[sel], int(size), rng)
        return _Drawn(self, (prompt, query, n), drawn, method, width, adaptive)


def encode_pool(
    pool: Pool,
    strategy: Strategy,
    contexts: Sequence[Context],
    n_max: int,
    *,
    prompts: Sequence[str] | None = None,
    cache: bool | None = None,
    adaptive: Sequence[str] = (),
) -> EncodedPool:
    """Encode ``pool`` (costs already scaled as they should enter utilities) into arrays.

    Identical outcomes of a cell (the same encoded row and cost) are merged, in order of first
    appearance: the same categorical law. Computed on the pool's arrays
    (:class:`~iapo.pools.PoolArrays`), the same numbers as cell by cell. For a pool read from a
    large file, the tables are cached beside it (:func:`~iapo.pools.cached_tables`; ``cache``
    False or ``$IAPO_NO_CACHE`` turns that off)."""
    ps = tuple(prompts) if prompts is not None else pool.prompts
    qs, ctx, ids = pool.queries, tuple(contexts), tuple(adaptive)

    def build() -> dict[str, NDArray[Any]]:
        tables = _encode_arrays(pool, strategy, ctx, ps)
        tables["exact"] = exact_cell_utilities(pool, strategy, ctx, n_max, prompts=ps, queries=qs)
        if ids and isinstance(strategy, MajorityVote):
            util, samples = exact_adaptive_utilities(pool, strategy, ctx, n_max, ids, ps, qs)
            util[..., ::n_max], samples[..., ::n_max] = tables["exact"][..., :1], 1.0  # N_max' 1
            tables["exact"] = np.concatenate([tables["exact"], util], axis=3)
            fixed = np.broadcast_to(np.arange(1.0, n_max + 1), (len(ps), len(qs), n_max))
            tables["samples"] = np.concatenate([fixed, samples], axis=2)
        return tables

    source = pool.arrays.source if type(strategy) in (MajorityVote, BestOfN) else None
    what = {
        "kind": "encoded_pool",
        "strategy": [type(strategy).__name__, list(strategy.objectives)],
        "tie_credit": getattr(strategy, "tie_credit", None),
        "contexts": [c.to_dict() for c in ctx],
        "n_max": n_max,
        "prompts": list(ps),
        "queries": list(qs),
        "code": _code_fingerprint(),
    }
    if ids:  # only then: the keys of existing caches stay as they were
        if not isinstance(strategy, MajorityVote):
            raise ValueError(f"adaptive arms need majority_vote, not {strategy.name}")
        what["adaptive"] = list(ids)
    tables = cached_tables(source, what, build, enabled=cache)
    width = n_max * (1 + len(ids))
    if not _fits(tables, len(ps), len(qs), len(ctx), width) or (ids and "samples" not in tables):
        tables = build()
    return EncodedPool(
        prompts=ps,
        queries=qs,
        contexts=ctx,
        strategy=strategy,
        n_max=n_max,
        cum=tables["cum"],
        cost=tables["cost"],
        codes=tables["codes"],
        exact=tables["exact"],
        adaptive=ids,
        samples=tables.get("samples"),
    )


@lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    return code_fingerprint(*_CODE)


def _fits(tables: dict[str, NDArray[Any]], n_p: int, n_q: int, n_c: int, n_max: int) -> bool:
    """Whether (cached) tables have the shapes and types an EncodedPool needs."""
    try:
        cum, cost, codes, exact = (tables[k] for k in ("cum", "cost", "codes", "exact"))
    except KeyError:
        return False
    v = cum.shape[2] if cum.ndim == 3 else -1
    return (
        cum.shape == (n_p, n_q, v)
        and cost.shape == cum.shape
        and codes.shape[:3] == cum.shape
        and codes.ndim == 4
        and exact.shape == (n_p, n_q, n_c, n_max)
        and all(a.dtype == np.float64 for a in (cum, cost, exact))
        and codes.dtype in (np.int64, np.float64)
    )


def _encode_arrays(
    pool: Pool, strategy: Strategy, ctx: tuple[Context, ...], ps: tuple[str, ...]
) -> dict[str, NDArray[Any]]:
    """cum, cost, codes of :class:`EncodedPool`, from the pool's arrays."""
    arrays = pool.arrays
    grid = arrays.cell_ids(ps, pool.queries)
    n_cells = grid.size
    rows, owner, codes = encode_outcomes(pool, strategy, ctx, grid.ravel())
    cost = arrays.cost[rows]
    weight = arrays.weight[rows]
    features = codes.shape[1] if codes.ndim == 2 else 1
    codes = np.ascontiguousarray(codes.reshape(len(rows), features))
    # merge outcomes with the same (cell, encoded row bytes, cost), first appearance first; the
    # cost as a number (-0.0 is 0.0, as a dictionary key of floats has it)
    key = np.concatenate(
        [
            owner[:, None].view(np.uint8),
            codes.view(np.uint8).reshape(len(rows), -1),
            np.ascontiguousarray((cost + 0.0)[:, None]).view(np.uint8),
        ],
        axis=1,
    )
    key = np.ascontiguousarray(key).view(np.dtype((np.void, key.shape[1]))).ravel()
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    total = np.bincount(np.asarray(inverse).ravel(), weights=weight, minlength=len(first))
    order = np.argsort(first, kind="stable")
    first, total = first[order], total[order]
    keep = total > 0
    first, total = first[keep], total[keep]
    g_owner = owner[first]
    per_cell = np.bincount(g_owner, minlength=n_cells)
    g_start = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(per_cell, out=g_start[1:])
    at = np.arange(len(first)) - g_start[g_owner]
    v_max = max(int(per_cell.max()) if n_cells else 0, 1)
    cum = np.full((n_cells, v_max), _PAD_CUM)
    for v in np.unique(per_cell):
        if v == 0:
            continue
        cells_v = np.flatnonzero(per_cell == v)
        w = total[g_start[cells_v][:, None] + np.arange(int(v))]
        c = np.cumsum(w, axis=1) / w.sum(axis=1)[:, None]
        c[:, -1] = 1.0
        cum[cells_v, : int(v)] = c
    out_cost = np.zeros((n_cells, v_max))
    out_cost[g_owner, at] = cost[first]
    out_codes = np.zeros((n_cells, v_max, features), dtype=codes.dtype)
    out_codes[g_owner, at] = codes[first]
    shape = (*grid.shape, v_max)
    return {
        "cum": cum.reshape(shape),
        "cost": out_cost.reshape(shape),
        "codes": out_codes.reshape(*shape, features),
    }
