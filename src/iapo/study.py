"""Drive an algorithm against a backend through the sample bank, and return a frozen outcome.

Like an Optuna study with its storage, a :class:`Study` given a :class:`RunInfo` owns the run's
record in the bank: "running" while it runs, then "done", "stopped" (a cost cap or an infeasible
budget) or "interrupted" (any other exception, Ctrl-C included), with the completions spent.

A ``reproducible`` backend (a replayed pool) is sampled a round at a time: one bank read, the
missing samples drawn in process, the new ones written :data:`~iapo.bank.WRITE_BATCH` rows per
transaction (and at the end of the round, or when it fails): a crash loses at most the rows not
yet written, which a resumed run draws again, identically. Other backends go through a
:class:`Sampler` pull by pull (a :class:`~iapo.sampling.CachedSampler`, each completion banked
as it arrives, unless a distributed run gives its own, which publishes pulls to workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from iapo.aio import gather_or_cancel
from iapo.aio import run as run_loop
from iapo.algorithms import Algorithm
from iapo.backends import Backend
from iapo.bank import WRITE_BATCH, SampleBank
from iapo.errors import BudgetError
from iapo.fmt import amount
from iapo.outcome import Account, ArmChoice, ArmEstimate, StudyOutcome
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
    "Sampler",
    "Study",
    "StudyOutcome",
]

_MEMO = 65536  # samples whose scaled copy a study keeps before it starts over


@dataclass(frozen=True)
class RunInfo:
    """The run a study records in its bank: id, name, the configuration as JSON, and the
    identity of the data it samples (a replayed pool's :attr:`~iapo.pools.Pool.digest`; None
    for a live backend)."""

    run_id: str
    name: str
    config: Mapping[str, Any]
    data: str | None = None


class Sampler(Protocol):
    async def draw(self, p: str, q: str, idx: Sequence[int], /) -> tuple[list[Sample], int]:
        """Completions ``indices`` of (prompt, query), in order, and how many were drawn new."""


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
        write_batch: int = WRITE_BATCH,
        sampler: Sampler | None = None,
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
        self._sampler: Sampler = sampler if sampler is not None else CachedSampler(backend, bank)
        self._used: dict[tuple[str, str], int] = {}
        self._anomalies_before: dict[str, int] = {}
        self._committed = 0.0  # under a cost cap: spent + in-flight pulls at their worst case
        self._gate: asyncio.Semaphore | None = None
        self._gold: dict[str, str | None] = {}
        self.write_batch = max(1, write_batch)
        self._keys: dict[tuple[str, str], str] = {}  # (prompt, query) -> distribution key
        self._scaled: dict[int, tuple[Sample, Sample]] = {}  # id(s) -> (s, s scaled)

    def _indices(self, req: PullRequest) -> range:
        """The sample indices of a pull: the next ``n`` of its (prompt, query)."""
        start = self._used.get((req.prompt, req.query), 0)
        self._used[(req.prompt, req.query)] = start + req.n
        return range(start, start + req.n)

    async def _pull(self, req: PullRequest) -> tuple[list[Sample], int]:
        return await self._sampler.draw(req.prompt, req.query, self._indices(req))

    def _gold_of(self, query: str) -> str | None:
        if query not in self._gold:
            self._gold[query] = self.backend.gold(query)
        return self._gold[query]

    def _worst(self, req: PullRequest) -> float:
        worst = self.backend.max_cost(req.prompt, req.query)
        if worst is None:
            raise RuntimeError("cost cap set but the backend cannot bound a completion's cost")
        return worst * req.n

    def _affordable(self, batch: Sequence[PullRequest]) -> int:
        """How many pulls of ``batch`` fit under the cost cap, counting each at its worst case
        before it is sent (so in-flight requests can never cross the cap)."""
        if self.cost_cap is None:
            return len(batch)
        reserved = self.account.cost
        for i, req in enumerate(batch):
            worst = self._worst(req)
            if reserved + worst > self.cost_cap:
                return i
            reserved += worst
        return len(batch)

    async def _metered(self, req: PullRequest) -> tuple[list[Sample], int] | None:
        """The pull, or None if it was not sent because the cap could no longer hold it.

        Under a cost cap at most ``backend.concurrency`` pulls are in flight; each is reserved at
        its worst case when it is sent and booked at its reported cost when it returns. A pull
        whose worst case no longer fits next to what is booked and reserved is skipped: with an
        honest endpoint that never happens (the batch was cut to fit), with one reporting usage
        above the worst case the run stops as soon as the account reaches the cap, and only the
        pulls already in flight then can add to it."""
        if self.cost_cap is None or self._gate is None:
            return await self._pull(req)
        worst = self._worst(req)
        async with self._gate:
            if self._committed + worst > self.cost_cap * (1 + 1e-12):
                return None
            self._committed += worst
            out = await self._pull(req)
            self._committed += sum(s.cost for s in out[0]) - worst
            return out

    async def _batch(self, batch: Sequence[PullRequest]) -> list[PullResult] | None:
        """The results of ``batch``, or None when the cost cap stops the run before its end (the
        pulls that were drawn are still banked and absorbed, so raising the cap later reuses
        them)."""
        fits = self._affordable(batch)
        self._committed = self.account.cost
        if self.backend.reproducible and self.cost_cap is None:
            outs: list[tuple[list[Sample], int] | None] = list(await self._round(batch))
        else:
            outs = await gather_or_cancel([self._metered(r) for r in batch[:fits]])
        done = [(r, o) for r, o in zip(batch[:fits], outs, strict=True) if o is not None]
        results = self._results([r for r, _ in done], [o for _, o in done])
        self._note_anomalies()
        if len(done) == len(batch):
            return results
        self.algorithm.absorb(results)
        assert self.cost_cap is not None  # only a cap leaves pulls undrawn
        over = self.account.cost > self.cost_cap
        self.stopped = (
            f"cost cap {amount(self.cost_cap)} reached: stopped before completing the batch "
            f"({amount(self.account.cost)} spent"
            + (
                ": the endpoint reported more usage than its requests' worst case, see the "
                "account's anomalies"
                if over
                else ""
            )
            + "); the policy uses the data so far"
        )
        return None

    async def _round(self, batch: Sequence[PullRequest]) -> list[tuple[list[Sample], int]]:
        """A round of a reproducible backend: one bank read, what is missing drawn and written
        ``write_batch`` rows per transaction (also when the round fails)."""
        bank, backend = self.bank, self.backend
        wanted: list[tuple[str, range]] = []  # (distribution key, sample indices) per pull
        for req in batch:
            if (key := (req.prompt, req.query)) not in self._keys:
                self._keys[key] = backend.cache_key(*key)
            wanted.append((self._keys[key], self._indices(req)))
        found = await asyncio.to_thread(bank.get_many, wanted) if bank is not None else None
        same = type(backend).recost is Backend.recost  # replay: costs as recorded
        keep = self.cost_scale == 1.0  # else the algorithm gets copies without texts: none restored
        outs, writing = [], None  # at most one write in flight while the next rows are drawn
        write = bank.writer(self.write_batch, texts=False) if bank is not None else None
        with write if write is not None else contextlib.nullcontext():
            for j, (req, (dist, idx)) in enumerate(zip(batch, wanted, strict=True)):
                p, q, have = req.prompt, req.query, found[j] if found is not None else {}
                missing = [i for i in idx if i not in have] if have else idx
                drawn = await backend.sample(p, q, missing) if missing else []
                if len(drawn) != len(missing):
                    raise RuntimeError(f"backend returned {len(drawn)} of {len(missing)} samples")
                new = list(zip(missing, drawn, strict=True))
                if write is not None and new and write.add(dist, p, q, new):
                    if writing is not None:
                        await writing
                    writing = asyncio.ensure_future(asyncio.to_thread(write.write, write.take()))
                if have:
                    got = (
                        {i: backend.restore(p, q, i, s) for i, s in have.items()} if keep else have
                    )
                    got.update(new)
                    drawn = [got[i] for i in idx]
                outs.append((drawn if same else [backend.recost(s) for s in drawn], len(missing)))
            if writing is not None:
                await writing
        return outs

    def _scale(self, s: Sample) -> Sample:
        """``s`` as the algorithm sees it: its cost scaled by ``cost_scale`` (made once per
        sample object: replayed samples are a pool's own, repeated)."""
        got = self._scaled.get(id(s))
        if got is None or got[0] is not s:  # holding ``s`` keeps its id from being reused
            if len(self._scaled) >= _MEMO:
                self._scaled.clear()
            got = self._scaled[id(s)] = (s, Sample(s.answer, s.scores, s.cost * self.cost_scale))
        return got[1]

    def _note_anomalies(self) -> None:
        """The account's anomalies: what the backend counted since the run began."""
        now = self.backend.anomalies
        self.account.anomalies = {
            k: v - self._anomalies_before.get(k, 0)
            for k, v in now.items()
            if v - self._anomalies_before.get(k, 0) > 0
        }

    def _results(
        self, batch: Sequence[PullRequest], outs: Sequence[tuple[list[Sample], int]]
    ) -> list[PullResult]:
        results, k = [], self.cost_scale
        for req, (samples, fresh) in zip(batch, outs, strict=True):
            self.account.add(req.prompt, samples, fresh)
            if k == 1.0:
                scaled = tuple(samples)
            elif self.backend.reproducible:  # a pool's own samples, or the bank's shared ones
                scaled = tuple(map(self._scale, samples))
            else:  # samples of their own (a live backend's)
                scaled = tuple(Sample(s.answer, s.scores, s.cost * k) for s in samples)
            results.append(PullResult(req, scaled, self._gold_of(req.query)))
        return results

    async def arun(self) -> StudyOutcome:
        algo = self.algorithm
        self._anomalies_before = dict(self.backend.anomalies)
        if self.cost_cap is not None:
            self._gate = asyncio.Semaphore(max(1, self.backend.concurrency))
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
                f"the cost cap ({amount(self.cost_cap)}) stopped the run before every context had "
                "an estimate: raise cost.cap (what was drawn is banked and will be reused)",
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
            outcome = run_loop(main())
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
        prompts, lay = algo.problem.prompts, algo.problem.layout

        def choice(ci: int, arm: Arm) -> ArmChoice:
            pi, k = prompts.index(arm.prompt), lay.column(arm)
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
                    lay.arm(prompts[p], int(k)),
                    float(mean[ci, p, k]),
                    float(sem[ci, p, k]),
                    int(count[ci, p, k]),
                )
                for p, k in zip(ps, ks, strict=True)
            )
        return StudyOutcome(policy, runner, estimates, self.account, algo, self.stopped)
