"""Section 5 of BENCHMARKS.md: PSST at any budget (issue #11), rendered from docs/bench/any-*.json.

Inputs (written by ``iapo bench``, see benchmarks/run_all.sh, copied under these names):

* ``docs/bench/any-ENV.json``: every algorithm at every budget (the main runs);
* ``docs/bench/any-ENV-matched.json`` (optional): ``psst_any`` alone at the budgets equal to
  ``psst_paper``'s mean actual spend where it overspent (same seed, so run r has the same
  train/test split and is paired with run r of the main file);
* ``docs/bench/any-ENV-quarter.json`` (optional): ``psst_any`` at a quarter of strict PSST's
  minimum budget and ``psst`` at that minimum (same seed, paired by run).

Every comparison is against ``psst_any`` (the budget-feasible PSST): the runs are re-summarised
with it as the Wilcoxon reference. Every number printed here comes from these files.

Placeholders: ``{{any_budget:ENV}}`` (a large-arm environment, full block with plot),
``{{any_budget_pool:ENV}}`` (an existing pool, compact: ACR, spent, equal spend),
``{{any_budget_ablation}}`` (``psst_any`` against ``psst_any_paired``, groups 8 vs 1) and
``{{any_budget_targets}}`` (the issue's three targets over every environment).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import wilcoxon

from iapo.bench import BenchResult

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "bench"
REF = "psst_any"
#: The ablation: the previous schedule (one query group per round, groups = 1).
ABLATION = "psst_any_paired"
ALPHA = 0.05
#: Environment → (strict PSST's minimum budget, the budget taken as "a quarter" of it).
QUARTER = {
    "synth-48x32": (16896, 4224),
    "renze-temperature-all": (16390, 4098),
    "synth-200x64": (179200, 44800),
}

_CACHE: dict[str, BenchResult | None] = {}


def _budget(b: int) -> str:
    return f"{b // 1000}k" if b % 1000 == 0 and b >= 1000 else f"{b:,}"


def load(name: str) -> BenchResult | None:
    """``docs/bench/NAME.json`` re-summarised against ``psst_any`` (None if absent)."""
    if name not in _CACHE:
        path = DOCS / f"{name}.json"
        res = BenchResult.load(path) if path.exists() else None
        if res is not None:
            res.resummarise(reference=REF)
        _CACHE[name] = res
    return _CACHE[name]


def _per_run(res: BenchResult, label: str, budget: int) -> dict[int, dict[str, Any]]:
    key = str(budget)
    return {
        int(r["run"]): r["results"][label][key]
        for r in res.data["runs"]
        if key in r["results"].get(label, {})
    }


def paired(a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """Paired comparison of two per-run result maps (a − b) over the runs both have."""
    runs = sorted(set(a) & set(b))
    if len(runs) < 2:
        return None
    x = np.array([a[i]["acr"] for i in runs])
    y = np.array([b[i]["acr"] for i in runs])
    d = x - y
    p = 1.0 if np.all(d == 0) else float(wilcoxon(x, y).pvalue)
    return {
        "pairs": len(runs),
        "a": float(x.mean()),
        "a_sem": float(x.std(ddof=1) / math.sqrt(x.size)),
        "b": float(y.mean()),
        "b_sem": float(y.std(ddof=1) / math.sqrt(y.size)),
        "diff": float(d.mean()),
        "diff_sem": float(d.std(ddof=1) / math.sqrt(d.size)),
        "p": p if math.isfinite(p) else 1.0,
        "a_spent": float(np.mean([a[i].get("spent", math.nan) for i in runs])),
        "b_spent": float(np.mean([b[i].get("spent", math.nan) for i in runs])),
    }


def _verdict(c: dict[str, Any]) -> str:
    """How ``psst_any`` (a) compares with the other (b)."""
    if c["p"] >= ALPHA:
        return "not significantly different"
    return "PSST-any significantly better" if c["diff"] > 0 else "PSST-any significantly WORSE"


def matched(env: str) -> list[dict[str, Any]]:
    """Per budget of ``psst_paper``: ``psst_any`` at (about) the same actual spend, paired."""
    res = load(f"any-{env}")
    if res is None or "psst_paper" not in res.titles:
        return []
    extra = load(f"any-{env}-matched")
    rows = []
    for b in res.budgets:
        paper = _per_run(res, "psst_paper", b)
        if not paper:
            continue
        over = any(v["spent"] > b for v in paper.values())
        if not over:
            where, mine = b, _per_run(res, REF, b)
        else:
            target = int(np.floor(np.mean([v["spent"] for v in paper.values()])))
            where = target
            mine = _per_run(extra, REF, target) if extra is not None else {}
        c = paired(mine, paper)
        rows.append({"budget": b, "overspent": over, "any_budget": where, "cmp": c})
    return rows


def _matched_table(env: str) -> str:
    rows = matched(env)
    if not rows:
        return "*not run*"
    out = [
        "| psst_paper's budget | its mean actual spend | PSST-any run at | PSST-any mean spend "
        "| PSST-any ACR | psst_paper ACR | paired difference (any − paper) | p | runs | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r["cmp"]
        if c is None:
            out.append(
                f"| {_budget(r['budget'])} | — | {_budget(r['any_budget'])} | not run | | | | | | |"
            )
            continue
        out.append(
            f"| {_budget(r['budget'])} | {c['b_spent']:,.0f}{' ✱' if r['overspent'] else ''} | "
            f"{r['any_budget']:,} | {c['a_spent']:,.0f} | {c['a']:.4f} ± {c['a_sem']:.4f} | "
            f"{c['b']:.4f} ± {c['b_sem']:.4f} | {c['diff']:+.4f} ± {c['diff_sem']:.4f} | "
            f"{c['p']:.2g} | {c['pairs']} | {_verdict(c)} |"
        )
    return "\n".join(out)


def runs_line(res: BenchResult, unit: str = "paired runs per cell") -> str:
    """ "N UNIT", naming each algorithm that ran fewer runs (its first ones)."""
    per = {a["label"]: a["runs"] for a in res.data["algorithms"]}
    n = res.data["protocol"]["runs"]
    fewer = {k: v for k, v in per.items() if v < n}
    txt = f"{n} {unit}"
    if fewer:
        txt += " (" + ", ".join(f"{res.titles[k]}: the first {v}" for k, v in fewer.items()) + ")"
    return txt


def any_budget(env: str) -> str:
    """One environment's block: description, command, the bench's tables, plot, equal spend."""
    res = load(f"any-{env}")
    if res is None:
        return f"*{env}: not run yet.*"
    png = DOCS / f"any-{env}.png"
    res.plot(png)
    e = res.data["env"]
    extra = load(f"any-{env}-matched")
    matched_cmd = (
        f"Command (PSST-any at psst_paper's actual spend; {extra.data['protocol']['runs']} runs, "
        f"wall time {extra.data['wall_s'] / 60:.1f} min):\n\n```\n{extra.data['command']}\n```\n\n"
        if extra is not None
        else ""
    )
    return (
        f"{e['description']}.\n\n"
        f"{runs_line(res)}; seed {res.data['protocol']['seed']}; wall time "
        f"{res.data['wall_s'] / 60:.1f} min on 2 workers. Command:\n\n"
        f"```\n{res.data['command']}\n```\n\n"
        f"{res.markdown(heading='####')}\n"
        f"![{env}: ACR vs budget](docs/bench/any-{env}.png)\n\n"
        "Right panel: the paired difference to **PSST (any budget)**, the reference of this "
        "section, at the *nominal* budget where the pairs were made (for psst_paper ✱: "
        "psst_paper, spending more, minus PSST-any spending at most that budget); the "
        "equal-spend comparison is the table below (and the left panel, where psst_paper is "
        "drawn at its actual spend).\n\n"
        "#### PSST-any against psst_paper at equal actual spend\n\n"
        "Where psst_paper overspent, PSST-any was run again (same seed, so run r has the same "
        "split) at a budget equal to psst_paper's mean actual spend, rounded down; elsewhere "
        "both ran at the same budget.\n\n"
        f"{matched_cmd}"
        f"{_matched_table(env)}\n"
        f"{_quarter_block(env)}"
    )


def _quarter_block(env: str) -> str:
    """The extra run behind target 3 where the main runs do not hold both budgets."""
    q = load(f"any-{env}-quarter")
    if q is None:
        return ""
    minimum, quarter = QUARTER[env]
    c = paired(_per_run(q, REF, quarter), _per_run(q, "psst", minimum))
    if c is None:
        return ""
    return (
        f"\n#### PSST-any at a quarter of strict PSST's minimum ({quarter:,}) against strict "
        f"PSST at its minimum ({minimum:,})\n\n"
        f"{c['pairs']} paired runs, wall time {q.data['wall_s'] / 60:.1f} min. Command:\n\n"
        f"```\n{q.data['command']}\n```\n\n"
        "| PSST-any at the quarter | mean spend | strict PSST at the minimum | mean spend | "
        "paired difference (any − strict) | p |\n|---|---|---|---|---|---|\n"
        f"| {c['a']:.4f} ± {c['a_sem']:.4f} | {c['a_spent']:,.0f} | "
        f"{c['b']:.4f} ± {c['b_sem']:.4f} | {c['b_spent']:,.0f} | "
        f"{c['diff']:+.4f} ± {c['diff_sem']:.4f} | {c['p']:.2g} |\n"
    )


def _strict_min(res: BenchResult) -> int | None:
    """Strict PSST's minimum budget on this environment (None if psst was not benchmarked)."""
    for a in res.data["algorithms"]:
        if a["label"] == "psst":
            return int(a["min_budget"])
    return None


