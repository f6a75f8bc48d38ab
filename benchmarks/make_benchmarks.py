"""Render BENCHMARKS.md from the outputs in docs/bench/ and benchmarks/BENCHMARKS.template.md.

Every number in BENCHMARKS.md comes from a JSON file written by ``iapo bench``,
``benchmarks/bench_variance.py`` or ``benchmarks/bench_engine.py``, or from the pools' exact Q
tables (deceiving prompts, oracle ceilings). Placeholders in the template:

* ``{{exploration:ENV}}``: the environment, its command, the ACR table, links to the plot;
* ``{{psst_loses}}``: every (environment, budget, algorithm) significantly better than PSST;
* ``{{awareness}}``, ``{{ceilings}}``, ``{{deceiving}}``: section 2;
* ``{{estimators}}``, ``{{estimators_end_to_end}}`` (benchmarks/estimators_section.py),
  ``{{engine}}``: sections 3 and 4; ``{{include:NAME}}``: docs/bench/NAME.md as written by its
  benchmark script (section 4's throughput parts);
* ``{{runs}}``: what was run (runs per algorithm, wall time);
* ``{{any_budget:ENV}}``, ``{{any_budget_targets}}``: section 5 (issue #11, PSST at any budget),
  from ``docs/bench/any-ENV.json`` (the main runs) and ``docs/bench/any-ENV-matched.json``
  (``psst_any`` at ``psst_paper``'s actual spend), compared against ``psst_any``;
  ``{{any_budget_pool:ENV}}`` (the existing pools, compact) and ``{{any_budget_ablation}}``
  (``psst_any`` against ``psst_any_paired``).

Run: ``.venv/bin/python benchmarks/make_benchmarks.py`` (after the runs; see benchmarks/run_all.sh).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from any_budget_section import (  # benchmarks/, beside this script
    any_budget,
    any_budget_ablation,
    any_budget_loses,
    any_budget_pool,
    any_budget_targets,
    runs_line,
)
from deviations_section import paired_effect, tie_credit_effect
from estimators_section import end_to_end
from estimators_section import estimators as estimator_tables

from iapo.bench import BenchResult, build_environment, encode_pool
from iapo.evaluation import Evaluation

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "bench"
ENVS = (
    "mcqa-gpt35",
    "ccot-aqua-rat",
    "ccot-lsat-ar",
    "ccot-sat-math",
    "ccot-logiqa-en",
    "ccot-medmcqa-dev",
    "tot-writing",
    "tot-game24",
    "synth-bernoulli",
    "synth-categorical",
)
ALPHA = 0.05
#: Section 5 (issue #11): the large-arm environments, compared against psst_any.
ANY_ENVS = ("synth-48x32", "renze-temperature-all", "synth-200x64")
#: Section 5 on the existing (small-arm) pools, compact blocks.
ANY_POOLS = (
    "mcqa-gpt35",
    "tot-writing",
    "tot-game24",
    "ccot-aqua-rat",
    "ccot-lsat-ar",
    "ccot-sat-math",
    "ccot-logiqa-en",
    "ccot-medmcqa-dev",
    "synth-bernoulli",
    "synth-categorical",
)


_CACHE: dict[str, BenchResult | None] = {}


def _load(env: str) -> BenchResult | None:
    """The stored runs of ``env``, re-summarised from the per-run numbers (the plot is redrawn
    from them too)."""
    if env not in _CACHE:
        path = DOCS / f"{env}.json"
        res = BenchResult.load(path) if path.exists() else None
        if res is not None:
            res.resummarise()
            res.plot(DOCS / f"{env}.png")
        _CACHE[env] = res
    return _CACHE[env]


def _budget(b: int) -> str:
    return f"{b // 1000}k" if b % 1000 == 0 else str(b)


def _acr_table(res: BenchResult) -> str:
    """ACR ± SEM with Wilcoxon markers; compact for BENCHMARKS.md."""
    s = res.summary
    budgets = res.budgets
    titles = res.titles
    lines = [
        "| algorithm | " + " | ".join(_budget(b) for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for label, per in s["algorithms"].items():
        cells = []
        for b in budgets:
            c = per[str(b)]
            if c["status"] != "ok":
                cells.append(f"infeasible (min {c['min_budget']})")
                continue
            txt = f"{c['acr_mean']:.4f} ± {c['acr_sem']:.4f}"
            vs = c.get("vs_reference")
            if label == s["reference"]:
                txt = f"**{txt}**"
            elif vs is not None:
                if vs["identical"]:
                    txt += " ="
                elif vs["p"] < ALPHA:
                    txt += (" ▲" if vs["mean_diff"] > 0 else " ▼") + f" p={vs['p']:.1g}"
                else:
                    txt += f" (p={vs['p']:.2f})"
            if c.get("overspent"):
                txt += f" ✱ spent {c['spent_mean']:,.0f}"
            cells.append(txt)
        lines.append(f"| {titles[label]} | " + " | ".join(cells) + " |")
    for key, title in (("oracle_train", "*oracle-train*"), ("oracle_test", "*oracle-test*")):
        o = s[key]
        lines.append(
            f"| {title} | "
            + " | ".join([f"*{o['mean']:.4f} ± {o['sem']:.4f}*"] * len(budgets))
            + " |"
        )
    if any(c.get("overspent") for per in s["algorithms"].values() for c in per.values()):
        lines += [
            "",
            "✱ spent more completions than the budget (mean actual spend given): not comparable "
            "with the other cells of its column (section 5 compares psst_paper at equal spend).",
        ]
    return "\n".join(lines)


def _found_cpu_tables(res: BenchResult) -> str:
    s = res.summary
    budgets = res.budgets
    head = "| algorithm | " + " | ".join(_budget(b) for b in budgets) + " |"
    rule = "|---|" + "---|" * len(budgets)
    found = [head, rule]
    cpu = [head, rule]
    for label, per in s["algorithms"].items():
        f, c = [], []
        for b in budgets:
            x = per[str(b)]
            ok = x["status"] == "ok"
            f.append(f"{x['found_all_contexts']:.2f} / {x['found_mean']:.2f}" if ok else "—")
            c.append(f"{x['cpu_s_mean'] * 1e3:.0f}" if ok else "—")
        found.append(f"| {res.titles[label]} | " + " | ".join(f) + " |")
        cpu.append(f"| {res.titles[label]} | " + " | ".join(c) + " |")
    return (
        "Runs that found the optimal arm (the arm optimal on the run's training queries), in "
        "every context / mean over contexts:\n\n"
        + "\n".join(found)
        + "\n\nCPU time per run (ms):\n\n"
        + "\n".join(cpu)
    )


def exploration(env: str) -> str:
    res = _load(env)
    if res is None:
        return f"*{env}: not run yet.*"
    e = res.data["env"]
    return (
        f"{e['description']}.\n\n"
        f"{runs_line(res, 'runs')}; seed {res.data['protocol']['seed']}; wall time "
        f"{res.data['wall_s'] / 60:.1f} min on 2 workers. Command:\n\n"
        f"```\n{res.data['command']}\n```\n\n"
        f"{_acr_table(res)}\n\n"
        f"![{env}: ACR vs budget](docs/bench/{env}.png)\n\n"
        f"<details><summary>optimal-arm fractions and CPU time</summary>\n\n"
        f"{_found_cpu_tables(res)}\n\n</details>\n"
    )


def headline() -> str:
    """Per environment: PSST at the largest budget against the ceiling and the field."""
    lines = [
        "| environment | runs | PSST test ACR at 50k | oracle-train | best algorithm at 50k "
        "(ACR) | PSST significantly better / worse / n.s. (all algorithms × budgets) |",
        "|---|---|---|---|---|---|",
    ]
    for env in ENVS:
        res = _load(env)
        if res is None:
            continue
        s = res.summary
        top = str(max(res.budgets))
        ps = s["algorithms"]["psst"][top]
        best_label, best = max(
            ((a, per[top]) for a, per in s["algorithms"].items() if per[top]["status"] == "ok"),
            key=lambda x: x[1]["acr_mean"],
        )
        win = lose = ns = 0
        for per in s["algorithms"].values():
            for b in res.budgets:
                vs = per[str(b)].get("vs_reference")
                if vs is None:
                    continue
                if not vs["identical"] and vs["p"] < ALPHA:
                    if vs["mean_diff"] < 0:
                        win += 1
                    else:
                        lose += 1
                else:
                    ns += 1
        lines.append(
            f"| {env} | {res.data['protocol']['runs']} | {ps['acr_mean']:.4f} ± {ps['acr_sem']:.4f}"
            f" | {s['oracle_train']['mean']:.4f} | {res.titles[best_label]} "
            f"({best['acr_mean']:.4f}) | {win} / {lose} / {ns} |"
        )
    return "\n".join(lines)


def psst_loses() -> str:
    rows = []
    for env in ENVS:
        res = _load(env)
        if res is None:
            continue
        s = res.summary
        ref = s["algorithms"]["psst"]
        for label, per in s["algorithms"].items():
            for b in res.budgets:
                c = per[str(b)]
                vs = c.get("vs_reference")
                if c["status"] != "ok" or vs is None or vs["identical"]:
                    continue
                if vs["p"] < ALPHA and vs["mean_diff"] > 0:
                    rows.append(
                        f"| {env} | {_budget(b)} | {res.titles[label]} | "
                        f"{c['acr_mean']:.4f} vs {ref[str(b)]['acr_mean']:.4f} | "
                        f"{vs['mean_diff']:+.4f} | {vs['p']:.1g} |"
                    )
    if not rows:
        return "No algorithm is significantly better than PSST at any budget."
    return (
        "| environment | budget | algorithm | its ACR vs PSST's | mean paired difference | p |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows)
    )


def infeasible_psst() -> str:
    rows = []
    for env in ENVS:
        res = _load(env)
        if res is None:
            continue
        per = res.summary["algorithms"]["psst"]
        bad = [_budget(b) for b in res.budgets if per[str(b)]["status"] != "ok"]
        if bad:
            rows.append(
                f"{env} at {', '.join(bad)} (PSST needs at least "
                f"{per[str(res.budgets[0])].get('min_budget', '?')} completions)"
            )
    return "; ".join(rows) if rows else "none"


def awareness() -> str:
    lines = [
        "| environment | budget | PSST | TRIPLE N=1 | gain over prompt-only | PSST+K1 | "
        "gain over disjoint |",
        "|---|---|---|---|---|---|---|",
    ]
    for env in ENVS:
        res = _load(env)
        if res is None:
            continue
        algos = res.summary["algorithms"]
        for b in res.budgets:
            p = algos["psst"][str(b)]
            if p["status"] != "ok":
                continue
            cells = [env, _budget(b), f"{p['acr_mean']:.4f}"]
            for other in ("triple_n1", "psst_k1"):
                o = algos.get(other, {}).get(str(b))
                if o is None or o["status"] != "ok":
                    cells += ["—", "—"]
                    continue
                vs = o["vs_reference"]
                gain = (p["acr_mean"] - o["acr_mean"]) / abs(o["acr_mean"]) * 100
                sig = "" if vs["identical"] else f" (p={vs['p']:.1g})"
                cells += [f"{o['acr_mean']:.4f}", f"{gain:+.1f} %{sig}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _tables(env: str) -> tuple[Any, Evaluation]:
    e = build_environment(env)
    sim = encode_pool(e.pool, e.strategy, e.contexts, e.n_max)
    q = sim.q_table(range(len(sim.queries)))
    return e, Evaluation(e.contexts, e.pool.prompts, q, f"all ({len(sim.queries)} queries)")


def ceilings_and_deceiving() -> tuple[str, str]:
    ceil = [
        "| environment | joint oracle | disjoint oracle (best N=1 prompt, then its best N) | "
        "prompt-only oracle (best prompt at N=1) | joint / disjoint | joint / prompt-only |",
        "|---|---|---|---|---|---|",
    ]
    dec: list[str] = []
    for env in ENVS:
        try:
            e, ev = _tables(env)
        except Exception as exc:  # shared data absent
            ceil.append(f"| {env} | not available ({exc}) | | | | |")
            continue
        q = ev.q
        joint = q.reshape(q.shape[0], -1).max(axis=1)
        p1 = q[:, :, 0].argmax(axis=1)
        disjoint = q[np.arange(q.shape[0]), p1].max(axis=1)
        prompt_only = q[:, :, 0].max(axis=1)
        j, d, o = joint.mean(), disjoint.mean(), prompt_only.mean()
        ceil.append(
            f"| {env} | {j:.4f} | {d:.4f} | {o:.4f} | {(j / d - 1) * 100:+.1f} % | "
            f"{(j / o - 1) * 100:+.1f} % |"
        )
        found = ev.deceiving()
        if not found:
            dec.append(
                f"* **{env}**: none: in every context the best prompt at N=1 is the optimal prompt."
            )
            continue
        dec.append(f"* **{env}**: {len(found)} of {len(e.contexts)} contexts.")
        for d_ in found[:4]:
            if abs(d_["n1"]["deceiving"] - d_["n1"]["optimal"]) < 1e-12:
                dec.append(
                    f"  * `{d_['context']}`: {d_['deceiving_prompt']} and {d_['optimal_prompt']} "
                    f"tie at N=1 ({d_['n1']['deceiving']:.4f}); `iapo evaluate` reports the first "
                    f"as deceiving, but this is a tie, not a deception. The optimal arm is "
                    f"{d_['optimal_prompt']} @ N={d_['optimal_n']} "
                    f"({d_['at_optimal_n']['optimal']:.4f} vs "
                    f"{d_['at_optimal_n']['deceiving']:.4f})"
                )
                continue
            dec.append(
                f"  * `{d_['context']}`: {d_['deceiving_prompt']} leads at N=1 "
                f"({d_['n1']['deceiving']:.4f} vs {d_['n1']['optimal']:.4f}); the optimal arm "
                f"is {d_['optimal_prompt']} @ N={d_['optimal_n']} "
                f"({d_['at_optimal_n']['optimal']:.4f} vs {d_['at_optimal_n']['deceiving']:.4f} "
                f"for the deceiving prompt at that N; its own best is "
                f"{d_['deceiving_best']['q']:.4f} at N={d_['deceiving_best']['n']})"
            )
        if len(found) > 4:
            dec.append(f"  * … and {len(found) - 4} more contexts.")
    return "\n".join(ceil), "\n".join(dec)


def estimators() -> str:
    return estimator_tables(DOCS / "estimators.json")


def estimators_end_to_end() -> str:
    return end_to_end({env: _load(env) for env in ENVS}, ALPHA)


def engine() -> str:
    path = DOCS / "engine.json"
    if not path.exists():
        return "*not run yet*"
    d = json.loads(path.read_text())
    return "\n".join(
        [
            f"Environment: {d['environment']}; budget {d['budget']} ({d['completions']} "
            f"completions drawn), {d['arms']} arms × {d['contexts']} contexts.",
            "",
            "| implementation | wall time (s) | engine time per completion (ms) | exact ACR of "
            "the policy (all queries) |",
            "|---|---|---|---|",
            f"| iapo PSST + vectorised simulator (best of {d['repeat']}) | "
            f"{d['iapo_simulator_s']:.3f} (simulator {d['iapo_simulator_sim_share_s']:.3f}) | "
            f"{d['iapo_engine_ms_per_completion']:.4f} | {d['acr_all_queries_iapo']:.4f} |",
            f"| iapo PSST via `tell()` with sample objects (what `iapo run` does) | "
            f"{d['iapo_tell_s']:.3f} (sampling {d['iapo_tell_sampling_s']:.3f}) | "
            f"{d['iapo_tell_ms_per_completion']:.4f} | — |",
            f"| plain per-arm Python PSST | {d['plain_python_s']:.3f} | "
            f"{d['plain_python_s'] / d['completions'] * 1e3:.4f} | "
            f"{d['acr_all_queries_plain']:.4f} |",
            "",
            f"Ratio plain / iapo + simulator: **{d['ratio_plain_over_iapo_simulator']:.0f}×**; "
            f"plain / iapo `tell()`: **{d['ratio_plain_over_iapo_tell']:.0f}×**. Oracle ACR: "
            f"{d['oracle_acr_all_queries']:.4f}.",
        ]
    )


def include(name: str) -> str:
    """``docs/bench/NAME.md`` as its benchmark script wrote it (command line included)."""
    path = DOCS / f"{name}.md"
    if not path.exists():
        return "*not run yet*"
    text = path.read_text().strip()
    if text.startswith("#"):  # the file's own heading: the template gives the section's
        text = text.split("\n", 1)[1].strip() if "\n" in text else ""
    return text


def main() -> None:
    template = (ROOT / "benchmarks" / "BENCHMARKS.template.md").read_text()
    ceilings, deceiving = ceilings_and_deceiving()
    fills = {
        "headline": headline(),
        "psst_loses": psst_loses(),
        "psst_infeasible": infeasible_psst(),
        "awareness": awareness(),
        "ceilings": ceilings,
        "deceiving": deceiving,
        "estimators": estimators(),
        "estimators_end_to_end": estimators_end_to_end(),
        "engine": engine(),
        "any_budget_targets": any_budget_targets(ANY_ENVS + ANY_POOLS),
        "any_budget_ablation": any_budget_ablation(ANY_ENVS),
        "deviations_paired": paired_effect(),
        "deviations_tie_credit": tie_credit_effect(tuple(dict.fromkeys(ANY_POOLS + ANY_ENVS))),
        "any_budget_loses": any_budget_loses(ANY_ENVS + ANY_POOLS),
    }

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key.startswith("exploration:"):
            return exploration(key.split(":", 1)[1])
        if key.startswith("any_budget:"):
            return any_budget(key.split(":", 1)[1])
        if key.startswith("any_budget_pool:"):
            return any_budget_pool(key.split(":", 1)[1])
        if key.startswith("include:"):
            return include(key.split(":", 1)[1])
        return fills.get(key, m.group(0))

    text = re.sub(r"\{\{([a-z_:\-0-9]+)\}\}", sub, template)
    (ROOT / "BENCHMARKS.md").write_text(text)
    print(f"wrote {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
