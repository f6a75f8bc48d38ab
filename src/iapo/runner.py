"""The entry points: ``run`` (learn a policy), ``evaluate`` (exact ground truth on a pool) and
``preflight`` (the schedule and spend before anything is drawn)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from iapo.algorithms import Algorithm
from iapo.backends import Backend
from iapo.bank import WRITE_BATCH, SampleBank, mask_url, open_bank
from iapo.config import RunConfig
from iapo.distributed import DistributedSampler, Monitor, query_inputs
from iapo.errors import ConfigError, InputError, PoolError
from iapo.evaluation import Evaluation, policy_evaluation
from iapo.fmt import count
from iapo.result import RunResult, versions
from iapo.setups import LiveSetup, ReplaySetup, Setup, setup
from iapo.study import Progress, RunInfo, Sampler, Study, StudyOutcome
from iapo.types import Arm, PullResult, Sample

__all__ = ["evaluate", "preflight", "run"]

ConfigLike = RunConfig | str | Path | Setup


def _setup(config: ConfigLike, **kw: Any) -> Setup:
    return config if isinstance(config, Setup) else setup(config, **kw)


def run(
    config: ConfigLike,
    *,
    budget: int | None = None,
    progress: Progress | None = None,
    backend: Backend | None = None,
    algorithm: Algorithm | None = None,
    run_dir: str | Path | None = None,
    storage: str | None = None,
    write: bool = True,
    monitor: Monitor | None = None,
) -> RunResult:
    """Run the configured algorithm to the end and return its :class:`RunResult`.

    ``backend`` and ``algorithm`` replace the configured ones (an algorithm instance must solve
    the setup's problem: build it from ``iapo.setup(config).problem``). Writes the sample bank
    and ``result.json`` to the run directory (``write=False``: only the bank). Re-running the
    same config re-uses every stored completion.

    With ``execution: {mode: distributed}`` the pulls are published as tasks in the bank for
    ``iapo worker`` processes, and ``monitor(task_counts, workers)`` (if given) is told of them
    now and then (:class:`~iapo.distributed.DistributedSampler`).
    """
    s = _setup(config, run_dir=run_dir, storage=storage)
    algo = algorithm if algorithm is not None else s.make_algorithm(budget)
    algo.check_budget()
    owns_backend = backend is None
    if backend is None:
        backend = s.make_backend()
    cap = s.config.cost.cap
    if cap is not None and backend.max_cost(s.prompts[0], s.train[0]) is None:
        raise ConfigError(
            "cost.cap needs a bound on each completion's cost: set backend.params.max_tokens",
            source=s.source,
            field="cost.cap",
        )
    try:
        if write:
            _check_writable(s.run_dir)
        bank = open_bank(s.storage)
    except InputError as exc:
        raise exc.within(s.source) from None
    t0 = time.perf_counter()
    data = s.pool.digest if isinstance(s, ReplaySetup) else None
    results: list[RunResult] = []
    with bank:
        sampler = _distributed(s, backend, bank, monitor)
        info = RunInfo(s.run_id, s.config.name, s.config.model_dump(mode="json"), data)
        # a replayed pool's samples are written ~WRITE_BATCH rows per transaction and at the end
        # of every round (a crash loses only what a resumed run re-draws identically); a live
        # backend's completions are banked one by one as they arrive
        study = Study(
            algo,
            backend,
            bank,
            cost_scale=s.cost_scale,
            progress=progress,
            cost_cap=cap,
            run=info,
            write_batch=WRITE_BATCH,
            sampler=sampler,
        )

        def finish(outcome: StudyOutcome) -> dict[str, Any]:
            # result.json is written (and synced) before the bank marks the run done
            result = _result(s, outcome, backend.name, time.perf_counter() - t0)
            result.extra.update(data=data, data_changed=study.data_changed)
            if write:
                result.save(s.run_dir)
            results.append(result)
            return result.to_dict()

        try:
            study.run(close_backend=owns_backend, finish=finish)
        finally:
            if sampler is not None:  # a stopped or failed run leaves no work for the workers
                bank.cancel_tasks(s.run_id)
    return results[0]


def _distributed(
    s: Setup, backend: Backend, bank: SampleBank, monitor: Monitor | None
) -> Sampler | None:
    """A distributed run's sampler, after clearing what an earlier driver of the run left
    queued (it is published again if still missing) and keeping the queries for the workers;
    None for a local run."""
    ex = s.config.execution
    if ex.mode != "distributed":
        return None
    if not isinstance(s, LiveSetup) or bank.url == "memory:":
        raise ConfigError(
            "distributed sampling needs a live backend and a bank the workers can open "
            "(sqlite:///path or a database URL), not memory:",
            source=s.source,
            field="execution.mode",
        )
    bank.cancel_tasks(s.run_id)
    bank.put_run_inputs(s.run_id, query_inputs(s.queries))
    return DistributedSampler(
        backend,
        bank,
        s.run_id,
        max_attempts=ex.max_attempts,
        poll=ex.poll,
        monitor=monitor,
    )


def _result(s: Setup, outcome: StudyOutcome, backend: str, elapsed: float) -> RunResult:
    policy = {}
    for c in s.contexts:
        chosen = outcome.policy[c.name].to_dict()
        ru = outcome.runner_up[c.name]
        chosen["runner_up"] = ru.to_dict() if ru else None
        policy[c.name] = chosen
    evaluation = None
    estimates = {c: [e.to_dict() for e in rows] for c, rows in outcome.estimates.items()}
    if isinstance(s, ReplaySetup) and s.test:
        arms = {c: Arm(v["prompt"], v["n"], v.get("adaptive", "")) for c, v in policy.items()}
        exact = evaluate(s, split="test")
        evaluation = policy_evaluation(exact, arms)
        for name, v in policy.items():  # an adaptive arm's exact expected samples (test split)
            if v.get("adaptive"):
                v["expected_samples"] = evaluation["contexts"][name]["expected_samples"]
        for e in (e for rows in estimates.values() for e in rows if e.get("adaptive")):
            e["expected_samples"] = exact.expected_samples(Arm(e["prompt"], e["n"], e["adaptive"]))
    algo = outcome.algorithm
    return RunResult(
        run_id=s.run_id,
        name=s.config.name,
        algorithm=algo.name,
        strategy=s.strategy.name,
        seed=s.config.seed,
        policy=policy,
        estimates=estimates,
        account=outcome.account.to_dict(),
        trace=[t.__dict__ for t in algo.trace],
        contexts=[c.to_dict() for c in s.contexts],
        prompts=list(s.prompts),
        n_max=s.config.n_max,
        evaluation=evaluation,
        versions=versions(),
        config=s.config.model_dump(mode="json"),
        elapsed_s=elapsed,
        run_dir=str(s.run_dir),
        storage=mask_url(s.storage),  # never a password in result.json or the report
        extra={
            "cost_scale": s.cost_scale,
            "cost_unit": s.cost_unit,
            "stopped": outcome.stopped,
            "config_dir": str((s.config_path.parent if s.config_path else Path.cwd()).resolve()),
            "train_queries": len(s.train),
            "test_queries": len(s.test),
            "backend": backend,
        },
    )


def _check_writable(run_dir: Path) -> None:
    """Fail before anything is spent if the run directory cannot take the result."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".iapo-write-check.", dir=run_dir)  # unique: runs
        os.close(fd)  # of one config may start at once
        os.unlink(probe)
    except OSError as exc:
        raise InputError(
            f"the run directory is not writable ({exc.strerror}): choose another run_dir",
            source=str(run_dir),
            field="run_dir",
        ) from None


def evaluate(config: ConfigLike, *, split: str = "test") -> Evaluation:
    """Exact Q table on the pool's ``test`` split (or ``train``, or ``all`` queries)."""
    s = _setup(config)
    if not isinstance(s, ReplaySetup):
        raise PoolError(
            "evaluate needs a pool with recorded samples: record one with "
            "`iapo record CONFIG -k 8 --out pool.jsonl` and replay it with 'pool'",
            source=s.source,
            field="pool",
        )
    if split not in ("test", "all", "train"):
        raise ConfigError("split must be 'test', 'train' or 'all'", field="split")
    qs = {"test": s.test, "train": s.train, "all": s.pool.queries}[split]
    if not qs:
        qs, split = s.pool.queries, "all"
    scaled = s.pool.scale_costs(s.cost_scale)
    label = f"{split} ({count(len(qs), 'query')})"
    args = (scaled, s.strategy, s.contexts, s.config.n_max, qs, s.prompts, label)
    return Evaluation.from_pool(*args, adaptive=s.problem.adaptive)


def preflight(config: ConfigLike, *, budget: int | None = None) -> dict[str, Any]:
    """The schedule and spend of a run before anything is drawn.

    The algorithm is dry-run on uninformative samples (no bank; the backend only prices the
    requests, it samples nothing): the first round is exact; later rounds depend on which arms
    survive, so their sizes, and ``expected_cost`` (the dry run at the pool's mean costs; None for
    a live backend), are estimates. ``max_cost`` is a true upper bound on what the run can
    spend: the budget × the costliest completion any training cell can yield (a pool's costliest
    sample, a live backend's ``max_tokens`` worst case), or ``cost.cap`` when that is lower; None
    when nothing bounds a completion's cost. (A live endpoint that reports more usage than the
    request allows breaks any bound; the run stops at the cap all the same.)
    """
    s = _setup(config)
    algo = s.make_algorithm(budget)
    backend = s.make_backend()
    min_budget = type(algo).min_budget(algo.problem, **algo.params())
    rounds: list[dict[str, Any]] = []
    mean_cost = s.mean_costs()
    fake = Sample(answer=None, scores={o: 0.0 for o in s.strategy.objectives})
    worst = _costliest_completion(backend, s.prompts, s.train)
    schedule = algo.schedule()
    while batch := algo.ask():
        rounds.append(
            {
                "round": len(rounds) + 1,
                "prompts": len({r.prompt for r in batch}),
                "pulls": len(batch),
                "n_min": min(r.n for r in batch),
                "n_max": max(r.n for r in batch),
                "queries": len({r.query for r in batch}),
                "completions": sum(r.n for r in batch),
                "expected_cost": sum(r.n * mean_cost[r.prompt] for r in batch)
                if mean_cost
                else None,
            }
        )
        algo.tell([PullResult(r, (fake,) * r.n, None) for r in batch])
    most = type(algo).max_spend(algo.problem, algo.budget, **algo.params())
    return {
        "algorithm": algo.name,
        "schedule": schedule,
        "budget": algo.budget,
        "completions": algo.spent,
        "rounds": rounds,
        "expected_cost": sum(r["expected_cost"] for r in rounds) if mean_cost else None,
        "cost_unit": s.cost_unit,
        "arms": len(s.problem.arms),  # adaptive arms (issue #15) included
        "contexts": len(s.contexts),
        "min_budget": min_budget,
        "max_cost_per_completion": worst,
        "max_completions": most,
        "max_cost": _spend_bound(most, worst, s.config.cost.cap),
        "cost_cap": s.config.cost.cap,
    }


def _costliest_completion(
    backend: Backend, prompts: tuple[str, ...], queries: tuple[str, ...]
) -> float | None:
    """The largest cost one completion of any (prompt, training query) cell can have (None: some
    cell's cost is unbounded)."""
    top = 0.0
    for p in prompts:
        for q in queries:
            w = backend.max_cost(p, q)
            if w is None:
                return None
            top = max(top, float(w))
    return top


def _spend_bound(budget: int, worst: float | None, cap: float | None) -> float | None:
    """What a run can spend at most: it draws at most ``budget`` completions (the algorithm's
    ``max_spend``), none costs more than ``worst``, and the cost cap reserves each pull at its
    worst case."""
    bound = None if worst is None else budget * worst
    if cap is not None:
        bound = cap if bound is None else min(bound, cap)
    return bound
