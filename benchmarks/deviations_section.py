"""BENCHMARKS.md section 6 (deviations from the paper): the measured effect of pairing queries.

``paired_effect`` renders ``docs/bench/paired-ENV.json`` (``iapo bench`` with ``psst`` and
``psst_unpaired``, the same seed, so run r of both has the same train/test split): per
environment and budget, the paired difference unpaired − paired in test ACR, its SEM and the
two-sided Wilcoxon p (the result's own ``vs_reference`` against ``psst``).
"""

from __future__ import annotations

from pathlib import Path

from iapo.bench import BenchResult

DOCS = Path(__file__).resolve().parents[1] / "docs" / "bench"
ALPHA = 0.05


def _budget(b: int) -> str:
    return f"{b // 1000}k" if b % 1000 == 0 and b >= 1000 else str(b)


def paired_effect() -> str:
    """The table (and its commands) of strict PSST with independent vs paired queries."""
    files = sorted(DOCS.glob("paired-*.json"))
    if not files:
        return "*(no docs/bench/paired-*.json: run the commands in benchmarks/run_all.sh)*"
    rows, commands, worse, better, cells = [], [], 0, 0, 0
    budgets: list[int] = sorted(
        {b for f in files for b in BenchResult.load(f).budgets}  # the union, in order
    )
    for f in files:
        res = BenchResult.load(f)
        res.resummarise(reference="psst")
        per = res.data["summary"]["algorithms"]["psst_unpaired"]
        cols = []
        for b in budgets:
            c = per.get(str(b), {})
            vs = c.get("vs_reference")
            if c.get("status") != "ok" or vs is None:
                cols.append("infeasible" if c else "—")
                continue
            cells += 1
            mark = ""
            if not vs["identical"] and vs["p"] < ALPHA:
                mark = " ▲" if vs["mean_diff"] > 0 else " ▼"
                better += vs["mean_diff"] > 0
                worse += vs["mean_diff"] < 0
            p = "identical" if vs["identical"] else f"p={vs['p']:.2g}"
            cols.append(f"{vs['mean_diff']:+.4f} ± {vs['sem_diff']:.4f}{mark} {p}")
        rows.append(f"| {res.data['env']['name']} | " + " | ".join(cols) + " |")
        commands.append(res.data["command"])
    head = "| environment | " + " | ".join(_budget(b) for b in budgets) + " |"
    sep = "|---" * (len(budgets) + 1) + "|"
    runs = ", ".join(
        map(str, sorted({BenchResult.load(f).data["protocol"]["runs"] for f in files}))
    )
    return "\n".join(
        [
            f"Strict PSST with independent queries per prompt (`psst_unpaired`) minus strict PSST "
            f"(paired), test ACR, mean ± SEM of the paired differences over {runs} "
            f"runs (▲/▼: significantly better/worse than paired, two-sided Wilcoxon, p < {ALPHA}; "
            "infeasible: below strict PSST's minimum).",
            "",
            head,
            sep,
            *rows,
            "",
            f"Unpaired is significantly worse in {worse} and significantly better in {better} of "
            f"{cells} cells. Commands:",
            "",
            "```",
            *commands,
            "```",
        ]
    )


def tie_credit_effect(envs: tuple[str, ...]) -> str:
    """Exact Q on all queries under ``tie_credit`` fractional (1/t) vs half (0.5 for any tie at
    the top that includes gold), per majority-vote environment: the largest change of any arm's
    Q, the joint oracle's ACR under each rule, and how many contexts' optimal arm changes."""
    import numpy as np

    from iapo.bench import build_environment, encode_pool
    from iapo.strategies import MajorityVote

    lines = [
        "| environment | largest change of an arm's Q | joint oracle ACR, 1/t | joint oracle ACR, "
        "half | contexts whose optimal arm changes |",
        "|---|---|---|---|---|",
    ]
    for env in envs:
        try:
            e = build_environment(env)
        except Exception as exc:  # shared data absent
            lines.append(f"| {env} | not available ({exc}) | | | |")
            continue
        if not isinstance(e.strategy, MajorityVote):
            continue
        tables = []
        for rule in ("fractional", "half"):
            sim = encode_pool(e.pool, MajorityVote(tie_credit=rule), e.contexts, e.n_max)
            tables.append(sim.q_table(range(len(sim.queries))))  # (C, P, N)
        frac, half = tables
        flat_f, flat_h = frac.reshape(frac.shape[0], -1), half.reshape(half.shape[0], -1)
        changed = int((flat_f.argmax(axis=1) != flat_h.argmax(axis=1)).sum())
        lines.append(
            f"| {env} | {float(np.abs(half - frac).max()):.4f} | {flat_f.max(axis=1).mean():.4f} "
            f"| {flat_h.max(axis=1).mean():.4f} | {changed} of {frac.shape[0]} |"
        )
    return "\n".join(lines)
