"""Variance of the per-pull Q estimate: U-statistic vs the paper's disjoint blocks.

One pull of n = 32 completions estimates Q at every N = k ≤ 32. For k ∈ {2, 4, 8, 16}, this
script draws many pulls from real and synthetic cells (i.i.d. from each cell's categorical law,
as replay does), computes both estimators on the same pulls, and reports the variance of each
(mean over cells of the within-cell variance: the noise an algorithm averages away), the
variance per completion spent (variance × 32), and the ratio blocks / U-statistic: how many
times more completions the block estimator needs for the same precision. The cost-blind
context is used (no cost term: cost sums are estimated exactly alike up to the block cut).

Run: ``.venv/bin/python benchmarks/bench_variance.py --out docs/bench/estimators.json``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from iapo.bench import build_environment, encode_pool

N_PULL = 32
KS = (2, 4, 8, 16)
ENVS = ("synth-bernoulli", "mcqa-gpt35", "synth-categorical", "tot-writing")


def variance_table(env_name: str, cells: int, pulls: int, seed: int) -> dict[str, Any]:
    env = build_environment(env_name)
    sim = encode_pool(env.pool, env.strategy, env.contexts, N_PULL)
    ctx = next(i for i, c in enumerate(env.contexts) if c.cost_weight == 0.0)
    if env_name == "synth-categorical":  # the middle of the helpful/harmless grid
        ctx = next(i for i, c in enumerate(env.contexts) if c.name.startswith("helpful=0.5,"))
    rng = np.random.default_rng(seed)
    n_p, n_q = len(sim.prompts), len(sim.queries)
    picks = rng.choice(n_p * n_q, size=min(cells, n_p * n_q), replace=False)
    var = {m: np.zeros((len(picks), len(KS))) for m in ("ustat", "blocks")}
    for row, flat in enumerate(picks):
        p, q = divmod(int(flat), n_q)
        prompt = np.full(pulls, p)
        query = np.full(pulls, q)
        oc = sim.draw(prompt, query, N_PULL, rng)
        for m in ("ustat", "blocks"):
            est = sim.estimates_for(prompt, query, oc, m)  # type: ignore[arg-type]
            vals = est[:, ctx, [k - 1 for k in KS]]
            var[m][row] = vals.var(axis=0, ddof=1)
    out: dict[str, Any] = {
        "env": env_name,
        "strategy": env.strategy.name,
        "context": env.contexts[ctx].name,
        "cells": len(picks),
        "pulls_per_cell": pulls,
        "n_per_pull": N_PULL,
        "rows": [],
    }
    for j, k in enumerate(KS):
        vu, vb = float(var["ustat"][:, j].mean()), float(var["blocks"][:, j].mean())
        out["rows"].append(
            {
                "N": k,
                "blocks_used": N_PULL // k,
                "var_ustat": vu,
                "var_blocks": vb,
                "var_per_completion_ustat": vu * N_PULL,
                "var_per_completion_blocks": vb * N_PULL,
                "ratio_blocks_over_ustat": vb / vu if vu > 0 else None,
            }
        )
    return out


def timings() -> list[dict[str, Any]]:
    """Seconds to estimate every N ≤ 32 for 10^4 pulls of n = 32 (best of 3), per kernel."""
    from bench_estimators import cases

    out = []
    for name, fn in cases():
        best = min(_time(fn) for _ in range(3))
        out.append({"kernel": name, "seconds": best})
    return out


def _time(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=200)
    ap.add_argument("--pulls", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    tables = [variance_table(e, args.cells, args.pulls, args.seed) for e in ENVS]
    result = {"variance": tables, "timing_1e4_pulls_n32_kmax32": timings()}
    for t in tables:
        print(f"{t['env']} ({t['strategy']}, {t['context']}):")
        for r in t["rows"]:
            print(
                f"  N={r['N']:2d}  var ustat {r['var_ustat']:.3e}  blocks {r['var_blocks']:.3e}"
                f"  ratio {r['ratio_blocks_over_ustat']:.2f}"
            )
    for t in result["timing_1e4_pulls_n32_kmax32"]:
        print(f"{t['kernel']:34s} {t['seconds'] * 1e3:8.1f} ms")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
