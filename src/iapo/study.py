"""Drive an algorithm against a backend through the sample bank, and return a frozen outcome.

Like an Optuna study with its storage, a :class:`Study` given a :class:`RunInfo` owns the run's
record in the bank: "running" while it runs, then "done", "stopped" (a cost cap or an infeasible
budget) or "interrupted" (any other exception, Ctrl-C included), with the completions spent.
"""

from __future__ import annotations

import asyncio
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from iapo.aio import gather_or_cancel
from iapo.algorithms import Algorithm
from iapo.backends import Backend
from iapo.bank import SampleBank
from iapo.errors import BudgetError
from iapo.fmt import finite_or_none
from iapo.sampling import CachedSampler
from iapo.types import Arm, PullRequest, PullResult, Sample

__all__ = [
    "Account",
    "ArmChoice",
    "ArmEstimate",
    "DataChangedWarning",
    "Finish",
    "Progress",
    "RunInfo",
    "Study",
    "StudyOutcome",
]


@dataclass
class Account:
    """Where the budget went. ``completions`` counts against the exploration budget; ``drawn`` is
    what the backend was actually asked for (the rest came from the bank)."""

    budget: int
    completions: int = 0
    drawn: int = 0
    cache_hits: int = 0
    cost: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    by_prompt: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, prompt: str, samples: Sequence[Sample], fresh: int) -> None:
        self.completions += len(samples)
        self.drawn += fresh
        self.cache_hits += len(samples) - fresh
        row = self.by_prompt.setdefault(
            prompt, {"completions": 0, "drawn": 0, "cost": 0.0, "pulls": 0}
        )
        row["completions"] += len(samples)
        row["drawn"] += fresh
        row["pulls"] += 1
        for s in samples:
            self.cost += s.cost
            row["cost"] += s.cost
            self.prompt_tokens += int(s.usage.get("prompt_tokens", 0))
            self.completion_tokens += int(s.usage.get("completion_tokens", 0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "completions": self.completions,
            "drawn": self.drawn,
            "cache_hits": self.cache_hits,
            "cost": self.cost,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "by_prompt": self.by_prompt,
        }


@dataclass(frozen=True)
class ArmChoice:
    """An arm with its estimated utility and 95 % interval."""

    arm: Arm
    q: float
    low: float
    high: float
    pulls: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.arm.prompt,
            "n": self.arm.n,
            "q": finite_or_none(self.q),
            "ci95": [finite_or_none(self.low), finite_or_none(self.high)],
            "observations": self.pulls,
        }


@dataclass(frozen=True)
class ArmEstimate:
    """The estimated utility of one arm in one context: mean, standard error, observations."""

    arm: Arm
    q: float
    sem: float
    observations: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.arm.prompt,
            "n": self.arm.n,
            "q": finite_or_none(self.q),
            "sem": finite_or_none(self.sem),
            "observations": self.observations,
        }


@dataclass(frozen=True)
class StudyOutcome:
    """What a finished study learned: per context the chosen arm, the runner-up and the
    estimate of every arm it observed; where the budget went; why it stopped early, if it did."""

    policy: Mapping[str, ArmChoice]
    runner_up: Mapping[str, ArmChoice | None]
    estimates: Mapping[str, tuple[ArmEstimate, ...]]
    account: Account
    algorithm: Algorithm
    stopped: str | None = None


@dataclass(frozen=True)
class RunInfo:
    """The run a study records in its bank: id, name, the configuration as JSON, and the
    identity of the data it samples (a replayed pool's :attr:`~iapo.pools.Pool.digest`; None
    for a live backend)."""

    run_id: str
    name: str
    config: Mapping[str, Any]
    data: str | None = None


class DataChangedWarning(UserWarning):
    """A run found the bank's earlier record of it (same id or name) built from other data."""


Progress = Callable[[Account, int], None]
#: ``finish(outcome)``: build (and write) the run's result; it is recorded with the final status.
Finish = Callable[["StudyOutcome"], Mapping[str, Any]]


