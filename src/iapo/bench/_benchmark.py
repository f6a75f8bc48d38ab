"""``run_benchmark``: the paper's protocol on one environment, with its summary."""

from __future__ import annotations

import math
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from iapo.adaptive import adaptive_ids
from iapo.algorithms import AlgorithmEntry, registry
from iapo.bench._envs import Environment, build_environment
from iapo.bench._protocol import (
    ADAPTIVE_SUFFIX,
    DEFAULT_ALGORITHMS,
    DEFAULT_BUDGETS,
    TEST_FRACTION,
    default_reference,
    execute_runs,
    feasible_budgets,
)
from iapo.bench._ray import EXECUTORS, execute_runs_ray
from iapo.bench._report import summarise
from iapo.bench._result import BenchResult
from iapo.bench._sim import encode_pool
from iapo.errors import ConfigError
from iapo.estimators import check_tie_credit
from iapo.strategies import TIE_CREDITS, MajorityVote
from iapo.version import __version__

__all__ = ["QUICK_RUNS", "run_benchmark"]

QUICK_RUNS = 6


def _progress_printer(name: str) -> Callable[[int, int, float], None]:
    tty = sys.stderr.isatty()
    last = [-1.0]

    def show(done: int, total: int, elapsed: float) -> None:
        eta = elapsed / done * (total - done) if done else math.nan
        msg = f"[{name}] run {done}/{total}, {elapsed:.0f} s elapsed, about {eta:.0f} s left"
        if tty:
            print("\r" + msg, end="\n" if done == total else "", file=sys.stderr, flush=True)
        elif done == total or elapsed - last[0] >= 30:
            last[0] = elapsed
            print(msg, file=sys.stderr, flush=True)

    return show


def _quick_budgets(specs: Sequence[AlgorithmEntry], need: Mapping[str, int]) -> tuple[int, ...]:
    ref = "psst" if "psst" in need else specs[0].name
    ok = [b for b in DEFAULT_BUDGETS if b >= need[ref]]
    return tuple(ok[:2]) if len(ok) >= 2 else DEFAULT_BUDGETS[-2:]


def _check_cost_options(
    weights: Sequence[float] | None, normalize: str | None
) -> tuple[float, ...] | None:
    """The cost weights as floats (None: the environment's); a ConfigError naming the bad
    value."""
    if normalize is not None and normalize not in ("none", "max"):
        raise ConfigError(
            f"--cost-normalize: {normalize!r} is not none or max", field="cost_normalize"
        )
    if weights is None:
        return None
    out = tuple(float(w) for w in weights)
    if not out:
        raise ConfigError("--cost-weights: give at least one weight (e.g. 0,0.2,1)")
    for w in out:
        if not (math.isfinite(w) and 0.0 <= w <= 1e6):
            raise ConfigError(
                f"--cost-weights: {w!r} must be a number from 0 to 1000000 (e.g. 0,0.2,1)"
            )
    if len(set(out)) != len(out):
        raise ConfigError("--cost-weights: a weight is listed twice (each names a context)")
    return out


def _objective_note(e: Environment, weights: Sequence[float] | None, normalize: str | None) -> str:
    """What the cost options changed, for the environment's description."""
    parts = []
    if weights is not None:
        parts.append("cost weights " + ", ".join(f"{w:g}" for w in weights))
    if normalize == "none":
        parts.append(f"costs as recorded ({e.pool.cost_unit}, not normalised)")
    elif normalize == "max":
        parts.append(f"costs divided by the pool's largest (× {e.cost_scale:.6g})")
    return f"; here: {', '.join(parts)}" if parts else ""


def _with_tie_credit(e: Environment, tie_credit: str | None) -> Environment:
    """``e`` with majority vote's tie rule set (None: the environment's own, 1/t); its
    description says when the rule is not the default. A ConfigError for a value not in
    :data:`~iapo.strategies.TIE_CREDITS` or for a Best-of-N environment."""
    if tie_credit is None:
        return e
    try:
        rule = check_tie_credit(tie_credit)
    except ValueError:
        raise ConfigError(
            f"--tie-credit: {tie_credit!r} is not {' or '.join(TIE_CREDITS)}", field="tie_credit"
        ) from None
    if not isinstance(e.strategy, MajorityVote):
        raise ConfigError(
            f"--tie-credit applies to majority-vote environments: {e.name} is "
            f"{e.strategy.name}; drop it",
            field="tie_credit",
        )
    if rule == e.strategy.tie_credit:
        return e
    note = {
        "half": "; here: majority-vote ties credited 0.5 (tie_credit half, as the paper's "
        "released code reportedly does) instead of 1/t",
        "fractional": "; here: majority-vote ties credited 1/t (tie_credit fractional)",
    }[rule]
    return replace(e, strategy=MajorityVote(tie_credit=rule), description=e.description + note)


