"""The paper's baselines: Uniform, per-context Sequential Halving, TRIPLE, UCB, ε-greedy,
softmax."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from iapo.algorithms._base import Algorithm, RoundTrace, ceil_log2
from iapo.algorithms._estimates import ArrayEstimates, Estimates
from iapo.algorithms._params import AlgorithmParams, Finite
from iapo.algorithms._psst import PSST, halve
from iapo.problem import Problem
from iapo.types import Arm, PullRequest, PullResult

__all__ = ["UCB", "EpsilonGreedy", "SequentialHalving", "Softmax", "Triple", "Uniform"]


class Uniform(Algorithm):
    """One batch: every prompt pulled equally at N_max; each context takes its best estimate."""

    name: ClassVar[str] = "uniform"
    Params: ClassVar[type[AlgorithmParams] | None] = AlgorithmParams  # no parameters

    def __init__(self, problem: Problem, budget: int, seed: int = 0) -> None:
        super().__init__(problem, budget, seed)
        self._done = False

    @classmethod
    def min_budget(cls, problem: Problem, **params: Any) -> int:
        return len(problem.prompts) * problem.n_max

    def _next(self) -> list[PullRequest]:
        if self._done:
            return []
        p = self.problem
        m = self.budget // (len(p.prompts) * p.n_max)
        queries = self.draw_queries(m)
        return [PullRequest(pr, q, p.n_max) for pr in p.prompts for q in queries]

    def _observe(self, batch: Sequence[PullRequest], estimates: NDArray[np.float64]) -> None:
        self._observe_estimates(batch, ArrayEstimates(estimates))

    def _observe_estimates(self, batch: Sequence[PullRequest], estimates: Estimates) -> None:
        self.stats.add(self.prompt_indices(batch), estimates)
        self._done = True
        self.trace.append(
            RoundTrace(
                1,
                {p: len(batch) // len(self.problem.prompts) for p in self.problem.prompts},
                {p: self.problem.n_max for p in self.problem.prompts},
                sum(r.n for r in batch),
            )
        )


class SequentialHalving(Algorithm):
    """Classic Sequential Halving run separately in each context, with no sharing at all.

    Each context gets ⌊T/|C|⌋ completions; a pull of arm (p, n) costs n and informs only that
    arm in that context. The ablation of everything PSST shares across contexts and scales.
    """

    name: ClassVar[str] = "sequential_halving"
    Params: ClassVar[type[AlgorithmParams] | None] = AlgorithmParams  # no parameters

    def __init__(self, problem: Problem, budget: int, seed: int = 0) -> None:
        super().__init__(problem, budget, seed)
        lay = problem.layout
        shape = (len(problem.contexts), len(problem.prompts), lay.width)
        self.active = np.broadcast_to(lay.valid, shape).copy()
        self.rounds = ceil_log2(len(problem.prompts) * lay.arms_per_prompt)
        self.round = 0
        self._owner: list[tuple[int, int, int]] = []

    @classmethod
    def min_budget(cls, problem: Problem, **params: Any) -> int:
        lay = problem.layout
        per_context = len(problem.prompts) * int(lay.sizes[lay.valid].sum())
        rounds = ceil_log2(len(problem.prompts) * lay.arms_per_prompt)
        return len(problem.contexts) * rounds * per_context

    def _next(self) -> list[PullRequest]:
        if self.round >= self.rounds:
            return []
        per_round = self.budget // len(self.problem.contexts) / self.rounds
        batch: list[PullRequest] = []
        self._owner = []
        sizes = self.problem.layout.sizes
        for c in range(len(self.problem.contexts)):
            ps, ns = np.nonzero(self.active[c])
            m = int(per_round // int(sizes[ns].sum()))
            for p, n in zip(ps, ns, strict=True):
                for q in self.draw_queries(m):
                    batch.append(PullRequest(self.problem.prompts[p], q, int(sizes[n])))
                    self._owner.append((c, int(p), int(n) + 1))  # (context, prompt, column + 1)
        return batch

    def _observe(self, batch: Sequence[PullRequest], estimates: NDArray[np.float64]) -> None:
        self._observe_estimates(batch, ArrayEstimates(estimates))

    def _observe_estimates(self, batch: Sequence[PullRequest], estimates: Estimates) -> None:
        for rows, block in estimates.blocks():
            for i, est in zip(rows.tolist(), block, strict=True):
                c, p, n = self._owner[i]
                self.stats.add_one(c, p, n, float(est[c, n - 1]))
        self.active = halve(self.active, self.stats.mean, self.problem.layout.tie_rank)
        self.round += 1
        self.trace.append(
            RoundTrace(
                self.round,
                {},
                {},
                sum(r.n for r in batch),
                {c.name: int(self.active[i].sum()) for i, c in enumerate(self.problem.contexts)},
            )
        )

    def candidates(self, context: int) -> NDArray[np.bool_]:
        return self.active[context] if self.round >= self.rounds else super().candidates(context)


class Triple(Algorithm):
    """TRIPLE: prompt-only optimisation, Sequential Halving over prompts at N = 1.

    ``n="one"`` returns (p*, 1); ``n="random"`` returns p* with N drawn uniformly from 1..N_max.
    """

    name: ClassVar[str] = "triple"

    class Params(AlgorithmParams):
        n: Literal["one", "random"] = "one"

    policy_params: ClassVar[frozenset[str]] = frozenset({"n"})

    def __init__(self, problem: Problem, budget: int, seed: int = 0, *, n: str = "one") -> None:
        if n not in ("one", "random"):
            raise ValueError("n must be 'one' or 'random'")
        super().__init__(problem, budget, seed)
        self.n_mode = n
        self.inner = PSST(_prompt_only(problem), budget, rng=self.rng)
        self._random_n: dict[str, int] | None = None

    def params(self) -> dict[str, Any]:
        return {"n": self.n_mode}

    @classmethod
    def min_budget(cls, problem: Problem, **params: Any) -> int:
        return PSST.min_budget(_prompt_only(problem))

    def _next(self) -> list[PullRequest]:
        return self.inner.ask()

    def _observe(self, batch: Sequence[PullRequest], estimates: NDArray[np.float64]) -> None:
        self._observe_estimates(batch, ArrayEstimates(estimates))

    def _observe_estimates(self, batch: Sequence[PullRequest], estimates: Estimates) -> None:
        self.inner.tell_estimates(estimates.head(1))
        self.stats.add(self.prompt_indices(batch), estimates)
        self.trace.append(self.inner.trace[-1])

    def absorb(self, results: Sequence[PullResult]) -> None:
        super().absorb(results)
        self.inner.absorb(results)

    def _set_policy_params(self, params: dict[str, Any]) -> None:
        if params.get("n", self.n_mode) not in ("one", "random"):
            raise ValueError("n must be 'one' or 'random'")
        self.n_mode = params.get("n", self.n_mode)
        self._random_n = None

    def policy(self) -> dict[str, Arm]:
        base = self.inner.policy()
        if self.n_mode == "one":
            return base
        if self._random_n is None:  # drawn once, so that policy() is the same on every call
            self._random_n = {
                c: int(self.rng.integers(1, self.problem.n_max + 1)) for c in sorted(base)
            }
        return {c: Arm(a.prompt, self._random_n[c]) for c, a in base.items()}

    def ranking(self, context: int) -> list[Arm]:
        return self.inner.ranking(context)


def _prompt_only(problem: Problem) -> Problem:
    """TRIPLE's inner problem: prompts at N = 1 (no adaptive arms: none has N_max' = 1)."""
    return replace(problem, n_max=1, adaptive=())


class _Sequential(Algorithm):
    """Shared machinery of UCB, ε-greedy and softmax: one pull per step for a random context;
    the pull of (p, n) informs every (p, k ≤ n) in every context.

    Conventions (they differ from textbook UCB1 and matter for the constants): ``steps`` counts
    every pull so far, whatever its context; an arm's count in a context counts every pull of
    (p, n' ≥ n), in any context, since each of them informs it; means are the context's own
    utilities (the problem's normalisation, weights and costs included).
    """

    one_pull_per_step: ClassVar[bool] = True

    def __init__(self, problem: Problem, budget: int, seed: int = 0) -> None:
        super().__init__(problem, budget, seed)
        self.steps = 0
        self._n = problem.layout.sizes  # each arm column's pull size
        self._valid = problem.layout.valid

    @classmethod
    def min_budget(cls, problem: Problem, **params: Any) -> int:
        return 1

    def _choose(self, context: int, affordable: NDArray[np.bool_]) -> tuple[int, int]:
        raise NotImplementedError

    def _next(self) -> list[PullRequest]:
        left = self.budget - self.spent
        if left < 1:
            return []
        c = int(self.rng.integers(len(self.problem.contexts)))
        fits = self._n[None, :] <= left
        if not self._valid.all():
            fits = fits & self._valid[None, :]
        affordable = np.broadcast_to(fits, self.stats.count.shape[1:])
        p, col = self._choose(c, affordable)
        n = int(self._n[col])
        return [PullRequest(self.problem.prompts[p], self.draw_queries(1)[0], n)]

    def _observe(self, batch: Sequence[PullRequest], estimates: NDArray[np.float64]) -> None:
        self.stats.add(self.prompt_indices(batch), estimates)
        self.steps += 1

    def _mean(self, context: int) -> NDArray[np.float64]:
        """One context's means (the full ``stats.mean`` would compute every context per step)."""
        count = self.stats.count[context]
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.stats.total[context] / np.maximum(count, 1)

    def _argmax(self, values: NDArray[np.float64], mask: NDArray[np.bool_]) -> tuple[int, int]:
        vals = np.where(mask, values, -np.inf)
        best = np.flatnonzero(vals == vals.max())
        flat = int(self.rng.choice(best))
        p, col = divmod(flat, values.shape[1])
        return p, col


class UCB(_Sequential):
    """UCB1 with exploration constant ``c`` (the paper: 0.1); untried arms first."""

    name: ClassVar[str] = "ucb"

    class Params(AlgorithmParams):
        c: Finite = Field(0.1, ge=0.0, le=1e6)

    def __init__(self, problem: Problem, budget: int, seed: int = 0, *, c: float = 0.1) -> None:
        super().__init__(problem, budget, seed)
        self.c = c

    def params(self) -> dict[str, Any]:
        return {"c": self.c}

    def _choose(self, context: int, affordable: NDArray[np.bool_]) -> tuple[int, int]:
        count = self.stats.count[context]
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = self.c * np.sqrt(math.log(self.steps + 1) / count)
        values = np.where(count > 0, self._mean(context) + bonus, np.inf)
        return self._argmax(values, affordable)


class EpsilonGreedy(_Sequential):
    """ε-greedy (the paper: ε = 0.15): a random affordable arm with probability ε, else the best."""

    name: ClassVar[str] = "epsilon_greedy"

    class Params(AlgorithmParams):
        epsilon: Finite = Field(0.15, ge=0.0, le=1.0)

    def __init__(
        self, problem: Problem, budget: int, seed: int = 0, *, epsilon: float = 0.15
    ) -> None:
        super().__init__(problem, budget, seed)
        self.epsilon = epsilon

    def params(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon}

    def _choose(self, context: int, affordable: NDArray[np.bool_]) -> tuple[int, int]:
        if self.rng.random() < self.epsilon:
            return self._argmax(np.zeros(affordable.shape), affordable)
        count = self.stats.count[context]
        values = np.where(count > 0, self._mean(context), np.inf)
        return self._argmax(values, affordable)


class Softmax(_Sequential):
    """Softmax (Boltzmann) exploration with temperature ``tau``: an untried affordable arm first
    (uniformly among them), else an affordable arm drawn with probability ∝ exp(mean / tau).

    ``tau`` → 0 is greedy (ties at random); ``tau`` large is uniform over affordable arms.
    ``tau`` is in the utilities' units: rescaled utilities need a rescaled ``tau``. The paper
    lists softmax among its baselines without a temperature we know of; the default 0.003 is
    tuned (benchmarks/tune_baselines.py, docs/bench/baseline-tuning.md).
    """

    name: ClassVar[str] = "softmax"

    class Params(AlgorithmParams):
        tau: Finite = Field(0.003, gt=0.0, le=1e6)

    def __init__(self, problem: Problem, budget: int, seed: int = 0, *, tau: float = 0.003) -> None:
        super().__init__(problem, budget, seed)
        self.tau = tau

    def params(self) -> dict[str, Any]:
        return {"tau": self.tau}

    def _choose(self, context: int, affordable: NDArray[np.bool_]) -> tuple[int, int]:
        untried = affordable & (self.stats.count[context] == 0)
        if untried.any():
            return self._argmax(np.zeros(affordable.shape), untried)
        logits = np.where(affordable, self._mean(context) / self.tau, -np.inf)
        weights = np.exp(logits - logits.max()).ravel()
        flat = int(self.rng.choice(weights.size, p=weights / weights.sum()))
        p, col = divmod(flat, affordable.shape[1])
        return p, col