def _budgets(bs: list[int]) -> str:
    return ", ".join(_budget(b) for b in bs)


def _feasibility(res: BenchResult) -> str:
    """Where strict PSST is feasible on this environment, in one sentence."""
    m = _strict_min(res)
    if m is None:
        return "Strict PSST was not benchmarked here."
    below = [b for b in res.budgets if b < m]
    if not below:
        return (
            f"**Strict PSST is feasible at every budget here** (its minimum is {m:,} "
            "completions), so PSST-any *is* strict PSST at every budget: its rows show the "
            "identity ((=): identical in every run)."
        )
    if len(below) == len(res.budgets):
        return (
            f"Strict PSST needs {m:,} completions, more than every budget here: PSST-any runs "
            "its own (budget-feasible) schedule everywhere."
        )
    above = [b for b in res.budgets if b >= m]
    return (
        f"Strict PSST needs {m:,} completions: below it ({_budgets(below)}) PSST-any runs its "
        f"own (budget-feasible) schedule; at {_budgets(above)} it *is* strict PSST ((=): "
        "identical in every run)."
    )


def _acr_cell(c: dict[str, Any], label: str) -> str:
    if c["status"] != "ok":
        return f"infeasible (min {c['min_budget']:,})" if c["status"] == "infeasible" else "—"
    sem = c["acr_sem"]
    txt = f"{c['acr_mean']:.4f}" + (f" ± {sem:.4f}" if sem is not None else "")
    if c.get("overspent"):
        txt += " ✱"
    if label == REF:
        return f"**{txt}**"
    vs = c.get("vs_reference")
    if vs is None:
        return txt + " (n/a)"
    if vs["identical"]:
        return txt + " (=)"
    mark = (" ▲" if vs["mean_diff"] > 0 else " ▼") if vs["p"] < ALPHA else ""
    return f"{txt}{mark} p={vs['p']:.2g}"


