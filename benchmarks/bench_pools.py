"""Pool load + encode: the paper-sized compact pool as arrays, cold and warm, against the previous
implementation in the same run.

Builds a CommonsenseQA-like compact-form pool (48 prompts × 1,500 queries, 5 answer choices,
128 samples per cell, ~8 MB), then times what ``iapo bench`` does before its first run —
``build_environment(pool file)`` (read, validate, normalise costs) and ``encode_pool`` (arrays
and the exact table) — in a fresh subprocess per variant:

* ``previous``: the code at commit 466008b (``git archive`` into a temporary folder);
* ``cold``: this code, nothing cached (``IAPO_NO_CACHE=1``);
* ``first``: this code, cache on, nothing cached yet (parse, compute, write the cache);
* ``warm``: this code, the cache written by ``first`` (the second load of the same file).

CPU seconds (``time.process_time`` around the two calls: imports and interpreter start are not
counted) and peak RSS of the subprocess (``ru_maxrss``, imports included). Each variant runs
``--repeat`` times; the ratios use the median. Every variant's encoded pool (cum, cost, codes,
exact) is hashed and must equal the previous implementation's, bit for bit.

    nice -n 15 .venv/bin/python benchmarks/bench_pools.py            # writes docs/bench/pools.*
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "bench"
PREVIOUS = "466008b"
VARIANTS = ("previous", "cold", "first", "warm")
TARGETS = {"cold": 20.0, "warm": 100.0}


# -- the pool -----------------------------------------------------------------------------------


def make_pool(path: Path, n_prompts: int = 48, n_queries: int = 1500, seed: int = 0) -> None:
    """A CommonsenseQA-like compact pool: 5 choices, 128 samples per (prompt, query) as in the
    paper; P(gold) logistic in prompt skill − query difficulty, wrong answers concentrated on a
    few distractors (Dirichlet 0.1), 1 % abstentions, cost = output tokens (per prompt ~U(20,
    300), ±30 % per cell)."""
    rng = np.random.default_rng(seed)
    letters = "ABCDE"
    skill = rng.uniform(-0.5, 2.0, n_prompts)
    hard = rng.normal(0.0, 1.5, n_queries)
    gold = rng.integers(0, 5, n_queries)
    tokens = rng.uniform(20, 300, n_prompts)
    head = {
        "iapo_pool": 1,
        "objectives": ["accuracy"],
        "cost_unit": "output_tokens",
        "meta": {"description": "CommonsenseQA-like synthetic pool (benchmarks/bench_pools.py)"},
    }
    lines = [json.dumps(head)]
    for p in range(n_prompts):
        for q in range(n_queries):
            pg = 1 / (1 + np.exp(-(skill[p] - hard[q])))
            probs = np.empty(6)
            others = [i for i in range(5) if i != gold[q]]
            probs[gold[q]] = pg * 0.99
            probs[others] = rng.dirichlet(np.full(4, 0.1)) * (1 - pg) * 0.99
            probs[5] = 0.01
            counts = rng.multinomial(128, probs / probs.sum())
            ac = {letters[i]: int(counts[i]) for i in rng.permutation(5) if counts[i] > 0}
            cell: dict[str, Any] = {
                "prompt": f"p{p:02d}",
                "query": f"csqa-{q:04d}",
                "gold": letters[gold[q]],
                "answer_counts": ac,
            }
            if counts[5]:
                cell["abstain"] = int(counts[5])
            cell["cost"] = int(tokens[p] * rng.uniform(0.7, 1.3))
            lines.append(json.dumps(cell))
    path.write_text("\n".join(lines) + "\n")


def pool_stats(path: Path) -> dict[str, Any]:
    cells = outcomes = 0
    profiles: set[tuple[int, int, tuple[int, ...]]] = set()
    for line in path.read_text().split("\n")[1:]:
        if not line:
            continue
        d = json.loads(line)
        ac = d["answer_counts"]
        cells += 1
        outcomes += len(ac) + (1 if d.get("abstain") else 0)
        wrong = tuple(sorted((c for a, c in ac.items() if a != d["gold"]), reverse=True))
        profiles.add((ac.get(d["gold"], 0), d.get("abstain", 0), wrong))
    return {
        "bytes": path.stat().st_size,
        "cells": cells,
        "outcomes": outcomes,
        "distinct_vote_profiles": len(profiles),
    }


# -- one measurement (a subprocess) -------------------------------------------------------------


def floor(pool: Path, env: Any) -> dict[str, float]:
    """CPU seconds of the two parts of a cold load the current design cannot shrink, re-run
    alone in this process after its cold load: the JSON parser turning the file's cell lines
    into Python objects (``pydantic_core.from_json``, which the fast reader uses), and the exact
    table (``exact_cell_utilities``: its arithmetic must stay bit for bit the previous
    programme's). Each the fastest of three runs."""
    from pydantic_core import from_json

    from iapo.strategies import exact_cell_utilities

    lines = [t for t in pool.read_text().split("\n")[1:] if t.strip()]
    parse, exact = [], []
    for _ in range(3):  # the fastest of three
        t0 = time.process_time()
        for lo in range(0, len(lines), 8192):  # passes of 8,192 lines, as the fast reader's
            from_json("[" + "\n,".join(lines[lo : lo + 8192]) + "]")
        t1 = time.process_time()
        exact_cell_utilities(env.pool, env.strategy, env.contexts, env.n_max)
        t2 = time.process_time()
        parse.append(t1 - t0)
        exact.append(t2 - t1)
    return {"json_parse_cpu_s": min(parse), "exact_table_cpu_s": min(exact)}


def child(pool: Path, with_floor: bool = False) -> None:
    from iapo.bench import build_environment, encode_pool

    t0, w0 = time.process_time(), time.perf_counter()
    env = build_environment(str(pool))
    t1 = time.process_time()
    sim = encode_pool(env.pool, env.strategy, env.contexts, env.n_max)
    t2, w2 = time.process_time(), time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before hashing
    digest = hashlib.sha256()
    for name in ("cum", "cost", "codes", "exact"):
        arr = np.ascontiguousarray(getattr(sim, name))
        digest.update(f"{name}{arr.dtype}{arr.shape}".encode())
        digest.update(memoryview(arr).cast("B"))
    print(
        json.dumps(
            {
                "load_cpu_s": t1 - t0,
                "encode_cpu_s": t2 - t1,
                "cpu_s": t2 - t0,
                "wall_s": w2 - w0,
                "peak_rss_mib": peak,
                "sha256": digest.hexdigest(),
                "shape": list(sim.exact.shape),
                **({"floor": floor(pool, env)} if with_floor else {}),
            }
        )
    )


def run_variant(variant: str, pool: Path, old_src: Path, cache_dir: Path) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(old_src if variant == "previous" else ROOT / "src")
    env["IAPO_CACHE_DIR"] = str(cache_dir)
    env.pop("IAPO_NO_CACHE", None)
    if variant == "cold":
        env["IAPO_NO_CACHE"] = "1"
    if variant == "first":  # nothing cached yet
        for f in [*cache_dir.glob("*.npz"), *(pool.parent / ".iapo-cache").glob("*.npz")]:
            f.unlink()
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(pool), *(["--floor"] * (variant == "cold"))],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def previous_source(tmp: Path) -> Path:
    archive = tmp / "previous.tar"
    subprocess.run(
        ["git", "-C", str(ROOT), "archive", "-o", str(archive), PREVIOUS, "src"], check=True
    )
    with tarfile.open(archive) as tar:
        tar.extractall(tmp / "previous", filter="data")
    return tmp / "previous" / "src"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=3, help="runs per variant (default 3)")
    ap.add_argument("--out", type=Path, default=DOCS / "pools.json")
    args = ap.parse_args(argv)
    if args.child is not None:
        child(args.child, args.floor)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-pools-") as tmp_name:
        tmp = Path(tmp_name)
        pool = tmp / "csqa-like.jsonl"
        make_pool(pool)
        stats = pool_stats(pool)
        old_src = previous_source(tmp)
        cache_dir = tmp / "user-cache"
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        load = os.getloadavg()[0]
        for _ in range(args.repeat):  # interleaved: drift in the machine's load hits all alike
            for variant in VARIANTS:
                runs[variant].append(run_variant(variant, pool, old_src, cache_dir))
    summary = summarise(runs)
    data = {
        "benchmark": "pool load + encode (build_environment + encode_pool)",
        "command": "nice -n 15 .venv/bin/python benchmarks/bench_pools.py",
        "previous": PREVIOUS,
        "pool": {"prompts": 48, "queries": 1500, "samples_per_cell": 128, **stats},
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_at_start": load,
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "repeat": args.repeat,
        "variants": summary,
        "identical": len({r["sha256"] for rs in runs.values() for r in rs}) == 1,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    table = render(data)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return 0 if data["identical"] else 1


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    def med(variant: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs[variant]))

    base = med("previous", "cpu_s")
    out: dict[str, dict[str, Any]] = {}
    for v in VARIANTS:
        out[v] = {
            "cpu_s_median": med(v, "cpu_s"),
            "cpu_s_min": min(r["cpu_s"] for r in runs[v]),
            "load_cpu_s_median": med(v, "load_cpu_s"),
            "encode_cpu_s_median": med(v, "encode_cpu_s"),
            "wall_s_median": med(v, "wall_s"),
            "peak_rss_mib_median": med(v, "peak_rss_mib"),
            "speedup_vs_previous": base / med(v, "cpu_s"),
        }
        if v in TARGETS:
            out[v]["target"] = TARGETS[v]
            out[v]["target_met"] = out[v]["speedup_vs_previous"] >= TARGETS[v]
            out[v]["target_cpu_s"] = base / TARGETS[v]
    out["cold"]["floor_median"] = {
        k: float(statistics.median(r["floor"][k] for r in runs["cold"]))
        for k in ("json_parse_cpu_s", "exact_table_cpu_s")
    }
    return out


