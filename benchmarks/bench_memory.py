"""Peak memory of large PSST runs, and the simulator + majority-vote estimator at large N_max:
this tree against a baseline tree (by default the commit before issue #13's work, 466008b,
extracted to a temporary directory), each case in a fresh subprocess.

Memory: a strict PSST run (``iapo bench``'s driver: the simulator feeding ``tell_estimates``)
on Synth-Bernoulli (32 prompts × 100 queries, N_max 32) with C cost contexts (cost weights
evenly spaced in [0, 0.05]); peak RSS from ``resource.getrusage`` (the run's process, its pool
encoding included, reported separately). The policies of both trees are compared.

Speed: CPU µs per completion of a whole strict PSST run at T = 300 k driven by the simulator
(draws, the U-statistic majority-vote estimator with its per-profile memo starting empty as in a
fresh ``iapo bench`` worker, the algorithm itself) on Synth-Bernoulli (32 prompts × 100 queries,
3 cost contexts) with 1 or 3 wrong answers, N_max 32, 128, 256; the policies are compared.

    PYTHONPATH=src nice -n 15 python benchmarks/bench_memory.py            # writes docs/bench
    PYTHONPATH=src python benchmarks/bench_memory.py --quick                # a smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "466008b"

WORKER = r"""
import hashlib, json, resource, sys, time
import numpy as np
from iapo import algorithms
from iapo.bench import encode_pool, synth_bernoulli
from iapo.bench import _protocol
from iapo.contexts import context_grid
from iapo.problem import Problem
from iapo.strategies import MajorityVote

case = json.loads(sys.argv[1])
def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

if case["kind"] == "memory":
    pool = synth_bernoulli(32, 100, seed=0)
    weights = np.linspace(0.0, 0.05, case["contexts"]).round(6).tolist()
    ctx = tuple(context_grid({"accuracy": [1.0]}, weights))
    sim = encode_pool(pool, MajorityVote(), ctx, 32)
    encoded = peak_mb()
    problem = Problem(sim.prompts, sim.queries[:80], 32, ctx, sim.strategy)
    t0 = time.process_time()
    algo = algorithms.create(case["algorithm"], problem, case["budget"], 1)
    _protocol._drive(algo, sim, np.random.default_rng(2))
    cpu = time.process_time() - t0
    policy = sorted((c, a.prompt, a.n) for c, a in algo.policy().items())
    digest = hashlib.sha256(json.dumps(policy).encode()).hexdigest()[:16]
    stats = hashlib.sha256(algo.stats.total.tobytes() + algo.stats.count.tobytes()).hexdigest()
    print(json.dumps({"peak_mb": peak_mb(), "encoded_mb": encoded, "cpu_s": cpu,
                      "spent": algo.spent, "policy": digest, "stats": stats[:16]}))
else:
    n_max = case["n_max"]
    pool = synth_bernoulli(32, 100, seed=0, wrong_answers=case["wrong"])
    ctx = tuple(context_grid({"accuracy": [1.0]}, [0.0, 0.01, 0.05]))
    sim = encode_pool(pool, MajorityVote(), ctx, 1)  # the exact table is not timed
    sim.n_max = n_max
    problem = Problem(sim.prompts, sim.queries[:80], n_max, ctx, sim.strategy)
    algo = algorithms.create("psst", problem, case["budget"], 1)
    t0 = time.process_time()
    _protocol._drive(algo, sim, np.random.default_rng(2))
    cpu = time.process_time() - t0
    policy = sorted((c, a.prompt, a.n) for c, a in algo.policy().items())
    print(json.dumps({"us_per_completion": cpu / algo.spent * 1e6, "completions": algo.spent,
                      "profiles": len(sim._cache), "cpu_s": cpu,
                      "policy": hashlib.sha256(json.dumps(policy).encode()).hexdigest()[:16]}))
