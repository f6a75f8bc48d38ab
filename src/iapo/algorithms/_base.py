"""The ask/tell interface every exploration algorithm implements, and the shared arm statistics."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from iapo.errors import BudgetError
from iapo.problem import Problem
from iapo.types import Arm, PullRequest, PullResult

__all__ = ["Algorithm", "ArmStats", "RoundTrace"]


class ArmStats:
    """Running sums of per-pull utility estimates, indexed (context, prompt, N-1).

    Each pull of (p, n) adds one observation to every (c, p, k ≤ n): the U-statistic (or block)
    estimate of that pull at N = k. Statistics persist across rounds ("stockpiling").
    """

    def __init__(self, n_contexts: int, n_prompts: int, n_max: int) -> None:
        shape = (n_contexts, n_prompts, n_max)
        self.total = np.zeros(shape)
        self.total_sq = np.zeros(shape)
        self.count = np.zeros(shape, dtype=np.int64)

    def add(self, prompt_index: NDArray[np.int64], estimates: NDArray[np.float64]) -> None:
        """``estimates``: (pulls, C, k_max ≤ n_max) with NaN where a pull says nothing."""
        if len(prompt_index) == 0:
            return
        k = estimates.shape[2]
        ok = ~np.isnan(estimates)
        vals = np.where(ok, estimates, 0.0)
        # sum each prompt's pulls in one pass (sorted by prompt, np.add.reduceat), then add once
        # per prompt: much faster than np.add.at on big batches
        order = np.argsort(prompt_index, kind="stable")
        sorted_index = prompt_index[order]
        starts = np.flatnonzero(np.r_[True, sorted_index[1:] != sorted_index[:-1]])
        prompts = sorted_index[starts]
        v = vals[order]
        self.total[:, prompts, :k] += np.add.reduceat(v, starts, axis=0).transpose(1, 0, 2)
        self.total_sq[:, prompts, :k] += np.add.reduceat(v * v, starts, axis=0).transpose(1, 0, 2)
        self.count[:, prompts, :k] += np.add.reduceat(
            ok[order].astype(np.int64), starts, axis=0
        ).transpose(1, 0, 2)

    def add_one(self, context: int, prompt: int, n: int, value: float) -> None:
        self.total[context, prompt, n - 1] += value
        self.total_sq[context, prompt, n - 1] += value * value
        self.count[context, prompt, n - 1] += 1

    @property
    def mean(self) -> NDArray[np.float64]:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.total / np.maximum(self.count, 1), np.nan)

    @property
    def sem(self) -> NDArray[np.float64]:
        """Standard error of the mean (NaN with fewer than two observations)."""
        c = self.count.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (self.total_sq - self.total**2 / c) / (c - 1)
            return np.where(c > 1, np.sqrt(np.maximum(var, 0.0) / c), np.nan)


@dataclass(frozen=True)
class RoundTrace:
    """What one batch did: pulls per prompt at which N, completions, arms alive per context."""

    round: int
    pulls: dict[str, int]
    n: dict[str, int]
    completions: int
    alive: dict[str, int] = field(default_factory=dict)


class Algorithm(ABC):
    """Ask for pulls, be told their results, return a policy (context → arm).

    ``ask()`` returns the next batch of :class:`PullRequest` (empty once finished); the driver
    must answer each batch with ``tell()`` before asking again. The completions requested never
    exceed ``budget`` in total.
    """

    name: ClassVar[str]

    def __init__(self, problem: Problem, budget: int, seed: int = 0) -> None:
        self.problem = problem
        self.budget = int(budget)
        self.rng = np.random.default_rng(seed)
        self.stats = ArmStats(len(problem.contexts), len(problem.prompts), problem.n_max)
        self.spent = 0
        self.trace: list[RoundTrace] = []
        self._prompt_index = {p: i for i, p in enumerate(problem.prompts)}
        self._pending: list[PullRequest] | None = None
        need = self.min_budget(problem, **self.params())
        if self.budget < need:
            raise BudgetError(
                f"{self.budget} completions cannot fund {self.name} on {len(problem.prompts)} "
                f"prompts × N ≤ {problem.n_max}: the smallest budget that works is {need}",
                field="budget",
            )

    # -- to implement -------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def min_budget(cls, problem: Problem, **params: Any) -> int:
        """The smallest budget (completions) this algorithm can run with."""

    @abstractmethod
    def _next(self) -> list[PullRequest]:
        """The next batch (empty when finished)."""

    @abstractmethod
    def _observe(self, batch: Sequence[PullRequest], estimates: NDArray[np.float64]) -> None:
        """Update state with a batch; ``estimates`` is (pulls, C, n_max)."""

    def params(self) -> dict[str, Any]:
        """Parameters that change the algorithm's behaviour (for results and min_budget)."""
        return {}

    # -- ask / tell ---------------------------------------------------------------------
    def ask(self) -> list[PullRequest]:
        if self._pending is not None:
            raise RuntimeError("tell() the previous batch before asking again")
        batch = self._next()
        cost = sum(r.n for r in batch)
        if self.spent + cost > self.budget:  # an invariant: a bug if it ever fires
            raise AssertionError(f"{self.name} asked past its budget ({self.spent}+{cost})")
        self._pending = batch if batch else None
        return batch

    def tell(self, results: Sequence[PullResult]) -> None:
        """Answer the pending batch with its results, in the asked order."""
        if self._pending is None:
            raise RuntimeError("tell() without a pending ask()")
        if [r.request for r in results] != self._pending:
            raise ValueError("tell() must answer the asked batch, in order")
        if any(len(r.samples) != r.request.n for r in results):
            raise ValueError("each result must carry exactly the n samples asked for")
        p = self.problem
        self.tell_estimates(p.strategy.estimate(results, p.contexts, p.n_max, p.method))

    def tell_estimates(self, estimates: NDArray[np.float64]) -> None:
        """Answer the pending batch with its utility estimates directly: an array (pulls, C, k)
        whose column j is the estimate at N = j + 1 (NaN where a pull says nothing), with
        max(n of the batch) ≤ k ≤ n_max; a narrower array than n_max saves work.

        For simulators that estimate from encoded samples without building :class:`PullResult`
        objects (``iapo bench``); ``tell`` computes the same array from results.
        """
        if self._pending is None:
            raise RuntimeError("tell() without a pending ask()")
        batch, self._pending = self._pending, None
        if estimates.shape[0] != len(batch):
            raise ValueError(f"{estimates.shape[0]} estimates for a batch of {len(batch)} pulls")
        self.spent += sum(r.n for r in batch)
        self._observe(batch, estimates)

    def absorb(self, results: Sequence[PullResult]) -> None:
        """Add results drawn outside the schedule (the affordable prefix of a batch that a cost
        cap cut short) to the statistics, so the policy uses every paid completion. The pending
        batch stays unanswered: the algorithm's schedule does not advance."""
        if not results:
            return
        p = self.problem
        est = p.strategy.estimate(results, p.contexts, p.n_max, p.method)
        self.stats.add(self.prompt_indices([r.request for r in results]), est)
        self.spent += sum(r.request.n for r in results)

    def prompt_indices(self, batch: Sequence[PullRequest]) -> NDArray[np.int64]:
        return np.array([self._prompt_index[r.prompt] for r in batch], dtype=np.int64)

    # -- queries ------------------------------------------------------------------------
    def draw_queries(self, k: int) -> list[str]:
        """``k`` training queries, without replacement while possible (then cycling)."""
        qs = self.problem.queries
        out: list[str] = []
        while len(out) < k:
            perm = self.rng.permutation(len(qs))
            out.extend(qs[i] for i in perm[: k - len(out)])
        return out

    # -- the answer ---------------------------------------------------------------------
    def candidates(self, context: int) -> NDArray[np.bool_]:
        """(P, n_max) mask of arms this algorithm may return for ``context``."""
        return self.stats.count[context] > 0

    def ranking(self, context: int) -> list[Arm]:
        """Candidate arms for ``context``, best first (ties: smaller N, then prompt order)."""
        return self.rank(context, self.candidates(context))

    def finalists(self, context: int) -> list[Arm]:
        """The arms the final choice was made among, best first (the runner-up is the second)."""
        return self.rank(context, self.stats.count[context] > 0)

    def rank(self, context: int, mask: NDArray[np.bool_]) -> list[Arm]:
        mean = self.stats.mean[context]
        ps, ns = np.nonzero(mask)
        vals = np.nan_to_num(mean[ps, ns], nan=-np.inf)
        order = np.lexsort((ps, ns, -vals))
        return [Arm(self.problem.prompts[ps[i]], int(ns[i]) + 1) for i in order]

    def policy(self) -> dict[str, Arm]:
        out = {}
        for ci, c in enumerate(self.problem.contexts):
            ranked = self.ranking(ci)
            if not ranked:
                raise RuntimeError(f"{self.name} has no estimate for context {c.name!r}")
            out[c.name] = ranked[0]
        return out

    def run_offline(self, pull: Any) -> dict[str, Arm]:
        """Drive to the end with ``pull(requests) -> results`` (a synchronous helper)."""
        while batch := self.ask():
            self.tell(pull(batch))
        return self.policy()


def ceil_log2(x: int) -> int:
    return max(1, math.ceil(math.log2(x))) if x > 1 else 1
