"""PSST at any budget: strict PSST where the budget funds it, a budget-feasible schedule below."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from iapo.algorithms._base import RoundTrace, ceil_log2
from iapo.algorithms._estimates import Estimates
from iapo.algorithms._params import AlgorithmParams
from iapo.algorithms._psst import PSST
from iapo.problem import Problem
from iapo.types import Arm, PullRequest

__all__ = ["PSSTAny", "pull_cap", "trim"]


def pull_cap(sizes: NDArray[np.int64], round_budget: int) -> int:
    """The largest pull size c ≥ 1 with Σ_p min(sizes[p], c) ≤ ``round_budget`` over the live
    prompts (sizes > 0); 0 if not even c = 1 fits."""
    live = sizes[sizes > 0]
    best = 0
    for c in range(1, int(live.max(initial=0)) + 1):
        if int(np.minimum(live, c).sum()) > round_budget:
            break
        best = c
    return best


def trim(
    active: NDArray[np.bool_],
    mean: NDArray[np.float64],
    count: NDArray[np.int64],
    keep: float,
    tie: NDArray[np.int64] | None = None,
) -> NDArray[np.bool_]:
    """Per context, keep the better ⌈keep·k⌉ (at least one) of its k active arms *with data*,
    and the active arms *without data* of every prompt that keeps at least one arm (a prompt
    leaves a context only on evidence; an arm never measured is never ranked). All arrays are
    (C, P, N).

    With ``keep = 0.5`` and data on every active arm this is :func:`~iapo.algorithms.halve`
    (same ties: smaller N, then earlier prompts; ``tie`` as there).
    """
    out = np.zeros_like(active)
    n_max = active.shape[2]
    tie = np.arange(n_max) if tie is None else tie
    for c in range(active.shape[0]):
        ranked = active[c] & (count[c] > 0)
        ps, ns = np.nonzero(ranked)
        if len(ps) == 0:
            continue
        vals = np.nan_to_num(mean[c, ps, ns], nan=-np.inf)
        order = np.lexsort((ps, tie[ns], -vals))
        kept = order[: max(1, math.ceil(len(ps) * keep))]
        out[c].reshape(-1)[ps[kept] * n_max + ns[kept]] = True
        survivors = out[c].any(axis=1)  # (P,)
        out[c] |= active[c] & ~ranked & survivors[:, None]
    return out


class PSSTAny(PSST):
    """PSST that runs at every budget ≥ |P| (one completion per prompt) and never overspends.

    * ``budget ≥ PSST.min_budget``: exactly :class:`PSST` (same batches, same decisions).
    * Below it, ``R' = min(R, ⌊T/|P|⌋)`` rounds, ``R = ⌈log2(|P|·N_max)⌉``. Round r has
      ``B_r = ⌊left / rounds left⌋`` (unspent budget carries over; the last round gets all that
      is left). It pulls every live prompt ``m_r = ⌊B_r / S_r⌋`` times on the same queries at
      ``n_r(p) = min(Nmax_r(p), c_r)``, where ``c_r`` is the largest cap with
      ``S_r = Σ_p min(Nmax_r(p), c_r) ≤ B_r``; each context then keeps the better
      ``⌈k·2^(-R/R')⌉`` of its k active arms with data (:func:`trim`), so R' rounds shrink as
      much as R halvings. ``B_r ≥ ⌊T/R'⌋ ≥ |P|``, so every round funds c_r ≥ 1 and m_r ≥ 1.
    * Unspent at the end (below PSST's minimum): less than the last round's ``S_r ≤ |P|·N_max``.
    """

    name: ClassVar[str] = "psst_any"

    class Params(AlgorithmParams):
        #: query groups per round below strict PSST's minimum (1: all prompts on the same queries)
        groups: int = Field(8, ge=1, le=1_000_000)

    def __init__(self, problem: Problem, budget: int, seed: int = 0, *, groups: int = 8) -> None:
        if groups < 1:
            raise ValueError("groups must be at least 1")
        super().__init__(problem, budget, seed)
        self.groups = groups
        self.strict = self.budget >= PSST.min_budget(problem)
        full = ceil_log2(len(problem.prompts) * problem.layout.arms_per_prompt)
        if not self.strict:
            self.rounds = max(1, min(full, self.budget // len(problem.prompts)))
        #: the fraction of measured arms each context keeps per round (½ in strict PSST)
        self.keep = 0.5 if self.strict else 2.0 ** (-full / self.rounds)

    @classmethod
    def min_budget(cls, problem: Problem, **params: Any) -> int:
        """|P|: one round of one completion per prompt."""
        return len(problem.prompts)

    def params(self) -> dict[str, Any]:
        return {"groups": self.groups}

    def schedule(self) -> str:
        need = PSST.min_budget(self.problem)
        if self.strict:
            return f"strict PSST (the budget reaches its minimum, {need:,}): " + (
                self.halving_schedule()
            )
        queries = (
            f"the live prompts dealt at random into {self.groups} query groups"
            if self.groups > 1
            else "every live prompt on the same queries"
        )
        return (
            f"below strict PSST's minimum ({need:,}): {self.rounds} rounds sharing what is left, "
            f"pulls capped at what a round can fund, {queries}; every context keeps "
            f"{100 * self.keep:.0f} % of its measured arms per round"
        )

    def budget_hint(self) -> str:
        return ""  # its floor, |P|, is the smallest budget anything can run with

    def round_budget(self) -> int:
        """B_r: what is left, shared evenly by the rounds left (the last round takes it all)."""
        return (self.budget - self.spent) // max(1, self.rounds - self.round)

    def pull_sizes(self) -> NDArray[np.int64]:
        """n_r(p) for the current round: min(Nmax_r(p), c_r) (0: prompt dead or run over)."""
        sizes = self.sizes_alive()
        if self.round >= self.rounds:
            return np.zeros_like(sizes)
        if self.strict:
            return sizes
        return np.minimum(sizes, pull_cap(sizes, self.round_budget()))

    def pulls_per_prompt(self) -> int:
        """m_r for the current round (eq. 6 where strict PSST runs; 0 once the run is over)."""
        if self.round >= self.rounds:
            return 0
        if self.strict:
            return super().pulls_per_prompt()
        return self.round_budget() // int(self.pull_sizes().sum())

    def _next(self) -> list[PullRequest]:
        if self.strict:
            return super()._next()
        if self.round >= self.rounds:
            return []
        pulled = self.pull_sizes()
        m = self.pulls_per_prompt()
        live = [(p, int(n)) for p, n in zip(self.problem.prompts, pulled, strict=True) if n > 0]
        g = min(self.groups, len(live))
        group_of = self.rng.permutation(len(live)) % g if g > 1 else np.zeros(len(live), int)
        queries = [self.draw_queries(m) for _ in range(g)]
        per_prompt = [
            [PullRequest(p, q, n) for q in queries[j]]
            for (p, n), j in zip(live, group_of, strict=True)
        ]
        # interleaved query by query, like PSST: any prefix covers every live prompt evenly
        return [req for step in zip(*per_prompt, strict=True) for req in step]

    def _observe_estimates(self, batch: Sequence[PullRequest], estimates: Estimates) -> None:
        if self.strict:
            super()._observe_estimates(batch, estimates)
            return
        index = self.prompt_indices(batch)
        self.stats.add(index, estimates.masked(self.active, index))
        pulls: dict[str, int] = {}
        sizes: dict[str, int] = {}
        for r in batch:
            pulls[r.prompt] = pulls.get(r.prompt, 0) + 1
            sizes[r.prompt] = r.n
        self.before_last = self.active
        self.active = trim(
            self.active, self.stats.mean, self.stats.count, self.keep, self.problem.layout.tie_rank
        )
        self.round += 1
        self.trace.append(
            RoundTrace(
                round=self.round,
                pulls=pulls,
                n=sizes,
                completions=sum(r.n for r in batch),
                alive={
                    c.name: int(self.active[i].sum()) for i, c in enumerate(self.problem.contexts)
                },
            )
        )

    def candidates(self, context: int) -> NDArray[np.bool_]:
        if self.strict:
            return super().candidates(context)
        measured = self.stats.count[context] > 0
        if self.round >= self.rounds:
            return self.active[context] & measured
        return measured

    def finalists(self, context: int) -> list[Arm]:
        if self.strict:
            return super().finalists(context)
        return self.rank(context, self.before_last[context] & (self.stats.count[context] > 0))
