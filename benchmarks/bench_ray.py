"""``iapo bench --executor ray`` against the process pool on this machine: same numbers, overhead.

One environment (``mcqa-gpt35``: 5 prompts × 100 queries, N_max 10), two configurations:

* ``work``: every default algorithm at 1k, 5k and 20k completions, 20 runs (about 40 cells of
  (algorithm, budget) per run, seconds of CPU per run): what a benchmark looks like;
* ``tiny``: uniform at 100 completions, 100 runs of a few milliseconds: almost nothing but
  per-task overhead.

Each configuration is run by three executors, each in a fresh child process (``run_benchmark``
end to end, ``--workers 2``), ``--reps`` times in rotation:

* ``process``: the local process pool (the default, the baseline);
* ``ray``: Ray as the CLI uses it: a new local instance (2 CPUs) started and shut down inside
  the timed call;
* ``ray-warm``: a Ray session opened before the timed call (a cluster already up).

All executors must give the same numbers (every run's ACR, arms, spend, found-optimal flags,
oracles and the summary; only measured CPU seconds are left out): the script asserts it. The
overhead per cell (and per run, Ray's task) is (wall − the process pool's wall) / cells (runs),
from the fastest of the repetitions; the Ray start-up is ``ray`` − ``ray-warm``. Ray's workers
run at the process pool's niceness (``RAY_worker_niceness=0``; Ray's default is +15).

Run: ``nice -n 15 .venv/bin/python benchmarks/bench_ray.py --out docs/bench/ray.json``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ENV = "mcqa-gpt35"
CONFIGS: dict[str, dict[str, Any]] = {
    "work": {"budgets": [1000, 5000, 20000], "runs": 20},
    "tiny": {"algorithms": ["uniform"], "budgets": [100], "runs": 100},
}
EXECUTORS = ("process", "ray", "ray-warm")


def numbers(data: dict[str, Any]) -> dict[str, Any]:
    """Every number of a result but the measured ones (CPU seconds, wall time)."""

    def drop(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: drop(v) for k, v in x.items() if not k.startswith("cpu_s")}
        if isinstance(x, list):
            return [drop(v) for v in x]
        return x

    return drop({k: data[k] for k in ("env", "algorithms", "summary", "runs")})


def child(config: str, executor: str) -> dict[str, Any]:
    """One timed ``run_benchmark`` (in a fresh process); its timings and a digest of its
    numbers."""
    from iapo.bench import run_benchmark

    kw = {**CONFIGS[config], "seed": 0, "workers": 2}
    warm_s = None
    if executor == "ray-warm":
        import ray

        t = time.perf_counter()
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        warm_s = time.perf_counter() - t
    t0 = time.perf_counter()
    res = run_benchmark(ENV, executor="process" if executor == "process" else "ray", **kw)
    wall = time.perf_counter() - t0
    if executor == "ray-warm":
        import ray

        ray.shutdown()
    runs = res.data["runs"]
    cells = sum(len(per) for r in runs for per in r["results"].values())
    blob = json.dumps(numbers(json.loads(res.to_json(arms=True))), sort_keys=True)
    return {
        "wall_s": wall,
        "runs": len(runs),
        "cells": cells,
        "cpu_s_cells": sum(
            x["cpu_s"] for r in runs for p in r["results"].values() for x in p.values()
        ),
        "digest": hashlib.sha256(blob.encode()).hexdigest(),
        "ray_init_s": warm_s,
    }


def run_child(config: str, executor: str) -> dict[str, Any]:
    # Ray runs its workers at niceness +15 by default (the driver stays responsive); here they
    # get the process pool's niceness, or a busy machine would starve Ray's side only
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "RAY_worker_niceness": "0"}
    cmd = [sys.executable, __file__, "--child", config, executor]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, timeout=1800)
    got: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return got


def state_bytes() -> int:
    """The serialised size of what ``ray.put`` ships once (the encoded pool, algorithms,
    budgets), with Ray's cloudpickle."""
    sys.path.insert(0, str(REPO / "src"))
    from ray import cloudpickle

    from iapo.algorithms import registry
    from iapo.bench import build_environment, encode_pool
    from iapo.bench._protocol import DEFAULT_ALGORITHMS, _State

    e = build_environment(ENV)
    sim = encode_pool(e.pool, e.strategy, e.contexts, e.n_max)
    specs = tuple(registry()[a] for a in DEFAULT_ALGORITHMS)
    return len(cloudpickle.dumps(_State(sim, specs, {}, 0), protocol=5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--child", nargs=2, metavar=("CONFIG", "EXECUTOR"), help=argparse.SUPPRESS)
    ap.add_argument("--reps", type=int, default=2, help="repetitions of each (fastest kept)")
    ap.add_argument("--configs", default="work,tiny")
    ap.add_argument("--out", type=Path, help="write the JSON result here")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    import ray

    report: dict[str, Any] = {
        "command": "nice -n 15 .venv/bin/python benchmarks/bench_ray.py " + " ".join(sys.argv[1:]),
        "env": ENV,
        "configs": {},
        "state_bytes": state_bytes(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "ray": ray.__version__,
            "note": "2 cores shared with other jobs; workers 2; RAY_worker_niceness=0 (Ray's "
            "workers at the process pool's niceness)",
        },
    }
    for config in args.configs.split(","):
        got: dict[str, list[dict[str, Any]]] = {e: [] for e in EXECUTORS}
        for rep in range(args.reps):
            order = EXECUTORS if rep % 2 == 0 else EXECUTORS[::-1]
            for ex in order:
                got[ex].append(run_child(config, ex))
                print(f"{config} {ex}: {got[ex][-1]['wall_s']:.2f} s", file=sys.stderr)
        digests = {g["digest"] for rs in got.values() for g in rs}
        assert len(digests) == 1, f"{config}: the executors' numbers differ"
        best = {e: min(rs, key=lambda g: g["wall_s"]) for e, rs in got.items()}
        base = best["process"]
        runs, cells = base["runs"], base["cells"]
        row: dict[str, Any] = {
            **CONFIGS[config],
            "runs": runs,
            "cells": cells,
            "identical": True,
            "digest": base["digest"],
            "cpu_s_cells": base["cpu_s_cells"],
            "walls_s": {e: [g["wall_s"] for g in rs] for e, rs in got.items()},
            "ray_init_s": [g["ray_init_s"] for g in got["ray-warm"]],
        }
        for ex in EXECUTORS:
            w = best[ex]["wall_s"]
            row[ex] = {
                "wall_s": w,
                "cpu_s_cells": best[ex]["cpu_s_cells"],  # the cells' own CPU, in the workers
                "ratio": w / base["wall_s"],
                "overhead_per_cell_ms": (w - base["wall_s"]) / cells * 1e3,
                "overhead_per_run_ms": (w - base["wall_s"]) / runs * 1e3,
            }
        row["ray_startup_s"] = best["ray"]["wall_s"] - best["ray-warm"]["wall_s"]
        report["configs"][config] = row
    print(table(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


def table(report: dict[str, Any]) -> str:
    lines = [
        "| configuration | runs | cells | executor | wall s | × process pool | "
        "overhead ms/cell | overhead ms/run (task) |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for name, row in report["configs"].items():
        for ex in EXECUTORS:
            r = row[ex]
            lines.append(
                f"| {name} | {row['runs']} | {row['cells']} | {ex} | {r['wall_s']:.2f} | "
                f"{r['ratio']:.2f} | {r['overhead_per_cell_ms']:+.1f} | "
                f"{r['overhead_per_run_ms']:+.1f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