class Study:
    """Runs ``algorithm`` to the end, sampling through ``bank`` then ``backend``.

    The i-th completion this study draws for (prompt, query) is sample index i of that
    distribution, so re-running the same configuration asks for the same indices and finds them
    all in the bank: resuming after a crash costs nothing already paid for.
    """

    def __init__(
        self,
        algorithm: Algorithm,
        backend: Backend,
        bank: SampleBank | None,
        *,
        cost_scale: float = 1.0,
        progress: Progress | None = None,
        cost_cap: float | None = None,
        run: RunInfo | None = None,
    ) -> None:
        if run is not None and bank is None:
            raise ValueError("a study that records its run needs a bank")
        self.algorithm = algorithm
        self.backend = backend
        self.bank = bank
        self.cost_scale = cost_scale
        self.progress = progress
        self.account = Account(algorithm.budget)
        self.cost_cap = cost_cap
        self.run_info = run
        self.stopped: str | None = None
        #: Set when the bank held this run (same id or name) built from other data (a warning).
        self.data_changed: str | None = None
        self._sampler = CachedSampler(backend, bank)
        self._used: dict[tuple[str, str], int] = {}
        self._gold: dict[str, str | None] = {}

    async def _pull(self, req: PullRequest) -> tuple[list[Sample], int]:
        key = (req.prompt, req.query)
        start = self._used.get(key, 0)
        self._used[key] = start + req.n
        return await self._sampler.draw(req.prompt, req.query, range(start, start + req.n))

    def _gold_of(self, query: str) -> str | None:
        if query not in self._gold:
            self._gold[query] = self.backend.gold(query)
        return self._gold[query]

    def _affordable(self, batch: Sequence[PullRequest]) -> int:
        """How many pulls of ``batch`` fit under the cost cap, counting each at its worst case
        before it is sent (so in-flight requests can never cross the cap)."""
        if self.cost_cap is None:
            return len(batch)
        reserved = self.account.cost
        for i, req in enumerate(batch):
            worst = self.backend.max_cost(req.prompt, req.query)
            if worst is None:
                raise RuntimeError("cost cap set but the backend cannot bound a completion's cost")
            if reserved + worst * req.n > self.cost_cap:
                return i
            reserved += worst * req.n
        return len(batch)

    async def _batch(self, batch: Sequence[PullRequest]) -> list[PullResult] | None:
        """The results of ``batch``, or None when the cost cap stops the run before its end (the
        affordable prefix is still drawn and banked, so raising the cap later reuses it)."""
        fits = self._affordable(batch)
        if fits < len(batch):
            outs = await gather_or_cancel([self._pull(r) for r in batch[:fits]])
            self.algorithm.absorb(self._results(batch[:fits], outs))
            self.stopped = (
                f"cost cap {self.cost_cap:g} reached: stopped before completing the batch "
                f"({self.account.cost:g} spent); the policy uses the data so far"
            )
            return None
        outs = await gather_or_cancel([self._pull(r) for r in batch])
        return self._results(batch, outs)

    def _results(
        self, batch: Sequence[PullRequest], outs: Sequence[tuple[list[Sample], int]]
    ) -> list[PullResult]:
        results = []
        for req, (samples, fresh) in zip(batch, outs, strict=True):
            self.account.add(req.prompt, samples, fresh)
            scaled = tuple(
                s
                if self.cost_scale == 1.0
                else Sample(s.answer, s.scores, s.cost * self.cost_scale)
                for s in samples
            )
            results.append(PullResult(req, scaled, self._gold_of(req.query)))
        return results

    async def arun(self) -> StudyOutcome:
        algo = self.algorithm
        round_no = 0
        while batch := algo.ask():
            results = await self._batch(batch)
            if results is None:
                break
            algo.tell(results)
            round_no += 1
            if self.progress is not None:
                self.progress(self.account, round_no)
        if self.stopped and not (algo.stats.count > 0).any(axis=(1, 2)).all():
            raise BudgetError(
                f"the cost cap ({self.cost_cap:g}) stopped the run before every context had an "
                "estimate: raise cost.cap (what was drawn is banked and will be reused)",
                field="cost.cap",
            )
        return self.outcome()

    def run(self, *, close_backend: bool = False, finish: Finish | None = None) -> StudyOutcome:
        """Run to the end in a fresh event loop (closing the backend there, if asked), keeping
        the run record up to date.

        ``finish(outcome)``, if given, builds the result (and writes its files) before the run
        is marked ``done``; the record's status, spend and result are then set in one write. A
        failure or kill before that leaves the run ``interrupted`` (or ``running``), never
        ``done`` next to a missing or older result.
        """

        async def main() -> StudyOutcome:
            try:
                return await self.arun()
            finally:
                if close_backend:
                    await self.backend.aclose()

        self._record(status="running")
        try:
            outcome = asyncio.run(main())
            result = dict(finish(outcome)) if finish is not None else None
        except BudgetError:
            self._record(status="stopped")
            raise
        except BaseException:
            self._record(status="interrupted")
            raise
        self._record(status="stopped" if self.stopped else "done", result=result)
        return outcome

    def save_result(self, result: Mapping[str, Any]) -> None:
        """Keep the finished run's result (JSON) with its record."""
        if self.run_info is not None and self.bank is not None:
            self.bank.update_run(self.run_info.run_id, result=dict(result))

    def _record(self, *, status: str, result: dict[str, Any] | None = None) -> None:
        info, bank = self.run_info, self.bank
        if info is None or bank is None:
            return
        if status == "running":
            self._check_data(info, bank)
            bank.start_run(
                info.run_id, info.name, self.algorithm.budget, dict(info.config), info.data
            )
        else:
            bank.update_run(
                info.run_id, status=status, spent=self.account.completions, result=result
            )

    def _check_data(self, info: RunInfo, bank: SampleBank) -> None:
        """Say (a :class:`DataChangedWarning`, and :attr:`data_changed`) when the bank recorded
        this run, by id or else by name, with another data identity. Its samples are keyed by
        the data's content, so none of them is reused; the warning explains a changed result."""
        if info.data is None:
            return
        recs = bank.runs()
        same = [r for r in recs if r["id"] == info.run_id] or [
            r for r in recs if r["name"] == info.name
        ]
        old = [r for r in same if r.get("data") not in (None, info.data)]
        if not old:
            return
        prev = max(old, key=lambda r: r["updated"])
        self.data_changed = (
            f"run {info.name!r} was recorded in {bank.url} from other data (content "
            f"{prev['data'][:12]}, now {info.data[:12]}): the pool changed, so none of its "
            "samples is reused and results may differ from that run's"
        )
        warnings.warn(self.data_changed, DataChangedWarning, stacklevel=4)

    def outcome(self) -> StudyOutcome:
        algo = self.algorithm
        mean, sem, count = algo.stats.mean, algo.stats.sem, algo.stats.count
        prompts = algo.problem.prompts

        def choice(ci: int, arm: Arm) -> ArmChoice:
            pi, k = prompts.index(arm.prompt), arm.n - 1
            m, s = float(mean[ci, pi, k]), float(sem[ci, pi, k])
            half = 1.96 * s if math.isfinite(s) else math.nan
            return ArmChoice(arm, m, m - half, m + half, int(count[ci, pi, k]))

        policy: dict[str, ArmChoice] = {}
        runner: dict[str, ArmChoice | None] = {}
        estimates: dict[str, tuple[ArmEstimate, ...]] = {}
        final = algo.policy()
        for ci, c in enumerate(algo.problem.contexts):
            policy[c.name] = choice(ci, final[c.name])
            others = [a for a in algo.finalists(ci) if a != final[c.name]]
            runner[c.name] = choice(ci, others[0]) if others else None
            ps, ks = np.nonzero(count[ci] > 0)  # prompt-major, then N: the table's order
            estimates[c.name] = tuple(
                ArmEstimate(
                    Arm(prompts[p], int(k) + 1),
                    float(mean[ci, p, k]),
                    float(sem[ci, p, k]),
                    int(count[ci, p, k]),
                )
                for p, k in zip(ps, ks, strict=True)
            )
        return StudyOutcome(policy, runner, estimates, self.account, algo, self.stopped)
