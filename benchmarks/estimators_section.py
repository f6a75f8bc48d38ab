"""BENCHMARKS.md section 3: the estimator variance ratios and the end-to-end estimator rows.

``estimators`` renders ``docs/bench/estimators.json`` (written by ``bench_variance.py``): the
blocks / U-statistic variance ratio for four quantities, each with its 95 % CI, how it was
measured and which decision it bears on. ``end_to_end`` counts, from the stored ``iapo bench``
results, the (environment, budget) cells where PSST with the U-statistic and PSST with the paper's
disjoint blocks differ significantly (their paired Wilcoxon test, ``vs_reference`` with strict
``psst`` as the reference).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from iapo.bench import BenchResult

#: (JSON key, heading, the decision the ratio bears on)
SETTINGS = (
    (
        "within_cell",
        "(a) Q of one fixed (prompt, query) cell",
        "none of PSST's: the precision on one query, e.g. reporting one item's accuracy",
    ),
    (
        "random_query",
        "(b) one prompt's Q over random queries",
        "the absolute level of one arm's estimate (the Q ± CI a run reports)",
    ),
    (
        "prompt_difference",
        "(c) Q_p(N) − Q_p'(N), two prompts on the same random query",
        "which prompt to keep: halving between the arms of different prompts",
    ),
    (
        "n_difference",
        "(d) Q_p(k) − Q_p(2k) from one pull on a random query",
        "which N to keep: halving between the arms of one prompt",
    ),
)
BLOCKS_LABELS = ("psst_paired_blocks", "psst_blocks")  # today's name, then its old name


def _cell(r: Mapping[str, Any]) -> str:
    if r["var_ustat"] == 0.0:
        return "= (constant)" if r["var_blocks"] == 0.0 else "∞"
    if r["ci_low"] == r["ci_high"]:
        return f"{r['ratio']:.2f} (identical)"
    return f"{r['ratio']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"


def _col(r: Mapping[str, Any]) -> str:
    return f"N = {r['N']}" if "N" in r else f"{r['k']} vs {r['k2']}"


def _share(rows: list[dict[str, Any]]) -> str:
    s = [r["between_query_share"] for r in rows if r.get("between_query_share") is not None]
    return f"{min(s):.2f}–{max(s):.2f}" if s else "—"


def _sizes(key: str, t: Mapping[str, Any]) -> str:
    m = t[key]
    if key == "within_cell":
        return f"{m['cells']} cells × {m['pulls_per_cell']} pulls"
    if key == "prompt_difference":
        pairs = "1 pair" if m["pairs"] == 1 else f"{m['pairs']} pairs"
        return f"{pairs} × {m['pulls_per_pair']} pulls"
    return f"{m['prompts']} prompts × {m['pulls_per_prompt']} pulls"


def _n(t: Mapping[str, Any]) -> str:
    """The pull size, marked where it is the environment's N_max (PSST's pulls there)."""
    n = t["n_per_pull"]
    return f"{n} (= N_max)" if n == t.get("n_max") else str(n)


def _ratios(rows: list[dict[str, Any]]) -> list[float]:
    return [r["ratio"] for r in rows if r["var_ustat"] > 0 and r["ratio"] is not None]


def estimators(path: Path) -> str:
    """Section 3's ratio tables from ``path`` (``docs/bench/estimators.json``)."""
    if not path.exists():
        return "*not run yet*"
    data = json.loads(path.read_text())
    if "estimators" not in data:
        return "*stale: re-run benchmarks/bench_variance.py*"
    tables = data["estimators"]
    out = [
        f"Command: `{data['command']}` (seed {data['seed']}, {data['wall_s']:.0f} s). Pulls of "
        "n = 32 completions, and of n = N_max where an environment's N_max is smaller (PSST's "
        "pulls there); one cost-blind context per environment (named below). "
        f"Brackets: {data['ci']}.",
        "",
        "| measurement | the decision it bears on | blocks / U-stat, range over environments, "
        "n and N |",
        "|---|---|---|",
    ]
    for key, title, decision in SETTINGS:
        vals = [x for t in tables for x in _ratios(t[key]["rows"])]
        out.append(f"| {title} | {decision} | {min(vals):.2f}–{max(vals):.2f} |")
    for key, title, _ in SETTINGS:
        cols: list[str] = []
        for t in tables:  # every table's columns, in order (pulls of n < 32 have fewer)
            cols += [c for c in (_col(r) for r in t[key]["rows"]) if c not in cols]
        share = key != "within_cell"
        out += [
            "",
            f"**{title}.** How: {tables[0][key]['how']}.",
            "",
            "| environment (strategy; context) | n | pulls | "
            + " | ".join(cols)
            + (" | between-query share |" if share else " |"),
            "|---|---|---|" + "---|" * (len(cols) + share),
        ]
        for t in tables:
            rows = t[key]["rows"]
            by_col = {_col(r): _cell(r) for r in rows}
            out.append(
                f"| {t['env']} ({t['strategy']}; {t['context']}) | {_n(t)} | {_sizes(key, t)} | "
                + " | ".join(by_col.get(c, "—") for c in cols)
                + (f" | {_share(rows)} |" if share else " |")
            )
    out += [
        "",
        "<details><summary>(a) in detail: per-pull variances and variance per completion "
        "(× n)</summary>",
        "",
        "| environment | n | N | blocks used | var U-stat | var blocks | var × n U-stat | blocks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in tables:
        for r in t["within_cell"]["rows"]:
            n = t["n_per_pull"]
            out.append(
                f"| {t['env']} | {n} | {r['N']} | {r['blocks_used']} | {r['var_ustat']:.3e} | "
                f"{r['var_blocks']:.3e} | {r['var_ustat'] * n:.3e} | {r['var_blocks'] * n:.3e} |"
            )
    out += ["", "</details>"]
    timing = data.get("timing_1e4_pulls_n32_kmax32")
    if timing:
        out += [
            "",
            "Time to estimate every N ≤ 32 for 10⁴ pulls of n = 32 (best of 3):",
            "",
            "| kernel | ms |",
            "|---|---|",
        ]
        out += [f"| {k['kernel']} | {k['seconds'] * 1e3:.1f} |" for k in timing]
    return "\n".join(out)


def end_to_end(results: Mapping[str, BenchResult | None], alpha: float) -> str:
    """Per environment: PSST (U-statistic) vs PSST with disjoint blocks, every budget both ran.

    ``results`` must be summarised against strict ``psst`` (what ``make_benchmarks._load``
    does), so a blocks row's ``vs_reference`` is the paired test of the two estimators."""
    lines = [
        "| environment | runs paired | budgets compared | U-stat significantly better | "
        "blocks significantly better | not significant | identical in every run |",
        "|---|---|---|---|---|---|---|",
    ]
    total = sig_u = sig_b = 0
    where: dict[str, int] = {}
    for env, res in results.items():
        if res is None:
            continue
        algos = res.summary["algorithms"]
        label = next((x for x in BLOCKS_LABELS if x in algos), None)
        if label is None or res.summary.get("reference") != "psst":
            continue
        u = b = ns = same = 0
        pairs: set[int] = set()
        for budget in res.budgets:
            vs = algos[label][str(budget)].get("vs_reference")
            if vs is None:
                continue
            pairs.add(int(vs["pairs"]))
            if vs["identical"]:
                same += 1
            elif vs["p"] < alpha:
                u, b = (u + 1, b) if vs["mean_diff"] < 0 else (u, b + 1)
            else:
                ns += 1
        n = u + b + ns + same
        total, sig_u, sig_b = total + n, sig_u + u, sig_b + b
        if u + b:
            where[env] = u + b
        runs = ", ".join(str(p) for p in sorted(pairs))
        lines.append(f"| {env} | {runs} | {n} | {u} | {b} | {ns} | {same} |")
    where_txt = ", ".join(f"{e} {k}" for e, k in where.items())
    lines += [
        "",
        f"In all: {sig_u + sig_b} of {total} (environment, budget) cells differ significantly "
        f"(two-sided paired Wilcoxon, p < {alpha}, no correction for the {total} tests: about "
        f"{alpha * total:.0f} would by chance): {sig_u} in favour of the U-statistic, {sig_b} in "
        f"favour of the blocks ({where_txt or 'none'}).",
    ]
    return "\n".join(lines)
