"""Adaptive N, learned (issue #15): PSST's policies with and without adaptive arms.

On every majority-vote environment of ``iapo bench --env`` (the shared pools and the synthetic
environments), ``run_benchmark(env, algorithms=["psst_any"], adaptive=RULES)``: the paper's
protocol (paired runs on reshuffled 80/20 splits, exact test scores), ``psst_any`` on the
fixed arms and ``psst_any+adaptive`` on the arm set extended with the adaptive arms (same seeds,
paired by run). Per budget and context: exact test Q of the learned arm and its expected samples
per query on test (means over runs), the paired two-sided Wilcoxon p of the per-context
differences. Writes ``docs/bench/adaptive-psst.json`` and prints markdown; ``--md-only FILES``
re-renders it from JSON files (docs/bench/adaptive-psst.md).

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
from bench_adaptive import SHARED_ENVS, SYNTH_ENVS  # benchmarks/, beside this script
from scipy.stats import wilcoxon

from iapo.bench import build_environment, encode_pool, run_benchmark

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "bench"
ENVS = (*SHARED_ENVS, *SYNTH_ENVS)  # every majority-vote environment of section 8
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
    env = build_environment(name, shared=shared)
    ids = tuple(data["protocol"]["adaptive"])
    sim = encode_pool(env.pool, env.strategy, env.contexts, env.n_max, adaptive=ids)
    n_ctx = len(env.contexts)
    width = env.n_max * (1 + len(ids))
    weights = [c.cost_weight for c in env.contexts]
    out: dict[str, Any] = {
        "env": name,
        "prompts": len(env.pool.prompts),
        "queries": len(env.pool.queries),
        "n_max": env.n_max,
        "cost_weights": weights,
        "budgets": {},
    }
    q_test = {r["run"]: sim.q_table(r["test"]).reshape(n_ctx, -1) for r in data["runs"]}
    for b in BUDGETS:
        key = str(b)
        rows = [r for r in data["runs"] if key in r["results"].get(TWIN, {})]
        if not rows:
            continue
        cell: dict[str, Any] = {"runs": len(rows)}
        per: dict[str, np.ndarray] = {}
        for label in (BASE, TWIN):
            arms = np.array([r["results"][label][key]["arms"] for r in rows])  # (runs, C)
            q = np.array(
                [q_test[r["run"]][np.arange(n_ctx), a] for r, a in zip(rows, arms, strict=True)]
            )
            samples = np.array([r["results"][label][key]["samples"] for r in rows])
            per[label] = q
            cell[label] = {
                "acr": float(q.mean()),
                "q": q.mean(axis=0).tolist(),  # per context, mean over runs
                "samples": samples.mean(axis=0).tolist(),
                "adaptive_share": np.mean(arms % width >= env.n_max, axis=0).tolist(),
            }
        diff = per[TWIN] - per[BASE]
        cell["q_diff"] = diff.mean(axis=0).tolist()
        cell["q_diff_sem"] = (diff.std(axis=0, ddof=1) / np.sqrt(len(rows))).tolist()
        cell["wilcoxon_p"] = [_wilcoxon(diff[:, c]) for c in range(n_ctx)]
        cell["acr_wilcoxon_p"] = data["summary"]["algorithms"][TWIN][key].get("wilcoxon_p")
        out["budgets"][key] = cell
    out["wall_s"] = time.perf_counter() - t0
    return out


def _wilcoxon(d: np.ndarray) -> float:
    """Two-sided paired Wilcoxon p (zero differences dropped; 1 when all are zero)."""
    if not np.any(d != 0):
        return 1.0
    return float(wilcoxon(d[d != 0]).pvalue)


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| env | budget | runs | w | Q fixed | Q +adaptive | Δ (p) | E[samples] fixed → "
        "+adaptive | adaptive chosen |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for key, c in r["budgets"].items():
            fx, ad = c[BASE], c[TWIN]
            for ci, w in enumerate(r["cost_weights"]):
                lines.append(
                    f"| {r['env']} | {int(key) // 1000}k | {c['runs']} | {w:g} | "
                    f"{fx['q'][ci]:.4f} | {ad['q'][ci]:.4f} | {c['q_diff'][ci]:+.4f} "
                    f"({c['wilcoxon_p'][ci]:.2g}) | {fx['samples'][ci]:.2f} → "
                    f"{ad['samples'][ci]:.2f} | {100 * ad['adaptive_share'][ci]:.0f} % |"
                )
    return "\n".join(lines)


def headline(results: list[dict[str, Any]]) -> str:
    """Per budget: at cost weight 0, the sample saving (E[samples] fixed / +adaptive, over
    every w = 0 context) and the accuracy change; at w > 0, the utility change."""
    lines = [
        "| budget | w = 0: E[samples] fixed → +adaptive (saving) | w = 0: ΔQ (accuracy) | "
        "w > 0: mean ΔQ (utility) | w > 0 contexts better / worse (p < 0.05) |",
        "|---|---|---|---|---|",
    ]
    for key in [str(b) for b in BUDGETS]:
        s0 = s1 = 0.0
        d0: list[float] = []
        dp: list[float] = []
        better = worse = 0
        for r in results:
            c = r["budgets"].get(key)
            if c is None:
                continue
            for ci, w in enumerate(r["cost_weights"]):
                if w == 0:
                    s0 += c[BASE]["samples"][ci]
                    s1 += c[TWIN]["samples"][ci]
                    d0.append(c["q_diff"][ci])
                else:
                    dp.append(c["q_diff"][ci])
                    sig = c["wilcoxon_p"][ci] < 0.05
                    better += sig and c["q_diff"][ci] > 0
                    worse += sig and c["q_diff"][ci] < 0
        if not d0 and not dp:
            continue
        lines.append(
            f"| {int(key) // 1000}k | {s0:.1f} → {s1:.1f} ({s0 / max(s1, 1e-9):.2f}×) | "
            f"{np.mean(d0):+.4f} | {np.mean(dp):+.4f} | {better} / {worse} of {len(dp)} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--envs", default=",".join(ENVS))
    ap.add_argument("--shared", default=None)
    ap.add_argument("--out", default=str(DOCS / "adaptive-psst.json"))
    ap.add_argument("--md-only", nargs="*", help="print the markdown of these JSON files")
    args = ap.parse_args()
    if args.md_only is not None:
        merged = [r for f in args.md_only for r in json.loads(Path(f).read_text())["results"]]
        print(headline(merged) + "\n\n" + markdown(merged))
        return
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
    print(headline(results) + "\n\n" + markdown(results))


if __name__ == "__main__":
    main()