def _adaptive_ids(e: Environment, rules: Sequence[str] | None, batch: int) -> tuple[str, ...]:
    """The adaptive arm ids of ``--adaptive`` (empty: none); a ConfigError naming the fix."""
    if not rules:
        return ()
    if not isinstance(e.strategy, MajorityVote):
        raise ConfigError(
            f"--adaptive applies to majority-vote environments: {e.name} is {e.strategy.name}; "
            "drop it",
            field="adaptive",
        )
    try:
        return adaptive_ids(rules, batch)
    except ValueError as exc:
        raise ConfigError(f"--adaptive: {exc}", field="adaptive") from None


def _can_adapt(spec: AlgorithmEntry) -> bool:
    """Whether ``spec`` can run over adaptive arms: the ustat estimator, and arms it ranks by
    their estimates (TRIPLE ranks prompts at N = 1 only; ``psst_paper`` uses blocks)."""
    return spec.estimator in (None, "ustat") and spec.cls.name not in ("psst_paper", "triple")


def _twin(spec: AlgorithmEntry) -> AlgorithmEntry:
    """``spec`` over the adaptive arms too, in its seed group (paired with it)."""
    return replace(
        spec,
        name=spec.name + ADAPTIVE_SUFFIX,
        title=(spec.title or spec.name) + " + adaptive arms",
        group=spec.group or spec.name,
        adaptive=True,
    )


