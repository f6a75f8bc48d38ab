"""The ``iapo bench`` command."""

from __future__ import annotations

import sys
from typing import Any

from iapo.bench._benchmark import QUICK_RUNS, run_benchmark
from iapo.bench._envs import ENVIRONMENTS
from iapo.bench._protocol import DEFAULT_ALGORITHMS
from iapo.bench._ray import EXECUTORS, PIP_RAY
from iapo.errors import ConfigError

__all__ = ["register_cli"]


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


def _float_list(text: str, what: str) -> list[float]:
    out = []
    for part in text.replace(" ", "").split(","):
        try:
            out.append(float(part))
        except ValueError:
            raise ConfigError(f"{what}: {part!r} is not a number (e.g. 0,0.2,1)") from None
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
        cost_weights=_float_list(args.cost_weights, "--cost-weights")
        if args.cost_weights is not None
        else None,
        cost_normalize=args.cost_normalize,
        reference=args.reference,
        tie_credit=args.tie_credit,
        executor=args.executor,
        address=args.address,
        adaptive=[r for r in (args.adaptive or "").replace(" ", "").split(",") if r] or None,
        adaptive_batch=args.adaptive_batch,
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
    p.add_argument(
        "--runs", type=int, help=f"independent runs (default: 200; --quick: {QUICK_RUNS})"
    )
    p.add_argument(
        "--runs-for",
        help="fewer runs for some algorithms, e.g. ucb=50,epsilon_greedy=50 (their first runs)",
    )
    p.add_argument("--seed", type=int, default=0, help="protocol seed (splits, algorithms)")
    p.add_argument("--env-seed", type=int, default=0, help="seed of the synthetic generators")
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes (--executor ray: the local Ray instance's CPUs)",
    )
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="process",
        help="where the runs execute: a local process pool, or Ray tasks on a local instance "
        f"or a cluster (the ray extra: {PIP_RAY}); the same numbers either way",
    )
    p.add_argument(
        "--address",
        help="with --executor ray: the Ray cluster to use (auto, HOST:PORT or ray://HOST:PORT); "
        "none: a new local instance",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_RUNS} runs at two budgets: a smoke test, not evidence",
    )
    p.add_argument("--out", default="bench-results", help="folder for JSON, Markdown and PNG")
    p.add_argument("--shared", help="the shared data folder (holding data/pools)")
    p.add_argument("--n-max", type=int, help="override N_max for pool files")
    p.add_argument(
        "--cost-weights",
        help="the contexts' cost weights for a pool, e.g. 0,0.2,1 (default: the environment's)",
    )
    p.add_argument(
        "--cost-normalize",
        help="a pool's costs as recorded (none) or divided by the largest (max, the default)",
    )
    p.add_argument(
        "--reference",
        help="the algorithm the paired Wilcoxon tests and the difference plot compare against "
        "(default: psst_any when benchmarked, else psst)",
    )
    p.add_argument(
        "--tie-credit",
        help="majority vote's credit when gold ties for the most votes: fractional (1/t for t "
        "tied answers, the default) or half (0.5, the paper's released code)",
    )
    p.add_argument(
        "--adaptive",
        help="stopping rules of adaptive majority-vote arms, e.g. decided,beta:0.95,window:4: "
        "each algorithm also runs as LABEL+adaptive with them (issue #15)",
    )
    p.add_argument("--adaptive-batch", type=int, default=1, help="their batch size (default 1)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the tables")
    p.set_defaults(func=_cmd_bench)