def _compact_tables(res: BenchResult) -> str:
    """ACR ± SEM (Wilcoxon against PSST-any) and completions actually spent, one table each."""
    head = "| algorithm | " + " | ".join(_budget(b) for b in res.budgets) + " |"
    rule = "|---|" + "---|" * len(res.budgets)
    algos = res.summary["algorithms"]
    acr = [head, rule]
    spent = [head, rule]
    for label, per in algos.items():
        title = res.titles.get(label, label)
        acr.append(
            f"| {title} | " + " | ".join(_acr_cell(per[str(b)], label) for b in res.budgets) + " |"
        )
        cells = []
        for b in res.budgets:
            c = per[str(b)]
            if c["status"] != "ok" or "spent_mean" not in c:
                cells.append("—")
            else:
                mark = " ✱" if c.get("overspent") else ""
                cells.append(f"{c['spent_mean']:,.0f} ({c['spent_max']:,}){mark}")
        spent.append(f"| {title} | " + " | ".join(cells) + " |")
    o = res.summary["oracle_test"]
    sem = f" ± {o['sem']:.4f}" if o["sem"] is not None else ""
    acr.append(
        "| *oracle-test* | " + " | ".join([f"*{o['mean']:.4f}{sem}*"] * len(res.budgets)) + " |"
    )
    return (
        "Test ACR, mean ± SEM (▲/▼: significantly better/worse than PSST-any, paired two-sided "
        "Wilcoxon, p < 0.05; (=): identical in every run; ✱: spent more than the budget):\n\n"
        + "\n".join(acr)
        + "\n\nCompletions actually spent per run, mean (max; ✱: more than the budget):\n\n"
        + "\n".join(spent)
        + "\n"
    )