def run_benchmark(
    env: str | Environment,
    *,
    algorithms: Sequence[str] | None = None,
    budgets: Sequence[int] | None = None,
    runs: int | None = None,
    runs_for: Mapping[str, int] | None = None,
    seed: int = 0,
    env_seed: int = 0,
    workers: int = 2,
    quick: bool = False,
    shared: str | Path | None = None,
    n_max: int | None = None,
    progress: bool | Callable[[int, int, float], None] = False,
    command: str | None = None,
    cost_weights: Sequence[float] | None = None,
    cost_normalize: str | None = None,
    reference: str | None = None,
    tie_credit: str | None = None,
    executor: str = "process",
    address: str | None = None,
    adaptive: Sequence[str] | None = None,
    adaptive_batch: int = 1,
) -> BenchResult:
    """Run the protocol on ``env`` (a name from :data:`ENVIRONMENTS`, a pool file, or an
    :class:`Environment`) and return every run's numbers with their summary.

    ``runs`` defaults to 200 (``quick``: 6, and two budgets: the two smallest default budgets
    PSST can run with). ``runs_for`` caps the runs of some algorithms (label → runs, the first
    ones: pairing with PSST stays by run). Budgets below an algorithm's minimum are recorded as
    infeasible.

    ``cost_weights`` (the contexts' cost weights, e.g. ``(0, 0.2, 1)``) and ``cost_normalize``
    ("max": costs divided by the pool's largest, the default; "none": the recorded costs) set
    the objective of a pool environment (not a synthetic one, whose contexts are fixed); both
    are recorded in the result's ``protocol`` and ``env``.

    ``reference``: the benchmarked algorithm the paired Wilcoxon tests and the plot's difference
    panel compare against (default: ``psst_any`` when it is benchmarked, else ``psst`` when it
    is, else none).

    ``tie_credit``: majority vote's credit for a tie at the top that includes gold, "fractional"
    (1/t, the default) or "half" (0.5, the paper's released code); it applies to the ground
    truth and the estimators alike, is recorded in ``protocol`` and, when not the default, in
    the environment's description. A Best-of-N environment refuses it.

    ``executor``: "process" (a local process pool of ``workers``, the default) or "ray" (Ray
    tasks: a local instance with ``workers`` CPUs, or the cluster at ``address``; the optional
    ``ray`` extra). Both give the same numbers.
    ``adaptive``: stopping rules (e.g. ``("decided", "beta:0.95")``, batch ``adaptive_batch``)
    of adaptive majority-vote arms (issue #15): every algorithm that can use them (not
    ``psst_paper``, the blocks-estimator ablations or TRIPLE) also runs as ``<label>+adaptive``
    on the arm set extended with them, paired with its fixed-arm self (same seeds); each run
    records the expected samples of the chosen arms on test (``samples``).
    """
    t0 = time.perf_counter()
    if executor not in EXECUTORS:
        raise ConfigError(
            f"--executor: {executor!r} is not {' or '.join(EXECUTORS)}", field="executor"
        )
    if address is not None and executor != "ray":
        raise ConfigError("--address applies to --executor ray: add it or drop --address")
    weights = _check_cost_options(cost_weights, cost_normalize)
    if isinstance(env, Environment):
        if weights is not None or cost_normalize is not None:
            raise ConfigError(
                "cost_weights and cost_normalize apply to an environment built here: "
                "build the Environment with them instead",
                field="cost_weights",
            )
        e = env
    else:
        e = build_environment(
            env,
            seed=env_seed,
            shared=shared,
            n_max=n_max,
            cost_weights=weights,
            cost_normalize=cost_normalize,
        )
        if (weights is not None or cost_normalize is not None) and "cost_normalize" not in (e.meta):
            raise ConfigError(
                f"--cost-weights and --cost-normalize apply to pool environments: {e.name} "
                "has its own contexts and costs; drop them or use a pool",
                field="cost_weights",
            )
        e = replace(e, description=e.description + _objective_note(e, weights, cost_normalize))
    e = _with_tie_credit(e, tie_credit)
    labels = list(algorithms) if algorithms else list(DEFAULT_ALGORITHMS)
    known = registry()
    unknown = [a for a in labels if a not in known]
    if unknown:
        raise ConfigError(
            f"unknown algorithm {unknown[0]!r}: use {', '.join(known)}", field="algorithms"
        )
    if len(set(labels)) != len(labels):
        raise ConfigError("an algorithm is listed twice", field="algorithms")
    if reference is not None and reference not in labels:
        raise ConfigError(
            f"the reference {reference!r} is not benchmarked: use one of {', '.join(labels)}",
            field="reference",
        )
    specs = [known[a] for a in labels]
    n_runs = runs if runs is not None else (QUICK_RUNS if quick else 200)
    if n_runs < 2:
        raise ConfigError("at least 2 runs are needed (mean ± SEM, paired tests)", field="runs")
    if workers < 1:
        raise ConfigError("workers must be at least 1", field="workers")
    caps = dict(runs_for or {})
    for label, r in caps.items():
        if label not in labels:
            raise ConfigError(f"--runs-for names {label!r}, which is not benchmarked")
        if r < 1:
            raise ConfigError(f"--runs-for {label}={r}: give at least 1 run")
    ids = _adaptive_ids(e, adaptive, adaptive_batch)
    if ids:
        specs += [_twin(s) for s in specs if _can_adapt(s)]
        labels = [s.name for s in specs]
    sim = encode_pool(e.pool, e.strategy, e.contexts, e.n_max, adaptive=ids)
    if budgets is None:
        _, need0 = feasible_budgets(sim, specs, DEFAULT_BUDGETS)
        bud = _quick_budgets(specs, need0) if quick else DEFAULT_BUDGETS
    else:
        bud = tuple(sorted({int(b) for b in budgets}))
        if not bud or bud[0] < 1:
            raise ConfigError("budgets must be positive integers", field="budgets")
    ok, need = feasible_budgets(sim, specs, bud)
    show = _progress_printer(e.name) if progress is True else (progress or None)
    if executor == "ray":
        runs_out = execute_runs_ray(sim, specs, ok, n_runs, seed, workers, show, caps, address)
    else:
        runs_out = execute_runs(sim, specs, ok, n_runs, seed, workers, show, caps)
    contexts = [c.name for c in e.contexts]
    summary = summarise(
        runs_out, labels, bud, need, contexts, reference=reference or default_reference(labels)
    )
    data: dict[str, Any] = {
        "env": e.describe(),
        "command": command
        or (
            f"run_benchmark({e.name!r}, runs={n_runs}, budgets={list(bud)}, seed={seed}"
            f"{f', runs_for={caps}' if caps else ''}"
            f"{f', cost_weights={list(weights)}' if weights is not None else ''}"
            f"{f', cost_normalize={cost_normalize!r}' if cost_normalize is not None else ''}"
            f"{f', reference={reference!r}' if reference is not None else ''}"
            f"{f', tie_credit={tie_credit!r}' if tie_credit is not None else ''}"
            f"{f', adaptive={list(adaptive or ())}' if ids else ''}"
            f"{f', adaptive_batch={adaptive_batch}' if ids else ''})"
        ),
        "protocol": {
            "runs": n_runs,
            "runs_for": caps,
            "seed": seed,
            "env_seed": env_seed,
            "budgets": list(bud),
            "cost_weights": [c.cost_weight for c in e.contexts],
            "cost_normalize": e.meta.get("cost_normalize"),  # None: the environment's own
            "test_fraction": TEST_FRACTION,
            "split": "run r: iapo.problem.split_queries(queries, 0.2, seed from (seed, r))",
            "score": "exact test ACR = mean over contexts of Q_test(c, π(c))",
            "wilcoxon": "scipy.stats.wilcoxon, two-sided, paired by run, zero differences "
            "dropped; p = 1 when every run is identical",
            "reference": summary["reference"],
            # majority vote's tie rule (None: Best-of-N has no votes)
            "tie_credit": e.strategy.tie_credit if isinstance(e.strategy, MajorityVote) else None,
            "workers": workers,
            "executor": executor,
            **({"adaptive": list(ids)} if ids else {}),
        },
        "algorithms": [
            {
                **s.to_dict(),
                "min_budget": need[s.name],
                "runs": min(caps.get(s.name, n_runs), n_runs),
            }
            for s in specs
        ],
        "summary": summary,
        "runs": runs_out,
        "versions": {
            "iapo": __version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "wall_s": time.perf_counter() - t0,
    }
    return BenchResult(data)
