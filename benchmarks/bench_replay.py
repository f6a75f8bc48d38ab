"""``iapo run`` replay end to end at T = 1 M: this checkout against the code before issue #13.

The real CLI path (``iapo run CONFIG --budget T``, a fresh SQLite bank in a temp dir, result
and evaluation written) on the bundled GSM8K pool (``examples/gsm8k-pool.yaml``: 3 prompts,
30 training queries, N_max 8, 4 contexts, PSST at any budget), run as child processes back to
back on the same machine:

* ``old``: the tree of ``--old`` (default ``466008b``, before #13) taken with ``git archive``
  into a temp dir and run with its own ``PYTHONPATH``;
* ``new``: this checkout's ``src``;
* ``resume``: the new code on the bank the old code wrote (the bank is upgraded in place from
  schema 2 to 3, then every completion is read back instead of drawn); the upgrade alone is
  also timed, on a copy of that bank.

Each run reports wall and CPU time (user + system of the child, from ``wait4``), µs per
completion, peak RSS and the bank file's size; the old and new results must agree (policy and
account). Then bank writes alone, completions per second: the same rows written the old way
(``put`` per pull, one transaction each) and the new way (a ``BankWriter``: ``put_many`` of
``WRITE_BATCH`` rows).

Run: ``nice -n 15 .venv/bin/python benchmarks/bench_replay.py --out docs/bench/replay.json``
(``--budget 100000`` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "examples" / "gsm8k-pool.yaml"

#: Bank writes alone, in a child with either tree on its path: the rows of a replay run
#: (outcomes of the GSM8K pool, pulls of 1-8 samples cycling over 90 distributions).
WRITES = textwrap.dedent(
    """
    import json, os, sys, time
    from iapo.bank import SQLiteBank
    from iapo.setups import builtin_pool_path
    from iapo.pools import load_pool
    from dataclasses import replace
    rows, mode, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    pool = load_pool(builtin_pool_path("gsm8k-qwen05"))
    cells = [(c.prompt, c.query, [replace(o, text=None) for o in c.outcomes])
             for c in list(pool.cells.values())[:90]]
    pulls, used, k, total = [], {}, 0, 0
    while total < rows:
        p, q, outs = cells[k % len(cells)]
        n = min(1 + k % 8, rows - total)
        start = used.get((p, q), 0)
        used[(p, q)] = start + n
        items = [(i, outs[i % len(outs)]) for i in range(start, start + n)]
        pulls.append((f"dist-{p}-{q}", p, q, items))
        k, total = k + 1, total + n
    bank = SQLiteBank(path)
    t0, c0 = time.perf_counter(), time.process_time()
    if mode == "old":
        for pull in pulls:
            bank.put(*pull)
    else:
        with bank.writer() as w:
            for pull in pulls:
                if w.add(*pull):
                    w.flush()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    bank.close()
    print(json.dumps({"rows": rows, "wall_s": wall, "cpu_s": cpu, "bytes": os.path.getsize(path)}))
    """
)

#: Open (and so upgrade) a bank, in a child with the new tree on its path.
UPGRADE = "import sys; from iapo.bank import SQLiteBank; SQLiteBank(sys.argv[1]).close()"


def timed_child(cmd: list[str], src: Path, cwd: Path) -> tuple[str, dict[str, float]]:
    """Run ``cmd`` (PYTHONPATH ``src``) and measure it with ``wait4``: wall, CPU, peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {errors[-2000:]}")
    return text, {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def iapo_run(src: Path, work: Path, run_dir: Path, budget: int) -> dict[str, Any]:
    code = "import sys; from iapo.cli import main; raise SystemExit(main(sys.argv[1:]))"
    args = ["run", str(CONFIG), "--budget", str(budget), "--run-dir", str(run_dir)]
    _, stats = timed_child([sys.executable, "-c", code, *args, "--quiet", "--no-report"], src, work)
    result = json.loads((run_dir / "result.json").read_text())
    completions = result["account"]["completions"]
    bank = run_dir / "bank.sqlite"
    return {
        **stats,
        "completions": completions,
        "drawn": result["account"]["drawn"],
        "cache_hits": result["account"]["cache_hits"],
        "us_per_completion_wall": 1e6 * stats["wall_s"] / completions,
        "us_per_completion_cpu": 1e6 * stats["cpu_s"] / completions,
        "bank_bytes": bank.stat().st_size,
        "bank_bytes_per_completion": bank.stat().st_size / completions,
        "_result": result,
    }


def bank_writes(src: Path, work: Path, mode: str, rows: int) -> dict[str, Any]:
    path = work / f"writes-{mode}.sqlite"
    out, _ = timed_child([sys.executable, "-c", WRITES, str(rows), mode, str(path)], src, work)
    got: dict[str, Any] = json.loads(out)
    got["completions_per_s_wall"] = rows / got["wall_s"]
    got["completions_per_s_cpu"] = rows / got["cpu_s"]
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=int, default=1_000_000)
    ap.add_argument("--old", default="466008b", help="git revision of the old code")
    ap.add_argument("--write-rows", type=int, default=200_000, help="rows of the bank-only test")
    ap.add_argument("--out", type=Path, help="write the JSON result here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        work = Path(tmp)
        old_tree = work / "old"
        old_tree.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.old, "src"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive, check=True)
        old_src, new_src = old_tree / "src", REPO / "src"

        runs = {}
        runs["old"] = iapo_run(old_src, work, work / "old-run", args.budget)
        print(f"old: {runs['old']['wall_s']:.1f} s", file=sys.stderr)
        runs["new"] = iapo_run(new_src, work, work / "new-run", args.budget)
        print(f"new: {runs['new']['wall_s']:.1f} s", file=sys.stderr)
        old_bytes = runs["old"]["bank_bytes"]
        copy = work / "upgrade.sqlite"  # the upgrade alone, on a copy of the old bank
        shutil.copyfile(work / "old-run" / "bank.sqlite", copy)
        _, upgrade = timed_child([sys.executable, "-c", UPGRADE, str(copy)], new_src, work)
        upgrade["bank_bytes_before"], upgrade["bank_bytes_after"] = old_bytes, copy.stat().st_size
        print(f"upgrade: {upgrade['wall_s']:.1f} s", file=sys.stderr)
        runs["resume"] = iapo_run(new_src, work, work / "old-run", args.budget)  # old bank
        runs["resume"]["bank_bytes_before_upgrade"] = old_bytes
        print(f"resume: {runs['resume']['wall_s']:.1f} s", file=sys.stderr)
        old_res, new_res, res_res = (runs[k].pop("_result") for k in ("old", "new", "resume"))
        same = old_res["policy"] == new_res["policy"] == res_res["policy"]
        same &= old_res["account"] == new_res["account"]
        same &= old_res["estimates"] == new_res["estimates"]
        if not same:
            raise SystemExit("old and new runs disagree: policy, estimates or account differ")

        writes = {
            "old": bank_writes(old_src, work, "old", args.write_rows),
            "new": bank_writes(new_src, work, "new", args.write_rows),
        }
    o, n = runs["old"], runs["new"]
    report = {
        "config": "examples/gsm8k-pool.yaml",
        "budget": args.budget,
        "old_revision": args.old,
        "runs": runs,
        "speedup_wall": o["wall_s"] / n["wall_s"],
        "speedup_cpu": o["cpu_s"] / n["cpu_s"],
        "bank_size_ratio": o["bank_bytes"] / n["bank_bytes"],
        "same_policy_estimates_account": same,
        "upgrade_v2_to_v3": upgrade,
        "bank_writes": writes,
        "bank_writes_speedup_cpu": writes["new"]["completions_per_s_cpu"]
        / writes["old"]["completions_per_s_cpu"],
        "bank_writes_speedup_wall": writes["new"]["completions_per_s_wall"]
        / writes["old"]["completions_per_s_wall"],
        "versions": {"python": platform.python_version()},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "command": "nice -n 15 .venv/bin/python benchmarks/bench_replay.py "
        f"--budget {args.budget} --out docs/bench/replay.json",
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(table(report))


def table(r: dict[str, Any]) -> str:
    runs, w, u = r["runs"], r["bank_writes"], r["upgrade_v2_to_v3"]
    lines = [
        f"`iapo run` replay, {r['config']}, budget {r['budget']:,} "
        f"({runs['new']['completions']:,} completions), old = {r['old_revision']}:",
        "",
        "| run | wall s | CPU s | µs/completion (wall) | µs/completion (CPU) | peak RSS MB "
        "| bank MB | bank B/completion |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = {
        "old": "before #13",
        "new": "now",
        "resume": "now, on the old bank (upgraded, all reused)",
    }
    for key, label in names.items():
        x = runs[key]
        lines.append(
            f"| {label} | {x['wall_s']:.1f} | {x['cpu_s']:.1f} | {x['us_per_completion_wall']:.1f} "
            f"| {x['us_per_completion_cpu']:.1f} | {x['peak_rss_mb']:.0f} | "
            f"{x['bank_bytes'] / 1e6:.1f} | {x['bank_bytes_per_completion']:.0f} |"
        )
    lines += [
        "",
        f"End to end: **{r['speedup_wall']:.1f}× faster wall, {r['speedup_cpu']:.1f}× less CPU**; "
        f"bank {r['bank_size_ratio']:.1f}× smaller; same policy, estimates and account: "
        f"{r['same_policy_estimates_account']}.",
        "",
        f"Bank writes alone ({w['new']['rows']:,} replay rows, SQLite): "
        f"{w['old']['completions_per_s_cpu']:,.0f} → {w['new']['completions_per_s_cpu']:,.0f} "
        f"completions/s of CPU ({r['bank_writes_speedup_cpu']:.1f}×), "
        f"{w['old']['completions_per_s_wall']:,.0f} → {w['new']['completions_per_s_wall']:,.0f} "
        f"per s of wall ({r['bank_writes_speedup_wall']:.1f}×).",
        "",
        f"Upgrading the old run's bank in place (schema 2 → 3, then VACUUM): "
        f"{u['wall_s']:.1f} s wall, {u['cpu_s']:.1f} s CPU, "
        f"{u['bank_bytes_before'] / 1e6:.1f} → {u['bank_bytes_after'] / 1e6:.1f} MB.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