def any_budget_pool(env: str) -> str:
    """An existing pool's compact block: command, ACR, spent, equal spend with psst_paper."""
    res = load(f"any-{env}")
    if res is None:
        return f"*{env}: not run in this session (see the targets below).*\n"
    e = res.data["env"]
    extra = load(f"any-{env}-matched")
    matched_cmd = (
        f"PSST-any at psst_paper's mean actual spend ({extra.data['protocol']['runs']} runs, "
        f"wall time {extra.data['wall_s'] / 60:.1f} min):\n\n```\n{extra.data['command']}\n```\n\n"
        if extra is not None
        else ""
    )
    runs = res.data["protocol"]["runs"]
    fewer = (
        f" (fewer than the issue's 200: {runs} is what the session's time allowed on a 2-core "
        "machine shared with other work)"
        if runs < 200
        else ""
    )
    return (
        f"{e['description']}.\n\n{_feasibility(res)}\n\n"
        f"{runs_line(res)}{fewer}; seed {res.data['protocol']['seed']}; wall time "
        f"{res.data['wall_s'] / 60:.1f} min on 2 workers. Command:\n\n"
        f"```\n{res.data['command']}\n```\n\n"
        f"{_compact_tables(res)}\n"
        "PSST-any against psst_paper at equal actual spend (where psst_paper overspent, "
        "PSST-any at its mean actual spend rounded down, same seed, paired by run):\n\n"
        f"{matched_cmd}"
        f"{_matched_table(env)}\n"
    )