"""


def run_case(src: Path, case: dict[str, Any]) -> dict[str, Any]:
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps(case)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:] or [f"rc {proc.returncode}"]}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def extract(commit: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=BASELINE, help="commit of the baseline tree")
    ap.add_argument("--quick", action="store_true", help="small cases, nothing written")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench" / "memory.json"))
    ap.add_argument("--render", action="store_true", help="print the tables of --out, run nothing")
    args = ap.parse_args(argv)
    if args.render:
        print(render(json.loads(Path(args.out).read_text())))
        return 0
    # (algorithm, contexts, T, run the baseline too): the baseline at 1,000 contexts and
    # T = 1 M would need several GB on a shared machine, so only this tree runs it
    memory_cases = [
        ("psst", 100, 1_000_000, True),
        ("psst", 1000, 100_000, True),
        ("psst", 1000, 1_000_000, False),
    ]
    speed_cases = [(32, 1, 300_000), (128, 1, 300_000), (256, 1, 300_000), (256, 3, 300_000)]
    if args.quick:
        memory_cases, speed_cases = [("psst", 20, 20_000, True)], [(32, 1, 20_000)]
    out: dict[str, Any] = {"baseline": args.baseline, "memory": [], "speed": []}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"baseline": extract(args.baseline, Path(tmp)), "new": ROOT / "src"}
        for algorithm, contexts, budget, both in memory_cases:
            row: dict[str, Any] = {"algorithm": algorithm, "contexts": contexts, "T": budget}
            for name, src in trees.items():
                if name == "baseline" and not both:
                    row[name] = {"error": "not run (several GB)"}
                    continue
                case = {"kind": "memory", "algorithm": algorithm, "contexts": contexts}
                row[name] = run_case(src, {**case, "budget": budget})
                print(f"memory {contexts} contexts T={budget} {name}: {row[name]}", flush=True)
            out["memory"].append(row)
        for n_max, wrong, budget in speed_cases:
            srow: dict[str, Any] = {"n_max": n_max, "wrong_answers": wrong, "T": budget}
            for name, src in trees.items():
                case = {"kind": "speed", "n_max": n_max, "wrong": wrong, "budget": budget}
                srow[name] = run_case(src, case)
                print(f"speed N_max={n_max} wrong={wrong} {name}: {srow[name]}", flush=True)
            out["speed"].append(srow)
    print(render(out))
    if not args.quick:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


def render(out: dict[str, Any]) -> str:
    lines = [
        "| run | peak RSS before | peak RSS now | of it, after encoding the pool | CPU s before "
        "| CPU s now | same policy and statistics |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in out["memory"]:
        b, n = row["baseline"], row["new"]
        label = f"{row['algorithm']}, {row['contexts']} contexts, T = {row['T']:,}"
        if "error" in n:
            lines.append(f"| {label} | | {n['error']} | | | | |")
            continue
        if "error" in b:
            before, cpu_before, same = b["error"], "", ""
        else:
            before, cpu_before = f"{b['peak_mb']:,.0f} MB", f"{b['cpu_s']:.1f}"
            same = "yes" if (b["policy"], b["stats"]) == (n["policy"], n["stats"]) else "NO"
        lines.append(
            f"| {label} | {before} | {n['peak_mb']:,.0f} MB | {n['encoded_mb']:,.0f} MB | "
            f"{cpu_before} | {n['cpu_s']:.1f} | {same} |"
        )
    lines += [
        "",
        "| N_max | wrong answers | µs/completion before | µs/completion now | ratio "
        "| profiles memoised | same policy |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for srow in out["speed"]:
        b, n = srow["baseline"], srow["new"]
        same = "yes" if b["policy"] == n["policy"] else "NO"
        lines.append(
            f"| {srow['n_max']} | {srow['wrong_answers']} | {b['us_per_completion']:.2f} | "
            f"{n['us_per_completion']:.2f} | "
            f"{b['us_per_completion'] / n['us_per_completion']:.1f}× | {n['profiles']} | {same} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
