"""``iapo bench``: the paper's protocol on a pool or a synthetic environment.

Algorithms × budgets × R paired runs; each run reshuffles an 80/20 train/test split of the
queries (seeded), every algorithm learns on the training queries through a fast replay simulator,
and its policy is scored by its **exact** ACR on the test queries. The result holds every run's
numbers (JSON), a Markdown table (ACR mean ± SEM, paired Wilcoxon p-values against PSST, the
oracle ceilings, optimal-arm fractions, CPU time) and a plot (ACR vs budget).

    from iapo.bench import run_benchmark
    res = run_benchmark("synth-bernoulli", quick=True)
    print(res.markdown())
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iapo.bench._envs import ENVIRONMENTS, Environment, build_environment, find_shared
from iapo.bench._protocol import (
    ALGORITHM_SPECS,
    DEFAULT_ALGORITHMS,
    DEFAULT_BUDGETS,
    TEST_FRACTION,
    AlgoSpec,
    execute_runs,
    feasible_budgets,
)
from iapo.bench._report import markdown_tables, plot, summarise
from iapo.bench._sim import EncodedPool, encode_pool
from iapo.errors import ConfigError, InputError

__all__ = [
    "ALGORITHM_SPECS",
    "DEFAULT_ALGORITHMS",
    "DEFAULT_BUDGETS",
    "ENVIRONMENTS",
    "AlgoSpec",
    "BenchResult",
    "EncodedPool",
    "Environment",
    "build_environment",
    "encode_pool",
    "find_shared",
    "register_cli",
    "run_benchmark",
]

QUICK_RUNS = 6


@dataclass
class BenchResult:
    """Every run's numbers (``data``, JSON-ready) and their summary."""

    data: dict[str, Any]

    @property
    def summary(self) -> dict[str, Any]:
        s: dict[str, Any] = self.data["summary"]
        return s

    @property
    def budgets(self) -> list[int]:
        return [int(b) for b in self.data["protocol"]["budgets"]]

    @property
    def titles(self) -> dict[str, str]:
        return {a["label"]: a["title"] for a in self.data["algorithms"]}

    def acr(self, label: str, budget: int) -> list[float]:
        """Per-run test ACR of ``label`` at ``budget``, in run order (runs it took part in)."""
        key = str(budget)
        return [
            r["results"][label][key]["acr"]
            for r in self.data["runs"]
            if key in r["results"].get(label, {})
        ]

    def markdown(self, heading: str = "####") -> str:
        return markdown_tables(self.summary, self.titles, self.budgets, heading=heading)

    def to_json(self, *, arms: bool = False) -> str:
        """The data as compact JSON; ``arms=False`` leaves out each run's chosen arms."""
        data = self.data
        if not arms:
            runs = [
                {
                    **r,
                    "results": {
                        a: {b: {k: v for k, v in x.items() if k != "arms"} for b, x in d.items()}
                        for a, d in r["results"].items()
                    },
                }
                for r in data["runs"]
            ]
            data = {**data, "runs": runs}
        return json.dumps(data, separators=(",", ":"), allow_nan=False)

    def save(self, out: str | Path, *, with_plot: bool = True) -> dict[str, Path]:
        """Write ``<env>.json``, ``<env>.md`` and (matplotlib) ``<env>.png`` into ``out``."""
        d = Path(out)
        try:
            d.mkdir(parents=True, exist_ok=True)
            name = self.data["env"]["name"]
            paths = {"json": d / f"{name}.json", "markdown": d / f"{name}.md"}
            paths["json"].write_text(self.to_json())
            paths["markdown"].write_text(
                f"### {name}\n\n{self.data['env']['description']}\n\n"
                f"Command: `{self.data['command']}`\n\n{self.markdown()}"
            )
            if with_plot:
                paths["plot"] = d / f"{name}.png"
                plot(self.summary, self.titles, self.budgets, paths["plot"], name)
        except OSError as exc:
            raise InputError(
                f"cannot write the results ({exc.strerror}): choose a writable --out", source=str(d)
            ) from None
        return paths

    def resummarise(self) -> dict[str, Any]:
        """Recompute the summary from the stored runs (and keep it)."""
        algos = self.data["algorithms"]
        self.data["summary"] = summarise(
            self.data["runs"],
            [a["label"] for a in algos],
            self.budgets,
            {a["label"]: a["min_budget"] for a in algos},
            [c["name"] for c in self.data["env"]["contexts"]],
        )
        return self.summary

    def plot(self, path: str | Path) -> None:
        plot(self.summary, self.titles, self.budgets, path, self.data["env"]["name"])

    @classmethod
    def load(cls, path: str | Path) -> BenchResult:
        return cls(json.loads(Path(path).read_text()))


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