def any_budget_ablation(envs: tuple[str, ...]) -> str:
    """``psst_any`` (groups 8) against ``psst_any_paired`` (groups 1), paired by run."""
    out = [
        "| environment | budget | PSST-any (groups 8) | PSST-any paired (groups 1) "
        "| paired difference (8 − 1) | runs better / worse / tied | p | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for env in envs:
        res = load(f"any-{env}")
        if res is None or ABLATION not in res.titles:
            out.append(f"| {env} | — | not run | | | | | |")
            continue
        same: list[int] = []
        cells = [(res, b) for b in res.budgets]
        extra = load(f"any-{env}-quarter-paired")  # the target-3 budget, where not in the main run
        if extra is not None and ABLATION in extra.titles:
            cells += [(extra, b) for b in extra.budgets if b not in res.budgets]
        for src, b in cells:
            a, o = _per_run(src, REF, b), _per_run(src, ABLATION, b)
            c = paired(a, o)
            if c is None:
                continue
            runs = sorted(set(a) & set(o))
            d = np.array([a[i]["acr"] - o[i]["acr"] for i in runs])
            if np.all(d == 0):
                same.append(b)
                continue
            if c["p"] >= ALPHA:
                verdict = "not significantly different"
            else:
                verdict = "groups 8 significantly " + ("better" if c["diff"] > 0 else "WORSE")
            out.append(
                f"| {env} | {_budget(b)} | {c['a']:.4f} ± {c['a_sem']:.4f} | "
                f"{c['b']:.4f} ± {c['b_sem']:.4f} | {c['diff']:+.4f} ± {c['diff_sem']:.4f} | "
                f"{int((d > 0).sum())} / {int((d < 0).sum())} / {int((d == 0).sum())} | "
                f"{c['p']:.2g} | {verdict} |"
            )
        if same:
            out.append(
                f"| {env} | {_budgets(same)} | identical in every run (strict PSST's schedule) "
                "| | | | | |"
            )
    cmds = []
    for env in envs:
        extra = load(f"any-{env}-quarter-paired")
        if extra is not None:
            cmds.append(
                f"\nThe separate run on {env} ({extra.data['protocol']['runs']} runs, wall time "
                f"{extra.data['wall_s'] / 60:.1f} min):\n\n```\n{extra.data['command']}\n```\n"
            )
    return ("\n".join(out) + "\n" + "".join(cmds)).rstrip("\n")


def _target1(env: str, res: BenchResult) -> str:
    per = res.summary["algorithms"].get("psst", {})
    same: list[int] = []
    bits = []
    for b in res.budgets:
        c = per.get(str(b), {})
        if c.get("status") != "ok":
            continue
        vs = c["vs_reference"]
        if vs["identical"]:
            same.append(b)
            continue
        worse = vs["p"] < ALPHA and vs["mean_diff"] > 0
        bits.append(
            f"{_budget(b)}: strict − any = {vs['mean_diff']:+.4f}, p = {vs['p']:.2g}"
            + (" (PSST-any significantly WORSE)" if worse else "")
        )
    if same:
        bits.insert(0, f"identical in every run at {_budgets(same)}")
    if not bits:
        mins = {int(c["min_budget"]) for c in per.values()}
        return f"{env}: strict PSST infeasible at every budget run (minimum {min(mins):,})"
    return f"{env} ({'; '.join(bits)})"


def _equal_spend_table(envs: tuple[str, ...]) -> str:
    """Target 2 at a glance: PSST-any − psst_paper at equal actual spend, per env and budget."""
    budgets = sorted({r["budget"] for env in envs for r in matched(env)})
    out = [
        "| environment | " + " | ".join(_budget(b) for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for env in envs:
        rows = {r["budget"]: r for r in matched(env)}
        if not rows:
            out.append(f"| {env} | not run |" + " |" * (len(budgets) - 1))
            continue
        cells = []
        for b in budgets:
            r = rows.get(b)
            if r is None:
                cells.append("")
                continue
            c = r["cmp"]
            if c is None:
                cells.append("not run")
                continue
            mark = (" ▲" if c["diff"] > 0 else " ▼") if c["p"] < ALPHA else ""
            cells.append(f"{c['diff']:+.4f}{mark}{' ✱' if r['overspent'] else ''}")
        out.append(f"| {env} | " + " | ".join(cells) + " |")
    return (
        "Target 2 at a glance: PSST-any − psst_paper, mean paired difference in test ACR at "
        "equal actual spend (▲/▼: PSST-any significantly better/worse, paired two-sided "
        "Wilcoxon, p < 0.05; ✱: psst_paper overspent this budget, so PSST-any ran at its mean "
        "actual spend; an empty cell: that budget was not run on that environment). Columns are "
        "psst_paper's nominal budgets.\n\n" + "\n".join(out) + "\n"
    )


def any_budget_targets(envs: tuple[str, ...]) -> str:
    """The issue's three targets, checked against the numbers above."""
    t1, t2, t3 = [], [], []
    missing = []
    ok1 = ok2 = ok3 = True
    n2: dict[str, list[str]] = {"better": [], "same": []}
    for env in envs:
        res = load(f"any-{env}")
        if res is None:
            missing.append(env)
            continue
        line = _target1(env, res)
        quarter_res = load(f"any-{env}-quarter")
        if "infeasible at every" in line and quarter_res is not None:
            line += "; in the target-3 run: " + _target1(env, quarter_res)
        ok1 &= "WORSE" not in line
        t1.append(line)
        for r in matched(env):
            c = r["cmp"]
            where = f"{env} at {_budget(r['budget'])}"
            if c is None:
                ok2 = False
                t2.append(f"{where}: not checked (matched run missing)")
                continue
            if c["p"] < ALPHA and c["diff"] < 0:
                ok2 = False
                t2.append(
                    f"{where} (spend {c['b_spent']:,.0f}): any − paper = {c['diff']:+.4f} ± "
                    f"{c['diff_sem']:.4f}, p = {c['p']:.2g}"
                )
            elif c["p"] < ALPHA:
                n2["better"].append(where)
            else:
                n2["same"].append(where)
        if env not in QUARTER:
            continue
        minimum, quarter = QUARTER[env]
        src = load(f"any-{env}-quarter") if quarter not in res.budgets else res
        strict_src = res if minimum in res.budgets else load(f"any-{env}-quarter")
        mine = _per_run(src, REF, quarter) if src is not None else {}
        strict = _per_run(strict_src, "psst", minimum) if strict_src is not None else {}
        c = paired(mine, strict)
        if c is None:
            ok3 = False
            t3.append(
                f"{env}: not checked (strict PSST at its minimum {minimum:,} was not run: "
                "beyond this session's compute)"
            )
            continue
        reached = c["diff"] >= 0
        ok3 &= reached
        rel = c["diff"] / c["b"] * 100
        t3.append(
            f"{env}: PSST-any at {quarter:,} = {c['a']:.4f} ± {c['a_sem']:.4f} vs strict PSST at "
            f"{minimum:,} = {c['b']:.4f} ± {c['b_sem']:.4f} ({c['pairs']} paired runs): "
            + (
                "reached"
                if reached
                else f"short by {-c['diff']:.4f} ({rel:+.1f} %), p = {c['p']:.2g}"
                + (" (not significant)" if c["p"] >= ALPHA else " (significant)")
            )
        )
    cells2 = len(t2) + len(n2["better"]) + len(n2["same"])
    lines = [
        "1. **Where strict PSST is feasible, PSST-any is never significantly worse than it**: "
        + ("met" if ok1 else "NOT met")
        + ". "
        + "; ".join(t1)
        + ".",
        "2. **At equal actual spend PSST-any is ≥ psst_paper at every budget (paired)**: "
        + ("met (never significantly worse)" if ok2 else "NOT met")
        + f". Of {cells2} (environment, budget) cells, PSST-any is significantly better in "
        f"{len(n2['better'])}, not significantly different in {len(n2['same'])} and "
        f"significantly worse (or not checked) in {len(t2)}"
        + (": " + "; ".join(t2) if t2 else "")
        + ".",
        "3. **At a quarter of strict PSST's minimum budget PSST-any reaches strict PSST's ACR "
        "at that minimum** (the three large-arm environments): "
        + ("met" if ok3 else "NOT met everywhere")
        + ". "
        + "; ".join(t3)
        + ".",
    ]
    if missing:
        lines.append(
            "\nNot run in this session, hence in none of the targets: " + ", ".join(missing) + "."
        )
    return "\n".join(lines) + "\n\n" + _equal_spend_table(envs)


def any_budget_loses(envs: tuple[str, ...]) -> str:
    """Every (environment, budget, algorithm) significantly better than PSST-any, with spend."""
    out = []
    for env in envs:
        res = load(f"any-{env}")
        if res is None:
            continue
        m = _strict_min(res)
        for label, per in res.summary["algorithms"].items():
            if label == REF:
                continue
            bits = []
            for b in res.budgets:
                c = per[str(b)]
                vs = c.get("vs_reference") if c["status"] == "ok" else None
                if vs is None or vs["identical"] or vs["p"] >= ALPHA or vs["mean_diff"] <= 0:
                    continue
                where = "" if m is None or b < m else ", PSST-any = strict PSST"
                over = f", spending {c['spent_mean']:,.0f} ✱" if c.get("overspent") else ""
                bits.append(f"{_budget(b)} ({vs['mean_diff']:+.4f}{over}{where})")
            if bits:
                out.append(f"* {env}, {res.titles.get(label, label)}: " + "; ".join(bits))
    return "\n".join(out) + "\n" if out else "*none*\n"
