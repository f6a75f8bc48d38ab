"""Adaptive N, a first look (issue #15): per prompt, the best fixed-N arm against the cheapest
adaptive arm at equal or better exact accuracy, on every majority-vote environment.

For each environment (the shared majority-vote pools; ``--synthetic`` adds the synthetic ones)
and each prompt, with exact expectations over the test-free full query set (every query of the
pool, categorical model of replay):

* fixed arms (p, N), N = 1..N_max: accuracy from :func:`iapo.estimators.mv_exact`;
* adaptive arms (p, scheme): every rule of ``RULES`` × batch ``BATCHES`` × N_max' = 1..N_max
  (batch ≤ N_max'), accuracy and expected samples from
  :func:`iapo.adaptive.adaptive_exact`.

Cost weight 0: the best fixed arm is the smallest N reaching the prompt's best fixed accuracy
(within ``TOL``); the best adaptive arm is the one with the fewest expected samples among those
with accuracy ≥ that (within ``TOL``); the saving is N* / E[samples]. ``decided`` alone (same
accuracy by construction) is reported too. For every cost context of the environment, the best
arm overall with and without adaptive arms (utility ``accuracy − w·E[cost]``, costs normalised
as ``iapo bench`` does) is compared as well. CPU seconds of the exact programmes are recorded.

    nice -n 15 .venv/bin/python benchmarks/bench_adaptive.py --synthetic  # adaptive-exact.*
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from iapo.adaptive import (
    AdaptiveScheme,
    Beta,
    Decided,
    Dirichlet,
    StopRule,
    Window,
    adaptive_exact,
    cell_arrays,
    parse_rule,
)
from iapo.bench import build_environment
from iapo.estimators import mv_exact

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "bench"
SHARED_ENVS = (
    "mcqa-gpt35",
    "ccot-aqua-rat",
    "ccot-lsat-ar",
    "ccot-sat-math",
    "ccot-logiqa-en",
    "ccot-medmcqa-dev",
    "renze-temperature-all",
)
SYNTH_ENVS = ("synth-bernoulli", "synth-48x32")
RULES: tuple[StopRule, ...] = (
    Decided(),
    Beta(0.8),
    Beta(0.9),
    Beta(0.95),
    Dirichlet(0.8),
    Dirichlet(0.9),
    Dirichlet(0.95),
    Window(2),
    Window(3),
    Window(4),
)
BATCHES = (1, 2, 4)
TOL = 1e-9


def _n_grid(n_max: int) -> list[int]:
    return list(range(1, n_max + 1))


def run_env(name: str, shared: str | None) -> dict[str, Any]:
    env = build_environment(name, shared=shared)
    pool = env.pool
    n_p, n_q, n_max = len(pool.prompts), len(pool.queries), env.n_max
    cells = [pool.cell(p, q) for p in pool.prompts for q in pool.queries]
    probs, gold, mean_cost = cell_arrays(cells)
    t0 = time.process_time()
    fixed_acc = mv_exact(probs, gold, n_max).reshape(n_p, n_q, n_max).mean(axis=1)  # (P, N)
    t_fixed = time.process_time() - t0
    fixed_cost = mean_cost.reshape(n_p, n_q).mean(axis=1)[:, None] * np.arange(1, n_max + 1)
    arms: list[dict[str, Any]] = []  # adaptive: scheme id, per-prompt accuracy/samples/cost
    t0 = time.process_time()
    for rule in RULES:
        for batch in BATCHES:
            for n in _n_grid(n_max):
                if batch > n or (batch > 1 and n == 1):
                    continue
                sc = AdaptiveScheme(rule, n, batch)
                ex = adaptive_exact(probs, gold, sc, mean_cost=mean_cost)
                arms.append(
                    {
                        "scheme": sc.id,
                        "rule": rule.id.split(":")[0],
                        "acc": ex.credit.reshape(n_p, n_q).mean(axis=1),
                        "samples": ex.samples.reshape(n_p, n_q).mean(axis=1),
                        "cost": ex.cost.reshape(n_p, n_q).mean(axis=1),
                    }
                )
    t_adaptive = time.process_time() - t0
    acc = np.array([a["acc"] for a in arms])  # (A, P)
    samples = np.array([a["samples"] for a in arms])
    cost = np.array([a["cost"] for a in arms])
    per_prompt = []
    for pi, p in enumerate(pool.prompts):
        best = float(fixed_acc[pi].max())
        n_star = int(np.flatnonzero(fixed_acc[pi] >= best - TOL)[0]) + 1
        ok = np.flatnonzero(acc[:, pi] >= fixed_acc[pi, n_star - 1] - TOL)
        j = int(ok[np.argmin(samples[ok, pi])])
        dec = next(i for i, a in enumerate(arms) if a["scheme"] == f"decided/b1/n{n_star}")
        per_prompt.append(
            {
                "prompt": p,
                "fixed_n": n_star,
                "fixed_acc": float(fixed_acc[pi, n_star - 1]),
                "adaptive": arms[j]["scheme"],
                "adaptive_acc": float(acc[j, pi]),
                "adaptive_samples": float(samples[j, pi]),
                "decided_samples": float(samples[dec, pi]),
                "saving": n_star / float(samples[j, pi]),
            }
        )
    contexts = []
    for c in env.contexts:
        w = c.cost_weight
        qf = fixed_acc - w * fixed_cost  # (P, N)
        fp, fn = np.unravel_index(int(np.argmax(qf)), qf.shape)
        qa = acc - w * cost  # (A, P)
        top = max(float(qf.max()), float(qa.max()))
        # the best arm with adaptive arms allowed: highest utility, fewest samples among ties
        cands = [(float(fn + 1), "fixed", int(fp), -1)] if qf.max() >= top - TOL else []
        for ai, pi in zip(*np.nonzero(qa >= top - TOL), strict=True):
            cands.append((float(samples[ai, pi]), "adaptive", int(pi), int(ai)))
        s_best, kind, bp, ba = min(cands)
        contexts.append(
            {
                "context": c.name,
                "cost_weight": w,
                "fixed": {
                    "arm": f"{pool.prompts[fp]}@{fn + 1}",
                    "utility": float(qf[fp, fn]),
                    "accuracy": float(fixed_acc[fp, fn]),
                    "samples": float(fn + 1),
                },
                "with_adaptive": {
                    "arm": f"{pool.prompts[bp]}@{fn + 1}"
                    if kind == "fixed"
                    else f"{pool.prompts[bp]}~{arms[ba]['scheme']}",
                    "utility": top,
                    "accuracy": float(fixed_acc[fp, fn]) if kind == "fixed" else float(acc[ba, bp]),
                    "samples": s_best,
                },
            }
        )
    savings = np.array([r["saving"] for r in per_prompt])
    return {
        "env": name,
        "prompts": n_p,
        "queries": n_q,
        "n_max": n_max,
        "schemes": len(arms),
        "cpu_seconds": {"fixed_mv_exact": t_fixed, "adaptive_exact_all_schemes": t_adaptive},
        "summary": {
            "mean_fixed_n": float(np.mean([r["fixed_n"] for r in per_prompt])),
            "mean_adaptive_samples": float(np.mean([r["adaptive_samples"] for r in per_prompt])),
            "mean_decided_samples": float(np.mean([r["decided_samples"] for r in per_prompt])),
            "pooled_saving": float(
                sum(r["fixed_n"] for r in per_prompt)
                / sum(r["adaptive_samples"] for r in per_prompt)
            ),
            "pooled_decided_saving": float(
                sum(r["fixed_n"] for r in per_prompt)
                / sum(r["decided_samples"] for r in per_prompt)
            ),
            "median_saving": float(np.median(savings)),
            "max_saving": float(savings.max()),
            "winning_rules": dict(Counter(r["adaptive"].split("/")[0] for r in per_prompt)),
        },
        "contexts": contexts,
        "per_prompt": per_prompt,
    }


def markdown(results: list[dict[str, Any]], command: str) -> str:
    out = [  # BENCHMARKS.md section 8 gives the heading
        f"`{command}`",
        "",
        "Per prompt, cost weight 0: N* = the smallest fixed N reaching the prompt's best exact "
        "accuracy; adaptive = the arm with the fewest expected samples at equal or better exact "
        f"accuracy (rules {', '.join(r.id for r in RULES)}; batches {BATCHES}; N_max' ≤ N_max); "
        "decided = `decided/b1/nN*` (identical accuracy by construction). Saving = Σ N* / Σ "
        "E[samples] over prompts (median and max per prompt in brackets).",
        "",
        "| env | prompts × queries | N_max | mean N* | mean E[samples] adaptive | saving "
        "(median, max) | decided E[samples] | decided saving | rules that win |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r["summary"]
        rules = ", ".join(f"{k} {v}" for k, v in sorted(s["winning_rules"].items()))
        out.append(
            f"| {r['env']} | {r['prompts']} × {r['queries']} | {r['n_max']} | "
            f"{s['mean_fixed_n']:.2f} | {s['mean_adaptive_samples']:.2f} | "
            f"{s['pooled_saving']:.2f}× ({s['median_saving']:.2f}, {s['max_saving']:.2f}) | "
            f"{s['mean_decided_samples']:.2f} | {s['pooled_decided_saving']:.2f}× | {rules} |"
        )
    out += [
        "",
        "Best arm per cost context (utility = accuracy − w·E[normalised cost]), fixed arms only "
        "vs adaptive arms allowed:",
        "",
        "| env | w | fixed arm | U | acc | samples | with adaptive | U | acc | E[samples] |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for c in r["contexts"]:
            f, a = c["fixed"], c["with_adaptive"]
            out.append(
                f"| {r['env']} | {c['cost_weight']:g} | {f['arm']} | {f['utility']:.4f} | "
                f"{f['accuracy']:.4f} | {f['samples']:.0f} | {a['arm']} | {a['utility']:.4f} | "
                f"{a['accuracy']:.4f} | {a['samples']:.2f} |"
            )
    out += [
        "",
        "Reading: at cost weight 0 the cheapest arm at the best fixed accuracy is nearly always "
        "`decided` (the heuristic rules save more samples but lose accuracy at these N_max); "
        "the saving at equal accuracy is 1.2-1.5× per environment, far below Adaptive-"
        "Consistency's 7.9×. The shared pools cap N_max at 10 (one pull of 10 recorded samples "
        "per cell): `decided` then saves at most 10/6 = 1.67× on a query (a unanimous vote is "
        "settled after 6 of 10), and the heuristic rules cannot stop much earlier without "
        "losing accuracy; the anchor's budgets were larger. The synthetic environments (N_max "
        "32, two answers per cell, success probabilities spread around ½) show the same 1.4×. "
        "At cost weights > 0, adaptive arms raise the best utility where the best fixed arm "
        "has N > 1 (ccot-aqua-rat, ccot-lsat-ar, ccot-medmcqa-dev, both synthetic ones); "
        "where the best fixed arm is N = 1 nothing changes. These are exact expectations over "
        "all queries of each pool (no train/test split, no learning); PSST with adaptive arms "
        "(200 runs, Wilcoxon) is the learned table of this section. Not included: "
        "tot-game24 and tot-writing (Best-of-N pools: correctness or judge scores, no "
        "answers to vote on) and qwen05-gsm8k (one prompt, 5 samples, no importer).",
    ]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=None, help="folder holding data/pools")
    ap.add_argument("--synthetic", action="store_true", help="add the synthetic environments")
    ap.add_argument("--envs", nargs="*", default=None)
    ap.add_argument("--out", default=str(DOCS / "adaptive-exact"))
    ap.add_argument("--md-only", action="store_true", help="re-render the .md from the .json")
    ap.add_argument("--rules", help="comma-separated rule ids instead of RULES (a smaller set)")
    ap.add_argument("--batches", help="comma-separated batch sizes instead of BATCHES")
    args = ap.parse_args()
    global RULES, BATCHES
    if args.rules:
        RULES = tuple(parse_rule(r) for r in args.rules.split(","))
    if args.batches:
        BATCHES = tuple(int(b) for b in args.batches.split(","))
    if args.md_only:
        doc = json.loads(Path(args.out + ".json").read_text())
        md = markdown(doc["results"], doc["command"])
        Path(args.out + ".md").write_text(md)
        print(md)
        return
    envs = list(args.envs or SHARED_ENVS) + (list(SYNTH_ENVS) if args.synthetic else [])
    results = []
    for name in envs:
        t0 = time.time()
        results.append(run_env(name, args.shared))
        print(f"{name}: {time.time() - t0:.1f} s", flush=True)
    command = "nice -n 15 .venv/bin/python benchmarks/bench_adaptive.py " + " ".join(sys.argv[1:])
    md = markdown(results, command)
    doc = {
        "command": command,
        "machine": {"python": platform.python_version(), "machine": platform.machine()},
        "rules": [r.id for r in RULES],
        "batches": list(BATCHES),
        "tolerance": TOL,
        "results": results,
    }
    Path(args.out + ".json").write_text(json.dumps(doc, indent=1) + "\n")
    Path(args.out + ".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
