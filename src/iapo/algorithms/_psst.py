"""PSST (Prompt Scaling via Sequential Trimming) and its top-K screening variant."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from iapo.algorithms._base import Algorithm, ArmStats, RoundTrace, ceil_log2
from iapo.algorithms._estimates import ArrayEstimates, Estimates
from iapo.algorithms._params import AlgorithmParams, Finite
from iapo.problem import Problem
from iapo.types import Arm, PullRequest

__all__ = ["PSST", "PSSTTopK", "halve"]


def halve(
    active: NDArray[np.bool_],
    mean: NDArray[np.float64],
    tie: NDArray[np.int64] | None = None,
) -> NDArray[np.bool_]:
    """Keep the better ⌈n/2⌉ of each context's active arms.

    ``active`` and ``mean`` are (C, P, N). Ties are broken towards smaller N (``tie``: the
    columns' order among ties, default the column itself), then earlier prompts.
    """
    out = np.zeros_like(active)
    n_max = active.shape[2]
    tie = np.arange(n_max) if tie is None else tie
    for c in range(active.shape[0]):
        ps, ns = np.nonzero(active[c])
        if len(ps) == 0:
            continue
        vals = np.nan_to_num(mean[c, ps, ns], nan=-np.inf)
        order = np.lexsort((ps, tie[ns], -vals))
        keep = order[: math.ceil(len(ps) / 2)]
        out[c].reshape(-1)[ps[keep] * n_max + ns[keep]] = True
    return out


class PSST(Algorithm):
    """Sequential Halving over (prompt, N) arms, shared across contexts and scales (Algorithm 1).

    Round r: every prompt alive in some context is pulled at its largest live N, the same number
    of times ``⌊(T/R) / Σ_p Nmax_r(p)⌋`` (eq. 6) on the same random training queries; each pull is
    scored for every N ≤ its size and every context; each context keeps the better half of its own
    active arms. ``R = ⌈log2(|P|·N_max)⌉``. Statistics are kept across rounds.
    """

    name: ClassVar[str] = "psst"

    class Params(AlgorithmParams):
        paired: bool = True

    def __init__(
        self,
        problem: Problem,
        budget: int,
        seed: int = 0,
        *,
        active: NDArray[np.bool_] | None = None,
        paired: bool = True,
        rng: np.random.Generator | None = None,
        stats: ArmStats | None = None,
    ) -> None:
        super().__init__(problem, budget, seed, rng=rng, stats=stats)
        lay = problem.layout
        shape = (len(problem.contexts), len(problem.prompts), lay.width)
        self.active = np.broadcast_to(lay.valid, shape).copy() if active is None else active.copy()
        self.paired = paired
        self.rounds = self._rounds(self.active)
        self.round = 0
        self.before_last = self.active

    @staticmethod
    def _rounds(active: NDArray[np.bool_]) -> int:
        return ceil_log2(int(active.sum(axis=(1, 2)).max()))

    @staticmethod
    def live_sizes(
        active: NDArray[np.bool_], sizes: NDArray[np.int64] | None = None
    ) -> NDArray[np.int64]:
        """Nmax_r(p): the largest pull size any arm of prompt p alive in any context needs
        (0: prompt dead). ``sizes``: each column's N (default: column + 1, fixed arms only)."""
        union = active.any(axis=0)  # (P, N)
        n = np.arange(1, union.shape[1] + 1) if sizes is None else sizes
        return np.where(union, n[None, :], 0).max(axis=1).astype(np.int64)

    @classmethod
    def min_budget(cls, problem: Problem, **params: Any) -> int:
        active = params.get("active")
        if active is None:
            return (
                ceil_log2(len(problem.prompts) * problem.layout.arms_per_prompt)
                * len(problem.prompts)
                * (problem.n_max)
            )
        return cls._rounds(active) * int(cls.live_sizes(active, problem.layout.sizes).sum())

    def params(self) -> dict[str, Any]:
        return {"active": self.active, "paired": self.paired}

    def schedule(self) -> str:
        return "strict PSST: " + self.halving_schedule()

    def halving_schedule(self) -> str:
        """Strict PSST's schedule in words."""
        return (
            f"{self.rounds} rounds, each pulls every live prompt at its largest live N on "
            "shared queries; every context halves its arms per round"
        )

    def budget_hint(self) -> str:
        return f", or use psst_any (the default), which runs from {len(self.problem.prompts)}"

    def pulls_per_prompt(self) -> int:
        """Eq. 6 for the current round."""
        return int((self.budget / self.rounds) // int(self.sizes_alive().sum()))

    def sizes_alive(self) -> NDArray[np.int64]:
        """:meth:`live_sizes` of this run's active arms."""
        return self.live_sizes(self.active, self.problem.layout.sizes)

    def _next(self) -> list[PullRequest]:
        if self.round >= self.rounds:
            return []
        sizes = self.sizes_alive()
        m = self.pulls_per_prompt()
        live = [(p, int(n)) for p, n in zip(self.problem.prompts, sizes, strict=True) if n > 0]
        shared = self.draw_queries(m) if self.paired else None
        per_prompt = [
            [PullRequest(p, q, n) for q in (shared or self.draw_queries(m))] for p, n in live
        ]
        # interleaved (query by query across prompts), so that any prefix of the batch, e.g. one
        # cut by a cost cap, covers every live prompt evenly
        return [req for group in zip(*per_prompt, strict=True) for req in group]

    def _observe(self, batch: Sequence[PullRequest], estimates: NDArray[np.float64]) -> None:
        self._observe_estimates(batch, ArrayEstimates(estimates))

    def _observe_estimates(self, batch: Sequence[PullRequest], estimates: Estimates) -> None:
        # Algorithm 1 updates an arm's statistics in the contexts where it is active: an arm a
        # context has eliminated keeps the estimate it was dropped with.
        index = self.prompt_indices(batch)
        self._add(batch, index, estimates.masked(self.active, index))
        sizes = self.sizes_alive()
        pulls: dict[str, int] = {}
        for r in batch:
            pulls[r.prompt] = pulls.get(r.prompt, 0) + 1
        self.before_last = self.active
        self.active = halve(self.active, self.stats.mean, self.problem.layout.tie_rank)
        self.round += 1
        self.trace.append(
            RoundTrace(
                round=self.round,
                pulls=pulls,
                n={p: int(s) for p, s in zip(self.problem.prompts, sizes, strict=True) if s},
                completions=sum(r.n for r in batch),
                alive={
                    c.name: int(self.active[i].sum()) for i, c in enumerate(self.problem.contexts)
                },
            )
        )

    def _add(
        self, batch: Sequence[PullRequest], index: NDArray[np.int64], estimates: Estimates
    ) -> None:
        """Add a round's estimates (NaN where an arm is not active) to the statistics: one
        observation per pull and N (a subclass may weight them otherwise)."""
        self.stats.add(index, estimates)

    def candidates(self, context: int) -> NDArray[np.bool_]:
        if self.round >= self.rounds:
            return self.active[context]
        return super().candidates(context)

    def finalists(self, context: int) -> list[Arm]:
        return self.rank(context, self.before_last[context])


class PSSTTopK(Algorithm):
    """PSST+K: spend ρ·T on N=1 pulls spread evenly over prompts, keep each context's top-K
    prompts (every N), then run PSST on the rest of the budget with the statistics kept.

    K = 1 approximates the two-stage "disjoint" pipeline (choose the prompt, then N).
    """

    name: ClassVar[str] = "psst_topk"

    class Params(AlgorithmParams):
        k: int = Field(1, ge=1, le=1_000_000)
        rho: Finite = Field(0.2, gt=0.0, lt=1.0)

    def __init__(
        self, problem: Problem, budget: int, seed: int = 0, *, k: int = 1, rho: float = 0.2
    ) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        if not 0.0 < rho < 1.0:
            raise ValueError("rho must be in (0, 1)")
        super().__init__(problem, budget, seed)
        self.k = k
        self.rho = rho
        self.inner: PSST | None = None
        self.screen_budget = int(rho * self.budget)

    def params(self) -> dict[str, Any]:
        return {"k": self.k, "rho": self.rho}

    @classmethod
    def min_budget(cls, problem: Problem, **params: Any) -> int:
        k = min(int(params.get("k", 1)), len(problem.prompts))
        rho = float(params.get("rho", 0.2))
        worst_live = min(len(problem.prompts), k * len(problem.contexts))
        psst_part = ceil_log2(k * problem.layout.arms_per_prompt) * worst_live * problem.n_max
        need = max(len(problem.prompts) / rho, psst_part / (1.0 - rho))
        return math.ceil(need) + 1

    def _next(self) -> list[PullRequest]:
        if self.inner is None:
            if self.trace:  # screening done, PSST not started: cannot happen
                raise AssertionError("unreachable")
            m = self.screen_budget // len(self.problem.prompts)
            queries = self.draw_queries(m)
            return [PullRequest(p, q, 1) for p in self.problem.prompts for q in queries]
        return self.inner.ask()

    def _observe(self, batch: Sequence[PullRequest], estimates: NDArray[np.float64]) -> None:
        self._observe_estimates(batch, ArrayEstimates(estimates))

    def _observe_estimates(self, batch: Sequence[PullRequest], estimates: Estimates) -> None:
        if self.inner is None:
            self.stats.add(self.prompt_indices(batch), estimates)
            n1 = np.nan_to_num(self.stats.mean[:, :, 0], nan=-np.inf)  # (C, P)
            active = np.zeros_like(self.stats.count, dtype=bool)
            k = min(self.k, len(self.problem.prompts))
            for c in range(n1.shape[0]):
                order = np.lexsort((np.arange(n1.shape[1]), -n1[c]))
                active[c, order[:k], :] = self.problem.layout.valid
            self.trace.append(
                RoundTrace(
                    round=0,
                    pulls={
                        p: len(batch) // len(self.problem.prompts) for p in self.problem.prompts
                    },
                    n={p: 1 for p in self.problem.prompts},
                    completions=len(batch),
                    alive={
                        c.name: int(active[i].sum()) for i, c in enumerate(self.problem.contexts)
                    },
                )
            )
            # the same random stream; shared statistics: stockpiling, screening data count too
            left = self.budget - self.spent
            self.inner = PSST(self.problem, left, active=active, rng=self.rng, stats=self.stats)
            return
        self.inner.tell_estimates(estimates)
        self.trace.append(self.inner.trace[-1])

    def candidates(self, context: int) -> NDArray[np.bool_]:
        if self.inner is not None:
            return self.inner.candidates(context)
        return super().candidates(context)

    def finalists(self, context: int) -> list[Arm]:
        if self.inner is not None:
            return self.inner.finalists(context)
        return super().finalists(context)