def render(data: dict[str, Any]) -> str:
    pool = data["pool"]
    lines = [
        "### Pool load + encode (48 × 1,500 compact pool)",
        "",
        f"`{data['command']}` — a CommonsenseQA-like compact pool ({pool['cells']:,} cells, "
        f"{pool['outcomes']:,} outcomes, {pool['bytes'] / 1e6:.1f} MB, "
        f"{pool['distinct_vote_profiles']:,} distinct vote profiles); `build_environment` + "
        f"`encode_pool` in a fresh process per variant, median of {data['repeat']} "
        f"(CPU s; peak RSS of the process), against commit {data['previous']} in the same run. "
        f"Encoded pools identical to the previous implementation's bit for bit: "
        f"{'yes' if data['identical'] else 'NO'}.",
        "",
        "| variant | load CPU s | encode CPU s | total CPU s | × previous | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {
        "previous": f"previous ({data['previous']})",
        "cold": "cold (no cache)",
        "first": "first load (writes the cache)",
        "warm": "warm (cache hit)",
    }
    for v, s in data["variants"].items():
        target = f" (target ≥ {s['target']:g}×)" if "target" in s else ""
        lines.append(
            f"| {names[v]} | {s['load_cpu_s_median']:.3f} | {s['encode_cpu_s_median']:.3f} | "
            f"{s['cpu_s_median']:.3f} | {s['speedup_vs_previous']:.1f}×{target} | "
            f"{s['peak_rss_mib_median']:.0f} |"
        )
    m = data["machine"]
    cold = data["variants"]["cold"]
    fl = cold["floor_median"]
    lines += [
        "",
        f"Machine: {m['cpus']} CPUs, load average {m['loadavg_at_start']:.1f} at the start, "
        f"Python {m['python']}, numpy {m['numpy']}.",
        "",
        "Cold, the file is read into columnar arrays in one JSON pass (no pydantic model or "
        "sample object per line), costs are scaled as one array, and `encode_pool` builds its "
        "arrays and the exact table on arrays. Warm, the pool's arrays and the encoded tables "
        "are memory-mapped from `.npz` files cached beside the pool (keyed by the file's "
        "SHA-256; CRC-checked), so a second load costs hashing the file and mapping the tables.",
        "",
        f"**Why cold stays below 20×.** The target is {cold['target_cpu_s']:.3f} s here. Two "
        "parts of the cold load, each re-run alone in the measuring process after its cold "
        "load (the fastest of three runs; medians over the cold runs), already take "
        f"{fl['json_parse_cpu_s'] + fl['exact_table_cpu_s']:.3f} s: the JSON parser turning "
        f"the 72,000 cell lines into Python objects ({fl['json_parse_cpu_s']:.3f} s; "
        "`pydantic_core.from_json`, the parser the full reader validates with, so numbers "
        "parse to the same floats), and the exact table "
        f"({fl['exact_table_cpu_s']:.3f} s; `exact_cell_utilities`). The exact table must "
        "equal the previous table bit for bit, or no stored bench table reproduces (CI checks "
        "them), so every distinct vote profile "
        f"({pool['distinct_vote_profiles']:,} here) goes through the same floating-point "
        "programme as before, vectorised across profiles (each distinct profile once, "
        "structurally-zero terms skipped). Reaching 20× needs compiled code for both: a "
        "reader from bytes to columns that creates no Python object per line, and a kernel "
        "performing the exact programme's operations in the same order.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
