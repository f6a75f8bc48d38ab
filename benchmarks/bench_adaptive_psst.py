"""Adaptive N, learned (issue #15): PSST's policies with and without adaptive arms.

On every majority-vote environment of ``iapo bench --env`` (the shared pools and the synthetic
environments), ``run_benchmark(env, algorithms=["psst_any"], adaptive=RULES)``: the paper's
protocol (paired runs on reshuffled 80/20 splits, exact test scores), ``psst_any`` on the
fixed arms and ``psst_any+adaptive`` on the arm set extended with the adaptive arms (same seeds,
paired by run). Per budget and context: exact test Q of the learned arm and its expected samples
per query on test, means over runs; the paired two-sided Wilcoxon p of the ACR (from the
benchmark's summary). Writes ``docs/bench/adaptive-psst.json`` and prints markdown.

    nice -n 15 .venv/bin/python benchmarks/bench_adaptive_psst.py --runs 200   # the full run
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from iapo.bench import run_benchmark

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "bench"
ENVS = (
    "mcqa-gpt35",
    "ccot-aqua-rat",
    "ccot-lsat-ar",
    "ccot-sat-math",
    "ccot-logiqa-en",
    "ccot-medmcqa-dev",
    "renze-temperature-all",
    "synth-bernoulli",
    "synth-48x32",
)
RULES = ("decided", "beta:0.9", "window:3")
BATCH = 1
BUDGETS = (5000, 20_000, 50_000)
BASE, TWIN = "psst_any", "psst_any+adaptive"


def run_env(name: str, runs: int, workers: int, shared: str | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    res = run_benchmark(
        name,
        algorithms=[BASE],
        budgets=BUDGETS,
        runs=runs,
        workers=workers,
        shared=shared,
        adaptive=RULES,
        adaptive_batch=BATCH,
    )
    data = res.data
    weights = data["protocol"]["cost_weights"]
    out: dict[str, Any] = {"env": name, "cost_weights": weights, "budgets": {}}
    for b in BUDGETS:
        key = str(b)
        rows = [r["results"] for r in data["runs"] if key in r["results"].get(TWIN, {})]
        if not rows:
            continue
        cell: dict[str, Any] = {"runs": len(rows)}
        for label in (BASE, TWIN):
            acr = np.array([r[label][key]["acr"] for r in rows])
            samples = np.array([r[label][key]["samples"] for r in rows])  # (runs, C)
            cell[label] = {"acr": float(acr.mean()), "samples": samples.mean(axis=0).tolist()}
        summ = data["summary"]["algorithms"][TWIN][key]
        cell["wilcoxon_p"] = summ.get("wilcoxon_p")
        cell["acr_diff"] = cell[TWIN]["acr"] - cell[BASE]["acr"]
        cell["adaptive_share"] = float(
            np.mean([[_is_adaptive(a, data) for a in r[TWIN][key]["arms"]] for r in rows])
        )
        out["budgets"][key] = cell
    out["wall_s"] = time.perf_counter() - t0
    return out


def _is_adaptive(flat: int, data: dict[str, Any]) -> bool:
    n_max = int(data["env"]["n_max"])
    width = n_max * (1 + len(data["protocol"]["adaptive"]))
    return flat % width >= n_max


def markdown(results: list[dict[str, Any]], runs: int) -> str:
    lines = [
        "| env | budget | runs | ACR fixed | ACR +adaptive | Δ | Wilcoxon p "
        "| E[samples] per context, fixed → +adaptive | adaptive arms chosen |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for key, c in r["budgets"].items():
            fx, ad = c[BASE], c[TWIN]
            pairs = ", ".join(
                f"w={w:g}: {a:.2f} → {b:.2f}"
                for w, a, b in zip(r["cost_weights"], fx["samples"], ad["samples"], strict=True)
            )
            p = c["wilcoxon_p"]
            lines.append(
                f"| {r['env']} | {int(key) // 1000}k | {c['runs']} | {fx['acr']:.4f} | "
                f"{ad['acr']:.4f} | {c['acr_diff']:+.4f} | "
                f"{'—' if p is None else f'{p:.2g}'} | {pairs} | "
                f"{100 * c['adaptive_share']:.0f} % |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--envs", default=",".join(ENVS))
    ap.add_argument("--shared", default=None)
    ap.add_argument("--out", default=str(DOCS / "adaptive-psst.json"))
    args = ap.parse_args()
    results = []
    for name in [e for e in args.envs.split(",") if e]:
        results.append(run_env(name, args.runs, args.workers, args.shared))
        print(f"{name}: {results[-1]['wall_s']:.0f} s", flush=True)
        Path(args.out).write_text(
            json.dumps(
                {
                    "command": f"benchmarks/bench_adaptive_psst.py --runs {args.runs} "
                    f"--envs {args.envs}",
                    "rules": list(RULES),
                    "batch": BATCH,
                    "budgets": list(BUDGETS),
                    "results": results,
                    "versions": {"python": platform.python_version(), "numpy": np.__version__},
                },
                indent=1,
            )
        )
    print(markdown(results, args.runs))


if __name__ == "__main__":
    main()
