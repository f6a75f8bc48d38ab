"""Variance of per-pull estimates: U-statistic vs the paper's disjoint blocks, four ways.

One pull of n = 32 completions estimates Q at every N = k ≤ 32 (environments whose N_max is
smaller are measured at n = N_max as well: PSST's pulls there). Both estimators are computed on
the same drawn pulls (i.i.d. from each cell's categorical law, as replay does) in one cost-blind
context per environment, and each measurement reports the per-pull variance of each estimator and
their ratio blocks / U-statistic, with a 95 % delta-method confidence interval. An algorithm
averages many such pulls, so the ratio is how many times more completions the block estimator
needs for the same precision of *that* quantity. The four quantities:

* ``within_cell``: Q of a fixed (prompt, query) cell (random cells, many pulls each);
* ``random_query``: Q of a prompt averaged over queries, each pull on a uniformly random query
  (variance over query and samples; what one pull contributes to an arm's estimate);
* ``prompt_difference``: Q_p(N) − Q_p'(N) from two pulls of different prompts on the same random
  query (paired, as PSST pulls its live prompts);
* ``n_difference``: Q_p(k) − Q_p(2k) from the same pull on a random query (the comparison PSST's
  halving makes between the arms of one prompt).

``between_query_share`` is the exact between-query variance (from the pool's exact Q table)
divided by the U-statistic's total variance: the part no estimator of the pulls can remove.

Run: ``.venv/bin/python benchmarks/bench_variance.py --out docs/bench/estimators.json``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from iapo.bench import EncodedPool, build_environment, encode_pool
from iapo.types import Context

N_PULL = 32
KS = (2, 4, 8, 16)
K_PAIRS = ((1, 2), (2, 4), (4, 8), (8, 16), (16, 32))
ENVS = ("synth-bernoulli", "mcqa-gpt35", "synth-categorical", "tot-writing", "tot-game24")
METHODS = ("ustat", "blocks")
Z95 = 1.959963984540054

HOW = {
    "within_cell": "a fixed (prompt, query) cell: random cells, every pull from the same cell; "
    "variance over samples, mean over cells",
    "random_query": "one prompt's Q averaged over queries: each pull on a uniformly random query; "
    "variance over query and samples, mean over prompts",
    "prompt_difference": "Q_p(N) − Q_p'(N): two prompts pulled on the same random query "
    "(paired, as PSST pulls them); variance of the difference, mean over prompt pairs",
    "n_difference": "Q_p(k) − Q_p(2k) from the same pull on a random query (PSST's halving "
    "inside a prompt); variance of the difference, mean over prompts",
}


def ratio_ci(ustat: NDArray[np.float64], blocks: NDArray[np.float64]) -> dict[str, float | None]:
    """Per-pull variances and their ratio blocks / U-stat, with a 95 % delta-method CI.

    ``ustat`` and ``blocks`` are paired values (G, M): G groups (cells, prompts, pairs) whose
    variances are averaged, M pulls each; pull i of every group is independent of pull j ≠ i of
    every group (groups may share pull i, e.g. one query for all prompts). Each group's variance
    is taken around its own mean (ddof = 1). The CI treats the M pull indices as i.i.d.: with
    d = squared deviations and R the ratio, SE(R) = sd_i(mean_g(d_b − R·d_u)) / (√M · V_u).
    """
    m = ustat.shape[1]
    if m < 3:
        raise ValueError(f"need at least 3 pulls per group, got {m}")
    scale = m / (m - 1)
    du = (ustat - ustat.mean(axis=1, keepdims=True)) ** 2 * scale
    db = (blocks - blocks.mean(axis=1, keepdims=True)) ** 2 * scale
    vu, vb = float(du.mean()), float(db.mean())
    if vu == 0.0:  # the quantity is constant under the U-statistic (e.g. Q(1) − Q(2), two classes)
        same = 1.0 if vb == 0.0 else None
        return {"var_ustat": vu, "var_blocks": vb, "ratio": same, "ci_low": same, "ci_high": same}
    r = vb / vu
    per_pull = (db - r * du).mean(axis=0)  # (M,), i.i.d. over pulls, mean ≈ 0
    se = float(per_pull.std(ddof=1)) / np.sqrt(m) / vu
    return {
        "var_ustat": vu,
        "var_blocks": vb,
        "ratio": r,
        "ci_low": r - Z95 * se,
        "ci_high": r + Z95 * se,
    }


def _context(env_name: str, contexts: Sequence[Context]) -> int:
    """The measured context: the first cost-blind one (on synth-categorical, the middle of the
    helpful/harmless grid)."""
    if env_name == "synth-categorical":
        return next(i for i, c in enumerate(contexts) if c.name.startswith("helpful=0.5,"))
    return next(i for i, c in enumerate(contexts) if c.cost_weight == 0.0)


def _estimates(
    sim: EncodedPool, prompt: NDArray[np.int64], query: NDArray[np.int64], rng: np.random.Generator
) -> dict[str, NDArray[np.float64]]:
    """Both estimators on the same pulls of n = sim.n_max: method → (m, n), every N = k ≤ n."""
    oc = sim.draw(prompt, query, sim.n_max, rng)
    return {m: sim.estimates_for(prompt, query, oc, m)[:, 0, :] for m in METHODS}  # type: ignore[arg-type]


def within_cell(sim: EncodedPool, cells: int, pulls: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, 0])
    n_q = len(sim.queries)
    picks = rng.choice(
        len(sim.prompts) * n_q, size=min(cells, len(sim.prompts) * n_q), replace=False
    )
    prompt, query = np.divmod(np.repeat(picks, pulls).astype(np.int64), n_q)
    est = {
        m: e.reshape(len(picks), pulls, sim.n_max)
        for m, e in _estimates(sim, prompt, query, rng).items()
    }
    rows = []
    for k in _ks(sim.n_max):
        r = ratio_ci(est["ustat"][:, :, k - 1], est["blocks"][:, :, k - 1])
        rows.append({"N": k, "blocks_used": sim.n_max // k, **r})
    return {"how": HOW["within_cell"], "cells": len(picks), "pulls_per_cell": pulls, "rows": rows}


def _ks(n: int) -> tuple[int, ...]:
    """The N measured for pulls of n: those of KS below n (at N = n both use the whole pull)."""
    return tuple(k for k in KS if k < n)


def _pair_list(n_prompts: int, max_pairs: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    pairs = [(a, b) for a in range(n_prompts) for b in range(a + 1, n_prompts)]
    if len(pairs) <= max_pairs:
        return pairs
    keep = rng.choice(len(pairs), size=max_pairs, replace=False)
    return [pairs[i] for i in sorted(keep)]


def random_query(sim: EncodedPool, total_pulls: int, max_pairs: int, seed: int) -> dict[str, Any]:
    """Measurements (b)–(d) from one design: M uniformly random queries (with replacement), every
    prompt pulled once on each, so pull i of every prompt shares query i (the pairing of (c))."""
    rng = np.random.default_rng([seed, 1])
    n_p, n_q = len(sim.prompts), len(sim.queries)
    m = max(total_pulls // n_p, 3)
    queries = rng.integers(n_q, size=m)
    prompt = np.repeat(np.arange(n_p, dtype=np.int64), m)
    query = np.tile(queries, n_p).astype(np.int64)
    est = {k: e.reshape(n_p, m, sim.n_max) for k, e in _estimates(sim, prompt, query, rng).items()}
    exact = sim.exact[:, :, 0, :]  # (P, Q, n_max): the between-query part of every variance
    pairs = _pair_list(n_p, max_pairs, rng)
    a, b = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    single, diff_p, diff_n = [], [], []
    for k in _ks(sim.n_max):
        c = k - 1
        r = ratio_ci(est["ustat"][:, :, c], est["blocks"][:, :, c])
        single.append({"N": k, **r, "between_query_share": _share(exact[:, :, c], r)})
        r = ratio_ci(
            est["ustat"][a, :, c] - est["ustat"][b, :, c],
            est["blocks"][a, :, c] - est["blocks"][b, :, c],
        )
        diff_p.append(
            {"N": k, **r, "between_query_share": _share(exact[a, :, c] - exact[b, :, c], r)}
        )
    for k1, k2 in (p for p in K_PAIRS if p[1] <= sim.n_max):
        c1, c2 = k1 - 1, k2 - 1
        r = ratio_ci(
            est["ustat"][:, :, c1] - est["ustat"][:, :, c2],
            est["blocks"][:, :, c1] - est["blocks"][:, :, c2],
        )
        diff_n.append(
            {
                "k": k1,
                "k2": k2,
                **r,
                "between_query_share": _share(exact[:, :, c1] - exact[:, :, c2], r),
            }
        )
    return {
        "random_query": {
            "how": HOW["random_query"],
            "prompts": n_p,
            "pulls_per_prompt": m,
            "rows": single,
        },
        "prompt_difference": {
            "how": HOW["prompt_difference"],
            "pairs": len(pairs),
            "pulls_per_pair": m,
            "rows": diff_p,
        },
        "n_difference": {
            "how": HOW["n_difference"],
            "prompts": n_p,
            "pulls_per_prompt": m,
            "rows": diff_n,
        },
    }


def _share(exact_by_query: NDArray[np.float64], r: dict[str, float | None]) -> float | None:
    """Exact between-query variance (uniform over queries, mean over groups) / U-stat variance
    (None where the U-statistic's variance is 0)."""
    between = float(exact_by_query.var(axis=1).mean())
    vu = r["var_ustat"]
    return between / vu if vu else None


def measure(
    env_name: str, cells: int, pulls: int, total_pulls: int, max_pairs: int, seed: int
) -> list[dict[str, Any]]:
    """Every measurement of ``env_name`` with pulls of n = 32 and, where the environment's
    N_max is smaller, also with n = N_max (the size of PSST's pulls there)."""
    env = build_environment(env_name)
    ctx = _context(env_name, env.contexts)
    out = []
    for n in sorted({N_PULL, min(env.n_max, N_PULL)}, reverse=True):
        sim = encode_pool(env.pool, env.strategy, [env.contexts[ctx]], n)
        out.append(
            {
                "env": env_name,
                "strategy": env.strategy.name,
                "context": env.contexts[ctx].name,
                "prompts": len(sim.prompts),
                "queries": len(sim.queries),
                "n_max": env.n_max,
                "n_per_pull": n,
                "within_cell": within_cell(sim, cells, pulls, seed),
                **random_query(sim, total_pulls, max_pairs, seed),
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


def _print(t: dict[str, Any]) -> None:
    print(f"{t['env']} ({t['strategy']}, {t['context']}), n = {t['n_per_pull']}:")
    for key in ("within_cell", "random_query", "prompt_difference", "n_difference"):
        cells = [
            f"{r['N'] if 'N' in r else str(r['k']) + 'v' + str(r['k2'])}: "
            + ("const" if r["ratio"] is None else f"{r['ratio']:.3f}")
            + ("" if r["ci_low"] is None else f" [{r['ci_low']:.3f}, {r['ci_high']:.3f}]")
            for r in t[key]["rows"]
        ]
        print(f"  {key:18s} " + "  ".join(cells))


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--envs", default=",".join(ENVS), help="comma-separated environments")
    ap.add_argument("--cells", type=int, default=200, help="(a): cells per environment")
    ap.add_argument("--pulls", type=int, default=400, help="(a): pulls per cell")
    ap.add_argument(
        "--random-pulls",
        type=int,
        default=80_000,
        help="(b)-(d): pulls per environment, split evenly over its prompts",
    )
    ap.add_argument("--max-pairs", type=int, default=64, help="(c): prompt pairs at most")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-timing", action="store_true", help="skip the kernel timings")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    tables = [
        t
        for e in args.envs.split(",")
        for t in measure(e, args.cells, args.pulls, args.random_pulls, args.max_pairs, args.seed)
    ]
    result: dict[str, Any] = {
        "command": "python benchmarks/bench_variance.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "seed": args.seed,
        "ci": "95 % delta-method CI of the variance ratio (pulls i.i.d.)",
        "estimators": tables,
        "wall_s": time.perf_counter() - t0,
    }
    if not args.no_timing:
        result["timing_1e4_pulls_n32_kmax32"] = timings()
    for t in tables:
        _print(t)
    for k in result.get("timing_1e4_pulls_n32_kmax32", []):
        print(f"{k['kernel']:34s} {k['seconds'] * 1e3:8.1f} ms")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
