"""Peak memory of ``iapo run`` with many contexts: this tree against a baseline tree (by default
f146a5e, where ``tell()`` still built each round's dense estimate array), each run a fresh
subprocess of the real CLI.

The run: ``examples/gsm8k-pool.yaml`` (the bundled GSM8K pool replayed: 3 prompts × 40
questions, majority vote, N_max 8, psst_any) with C cost contexts (cost weights evenly spaced in
[0, 0.3]) and budget T, a fresh SQLite bank, no report. Peak RSS is the subprocess's
``ru_maxrss``; CPU its ``process_time`` around ``iapo.cli.main``. Each case's ``result.json`` is
compared between the trees (everything but the run's directory, bank and elapsed time).

    nice -n 15 .venv/bin/python benchmarks/bench_run_memory.py      # writes docs/bench/run-memory.*
    .venv/bin/python benchmarks/bench_run_memory.py --quick          # a smoke run, nothing written
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from bench_memory import extract  # the baseline tree, extracted with git archive

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "bench"
BASELINE = "f146a5e"
COMMAND = "nice -n 15 .venv/bin/python benchmarks/bench_run_memory.py"
#: why the baseline skips 1,000 contexts at T = 1 M: its largest round has 54,543 pulls
SKIPPED = "a round of 54,543 pulls: 3.5 GB of estimates alone"
#: result.json fields that name the run's place or time, not its outcome
UNCOMPARED = frozenset({"run_dir", "storage", "elapsed_s"})

CHILD = r"""
import json, resource, sys, time
from iapo.cli import main
t0 = time.process_time()
rc = main(sys.argv[1:])
cpu = time.process_time() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rc": rc, "cpu_s": cpu, "peak_rss_mb": peak}))
"""


def config(path: Path, contexts: int, budget: int) -> None:
    base = yaml.safe_load((ROOT / "examples" / "gsm8k-pool.yaml").read_text())
    weights = [round(0.3 * i / (contexts - 1), 6) for i in range(contexts)]
    base.update(
        name=f"run-memory-{contexts}", budget=budget, contexts={"grid": {"cost_weight": weights}}
    )
    path.write_text(yaml.safe_dump(base))


def run_case(src: Path, cfg: Path, run_dir: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
    args = ["run", str(cfg), "--run-dir", str(run_dir), "--quiet", "--no-report"]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"rc {proc.returncode}"])[-1]}
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result = json.loads((run_dir / "result.json").read_text())
    out["result"] = {k: v for k, v in result.items() if k not in UNCOMPARED}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=BASELINE, help="commit of the baseline tree")
    ap.add_argument("--quick", action="store_true", help="small cases, nothing written")
    ap.add_argument("--out", type=Path, default=DOCS / "run-memory.json")
    args = ap.parse_args(argv)
    # (contexts, T, run the baseline too): the baseline at 1,000 contexts and T = 1 M would
    # hold 3.5 GB of estimates in its largest round alone, so only this tree runs it
    cases = [(4, 1_000_000, True), (100, 1_000_000, True), (1000, 100_000, True)]
    cases.append((1000, 1_000_000, False))
    if args.quick:
        cases = [(20, 20_000, True)]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-run-memory-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "baseline").mkdir()
        trees = {"baseline": extract(args.baseline, tmp / "baseline"), "new": ROOT / "src"}
        for contexts, budget, both in cases:
            cfg = tmp / f"c{contexts}-t{budget}.yaml"
            config(cfg, contexts, budget)
            row: dict[str, Any] = {"contexts": contexts, "T": budget}
            for name, src in trees.items():
                if name == "baseline" and not both:
                    row[name] = {"error": f"not run ({SKIPPED})"}
                    continue
                row[name] = run_case(src, cfg, tmp / f"{name}-c{contexts}-t{budget}")
                shown = {k: v for k, v in row[name].items() if k != "result"}
                print(f"{contexts} contexts, T = {budget:,}, {name}: {shown}", flush=True)
            base, new = row["baseline"], row["new"]
            row["same_result"] = (
                base["result"] == new["result"] if "result" in base and "result" in new else None
            )
            for name in trees:
                row[name].pop("result", None)
            rows.append(row)
    data = {
        "benchmark": "iapo run peak memory with many contexts",
        "command": COMMAND,
        "baseline": args.baseline,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rows": rows,
    }
    table = render(data)
    print(table)
    if not args.quick:
        args.out.write_text(json.dumps(data, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(table)
    return 0


def render(data: dict[str, Any]) -> str:
    def mb(r: dict[str, Any]) -> str:
        return f"{r['peak_rss_mb']:,.0f}" if "peak_rss_mb" in r else r.get("error", "")

    def cpu(r: dict[str, Any]) -> str:
        return f"{r['cpu_s']:.1f}" if "cpu_s" in r else ""

    lines = [
        f"`{data['command']}` — `iapo run examples/gsm8k-pool.yaml` (the bundled GSM8K pool "
        "replayed, 3 prompts × 40 questions, N_max 8, psst_any) with C cost contexts and budget "
        "T, through the real CLI in a fresh process with a fresh SQLite bank, against commit "
        f"{data['baseline']} (where `tell()` built each round's dense (pulls × C × N) estimate "
        'array). Peak RSS of the process; CPU of the run. "Same result": every field of '
        "`result.json` but the run's directory, bank and elapsed time is equal.",
        "",
        "| C contexts | T | peak RSS before (MB) | peak RSS now (MB) | CPU s before | CPU s now "
        "| same result |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in data["rows"]:
        b, n = row["baseline"], row["new"]
        same = {True: "yes", False: "NO", None: ""}[row["same_result"]]
        lines.append(
            f"| {row['contexts']:,} | {row['T']:,} | {mb(b)} | {mb(n)} | {cpu(b)} | {cpu(n)} "
            f"| {same} |"
        )
    lines += [
        "",
        f"Machine: {data['machine']['cpus']} CPUs, Python {data['machine']['python']}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