def _quick_budgets(specs: Sequence[AlgoSpec], need: Mapping[str, int]) -> tuple[int, ...]:
    ref = "psst" if "psst" in need else specs[0].label
    ok = [b for b in DEFAULT_BUDGETS if b >= need[ref]]
    return tuple(ok[:2]) if len(ok) >= 2 else DEFAULT_BUDGETS[-2:]


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
) -> BenchResult:
    """Run the protocol on ``env`` (a name from :data:`ENVIRONMENTS`, a pool file, or an
    :class:`Environment`) and return every run's numbers with their summary.

    ``runs`` defaults to 200 (``quick``: 6, and two budgets: the two smallest default budgets
    PSST can run with). ``runs_for`` caps the runs of some algorithms (label → runs, the first
    ones: pairing with PSST stays by run). Budgets below an algorithm's minimum are recorded as
    infeasible.
    """
    t0 = time.perf_counter()
    e = (
        env
        if isinstance(env, Environment)
        else build_environment(env, seed=env_seed, shared=shared, n_max=n_max)
    )
    labels = list(algorithms) if algorithms else list(DEFAULT_ALGORITHMS)
    unknown = [a for a in labels if a not in ALGORITHM_SPECS]
    if unknown:
        raise ConfigError(
            f"unknown algorithm {unknown[0]!r}: use {', '.join(ALGORITHM_SPECS)}",
            field="algorithms",
        )
    if len(set(labels)) != len(labels):
        raise ConfigError("an algorithm is listed twice", field="algorithms")
    specs = [ALGORITHM_SPECS[a] for a in labels]
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
    sim = encode_pool(e.pool, e.strategy, e.contexts, e.n_max)
    if budgets is None:
        _, need0 = feasible_budgets(sim, specs, DEFAULT_BUDGETS)
        bud = _quick_budgets(specs, need0) if quick else DEFAULT_BUDGETS
    else:
        bud = tuple(sorted({int(b) for b in budgets}))
        if not bud or bud[0] < 1:
            raise ConfigError("budgets must be positive integers", field="budgets")
    ok, need = feasible_budgets(sim, specs, bud)
    show = _progress_printer(e.name) if progress is True else (progress or None)
    runs_out = execute_runs(sim, specs, ok, n_runs, seed, workers, show, caps)
    contexts = [c.name for c in e.contexts]
    summary = summarise(runs_out, labels, bud, need, contexts)
    from iapo.version import __version__

    data: dict[str, Any] = {
        "env": e.describe(),
        "command": command
        or (
            f"run_benchmark({e.name!r}, runs={n_runs}, budgets={list(bud)}, seed={seed}"
            f"{f', runs_for={caps}' if caps else ''})"
        ),
        "protocol": {
            "runs": n_runs,
            "runs_for": caps,
            "seed": seed,
            "env_seed": env_seed,
            "budgets": list(bud),
            "test_fraction": TEST_FRACTION,
            "split": "run r: iapo._run.split_queries(queries, 0.2, seed from (seed, r))",
            "score": "exact test ACR = mean over contexts of Q_test(c, π(c))",
            "wilcoxon": "scipy.stats.wilcoxon, two-sided, paired by run, zero differences "
            "dropped; p = 1 when every run is identical",
            "workers": workers,
        },
        "algorithms": [
            {
                **s.to_dict(),
                "min_budget": need[s.label],
                "runs": min(caps.get(s.label, n_runs), n_runs),
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


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------


def _int_list(text: str, what: str) -> list[int]:
    out = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        mult = 1
        if part[-1] in "kK":
            part, mult = part[:-1], 1000
        try:
            out.append(int(float(part) * mult))
        except ValueError:
            raise ConfigError(f"{what}: {part!r} is not a number (e.g. 1000,2k,50000)") from None
    return out


def _runs_for(text: str | None) -> dict[str, int]:
    if not text:
        return {}
    out: dict[str, int] = {}
    for part in text.split(","):
        label, sep, value = part.partition("=")
        if not sep or not value.strip().isdigit():
            raise ConfigError(f"--runs-for: {part!r} is not LABEL=RUNS (e.g. ucb=50)")
        out[label.strip()] = int(value)
    return out


def _cmd_bench(args: Any) -> int:
    algos = [a for a in (args.algorithms or "").replace(" ", "").split(",") if a] or None
    budgets = _int_list(args.budgets, "--budgets") if args.budgets else None
    command = "iapo bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else None
    res = run_benchmark(
        args.env,
        algorithms=algos,
        budgets=budgets,
        runs=args.runs,
        runs_for=_runs_for(args.runs_for),
        seed=args.seed,
        env_seed=args.env_seed,
        workers=args.workers,
        quick=args.quick,
        shared=args.shared,
        n_max=args.n_max,
        progress=not args.quiet,
        command=command,
    )
    paths = res.save(args.out, with_plot=not args.no_plot)
    if args.json:
        print(res.to_json())
    else:
        print(res.markdown(heading="##"))
        print(f"wrote {', '.join(str(p) for p in paths.values())} ({res.data['wall_s']:.1f} s)")
    return 0


def register_cli(sub: Any) -> None:
    """Add this subpackage's commands to the ``iapo`` argument parser's subparsers."""
    p = sub.add_parser(
        "bench",
        help="benchmark algorithms with the paper's protocol (paired runs, exact test ACR)",
        description="Algorithms × budgets × R runs; each run reshuffles an 80/20 split of the "
        "queries, learns on train and scores the policy's exact ACR on test.",
    )
    p.add_argument(
        "--env",
        required=True,
        help=f"{', '.join(ENVIRONMENTS)}, or a pool file (.jsonl)",
    )
    p.add_argument(
        "--algorithms", help=f"comma-separated, default all: {','.join(DEFAULT_ALGORITHMS)}"
    )
    p.add_argument("--budgets", help="comma-separated completions, default 1k,2k,5k,10k,20k,50k")
    p.add_argument("--runs", type=int, help="independent runs (default 200; --quick: 10)")
    p.add_argument(
        "--runs-for",
        help="fewer runs for some algorithms, e.g. ucb=50,epsilon_greedy=50 (their first runs)",
    )
    p.add_argument("--seed", type=int, default=0, help="protocol seed (splits, algorithms)")
    p.add_argument("--env-seed", type=int, default=0, help="seed of the synthetic generators")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument(
        "--quick", action="store_true", help="6 runs at two budgets: a smoke test, not evidence"
    )
    p.add_argument("--out", default="bench-results", help="folder for JSON, Markdown and PNG")
    p.add_argument("--shared", help="the shared data folder (holding data/pools)")
    p.add_argument("--n-max", type=int, help="override N_max for pool files")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the tables")
    p.set_defaults(func=_cmd_bench)
