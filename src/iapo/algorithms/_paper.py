"""``psst_paper``: PSST as the authors' released code runs it, overspending included.

A research baseline, not a recommendation: it reproduces the published numbers' algorithm so
that benchmarks can compare against it honestly (at the completions it actually spent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from iapo.algorithms._base import ArmStats, ceil_log2
from iapo.algorithms._estimates import Estimates
from iapo.algorithms._params import AlgorithmParams
from iapo.algorithms._psst import PSST
from iapo.problem import Problem
from iapo.types import PullRequest

__all__ = ["PSSTPaper", "add_blocks"]


def add_blocks(
    stats: ArmStats,
    prompt_index: NDArray[np.int64],
    sizes: NDArray[np.int64],
    estimates: NDArray[np.float64],
) -> None:
    """Add block-weighted observations: a pull of size n says ⌊n/k⌋ things about N = k.

    ``estimates`` (pulls, C, k_max) holds each pull's mean over its ⌊n/k⌋ disjoint blocks at
    N = k (the "blocks" estimator; NaN: nothing to add). Each block counts as one observation, so
    ``stats.mean`` is the mean over every block seen, a pull of 32 weighing 32 times a pull of 1
    at N = 1. The per-block spread inside a pull is not seen: ``total_sq`` adds each block at its
    pull's mean, so ``stats.sem`` under-states the spread (it serves reports, not decisions).
    """
    if len(prompt_index) == 0:
        return
    k = estimates.shape[2]
    blocks = sizes[:, None] // np.arange(1, k + 1)[None, :]  # (pulls, k)
    ok = ~np.isnan(estimates)
    w = np.where(ok, blocks[:, None, :], 0)  # (pulls, C, k)
    vals = np.where(ok, estimates, 0.0)
    for arr, add in (
        (stats.total, w * vals),
        (stats.total_sq, w * vals * vals),
        (stats.count, w),
    ):
        np.add.at(arr[:, :, :k].transpose(1, 0, 2), prompt_index, add)


class PSSTPaper(PSST):
    """PSST as the released research code runs it (issue #11; the default ``psst`` is Algorithm
    1 with a budget that is never exceeded).

    Differences from ``psst``:

    * every pull draws its own random training query (with replacement; nothing is paired
      across prompts);
    * the "blocks" estimator, weighted per block: a pull of n scored at N = k adds ⌊n/k⌋ block
      observations (:func:`add_blocks`), not one averaged observation;
    * pulls per live prompt and round are ``max(1, ⌊(T/R) / Σ_p Nmax_r(p)⌋)``: below PSST's
      minimum budget every round still pulls every live prompt once, so the run **spends more
      than its budget** (``may_overspend``). ``spent`` counts every completion asked for; the
      run spends at most :meth:`max_spend` = max(T, R·|P|·N_max).

    Any positive budget runs (``min_budget`` is 1). The problem's estimator is replaced by
    "blocks": that is part of the algorithm.
    """

    name: ClassVar[str] = "psst_paper"
    may_overspend: ClassVar[bool] = True

    class Params(AlgorithmParams):
        """No parameters (PSST's ``paired`` is fixed: never paired)."""

    def __init__(self, problem: Problem, budget: int, seed: int = 0) -> None:
        if problem.method != "blocks":
            problem = replace(problem, method="blocks")
        super().__init__(problem, budget, seed, paired=False)

    @classmethod
    def min_budget(cls, problem: Problem, **params: Any) -> int:
        return 1

    @classmethod
    def max_spend(cls, problem: Problem, budget: int, **params: Any) -> int:
        """The most a run can ask for: a round pulls ``m·M ≤ max(M, T/R)`` completions with M
        at most |P|·N_max, so R rounds spend at most max(T, R·|P|·N_max)."""
        rounds = ceil_log2(len(problem.prompts) * problem.n_max)
        return max(int(budget), rounds * len(problem.prompts) * problem.n_max)

    def params(self) -> dict[str, Any]:
        return {}

    def pulls_per_prompt(self) -> int:
        """Eq. 6 rounded up to one pull (the released code's ``max(1, ·)``)."""
        return max(1, super().pulls_per_prompt())

    def _next(self) -> list[PullRequest]:
        if self.round >= self.rounds:
            return []
        sizes = self.live_sizes(self.active)
        m = self.pulls_per_prompt()
        qs = self.problem.queries
        per_prompt = [
            [PullRequest(p, qs[int(j)], int(n)) for j in self.rng.integers(len(qs), size=m)]
            for p, n in zip(self.problem.prompts, sizes, strict=True)
            if n > 0
        ]
        # interleaved across prompts, as PSST: a prefix of the batch covers every prompt evenly
        return [req for group in zip(*per_prompt, strict=True) for req in group]

    def _add(
        self, batch: Sequence[PullRequest], index: NDArray[np.int64], estimates: Estimates
    ) -> None:
        """The released code's weighting: a pull of n adds ⌊n/k⌋ block observations at N = k."""
        n = np.fromiter((r.n for r in batch), np.int64, len(batch))
        # np.add.at adds pull by pull in batch order: blocks in batch order add the same floats
        for rows, block in estimates.blocks():
            add_blocks(self.stats, index[rows], n[rows], block)
