"""Summaries of benchmark runs: mean ± SEM, paired Wilcoxon tests, tables and the plot."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["markdown_tables", "paired_wilcoxon", "plot", "summarise"]

ALPHA = 0.05


def mean_sem(x: Sequence[float] | NDArray[np.float64]) -> tuple[float, float]:
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan
    sem = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else math.nan
    return float(a.mean()), sem


def paired_wilcoxon(
    x: Sequence[float] | NDArray[np.float64], y: Sequence[float] | NDArray[np.float64]
) -> tuple[float, bool]:
    """Two-sided Wilcoxon signed-rank p-value of paired samples ``x`` and ``y`` (same run order).

    Returns (p, identical): when every difference is zero the test is undefined; p = 1.0 and
    ``identical`` is True. Zero differences are dropped (scipy's default ``zero_method``).
    """
    from scipy.stats import wilcoxon

    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    if np.all(a == b):
        return 1.0, True
    res = wilcoxon(a, b, alternative="two-sided")
    p = float(res.pvalue)
    return (p if math.isfinite(p) else 1.0), False


def _clean(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def summarise(
    runs: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    budgets: Sequence[int],
    min_budget: Mapping[str, int],
    contexts: Sequence[str],
    reference: str | None = "psst",
) -> dict[str, Any]:
    """Per algorithm and budget: ACR mean ± SEM, Wilcoxon p against ``reference`` on the runs
    both have (paired by run index), optimal-arm fractions, CPU time; plus the oracles."""
    ref = reference if reference in labels else None
    out: dict[str, Any] = {"reference": ref, "algorithms": {}}
    for label in labels:
        per_budget: dict[str, Any] = {}
        for b in budgets:
            key = str(b)
            rows = [(r["run"], r["results"].get(label, {}).get(key)) for r in runs]
            got = [(i, v) for i, v in rows if v is not None]
            if not got:
                per_budget[key] = {
                    "status": "infeasible" if b < min_budget.get(label, 0) else "not run",
                    "min_budget": int(min_budget.get(label, 0)),
                }
                continue
            acr = np.array([v["acr"] for _, v in got])
            m, s = mean_sem(acr)
            found = np.array([[c == "1" for c in v["found"]] for _, v in got], dtype=np.float64)
            cell: dict[str, Any] = {
                "status": "ok",
                "runs": len(got),
                "acr_mean": m,
                "acr_sem": _clean(s),
                "found_all_contexts": float(found.all(axis=1).mean()),
                "found_mean": float(found.mean()),
                "found_per_context": {
                    c: float(f) for c, f in zip(contexts, found.mean(axis=0), strict=True)
                },
                "cpu_s_mean": float(np.mean([v["cpu_s"] for _, v in got])),
            }
            spent = [v["spent"] for _, v in got if "spent" in v]  # absent in older results
            if len(spent) == len(got):
                cell["spent_mean"] = float(np.mean(spent))
                cell["spent_max"] = int(max(spent))
                cell["overspent"] = bool(max(spent) > b)
            if ref is not None and label != ref:
                ref_by_run = {
                    r["run"]: r["results"].get(ref, {}).get(key)
                    for r in runs
                    if r["results"].get(ref, {}).get(key) is not None
                }
                pairs = [(v["acr"], ref_by_run[i]["acr"]) for i, v in got if i in ref_by_run]
                if len(pairs) >= 2:
                    x = np.array([p[0] for p in pairs])
                    y = np.array([p[1] for p in pairs])
                    p, same = paired_wilcoxon(x, y)
                    d = x - y
                    cell["vs_reference"] = {
                        "pairs": len(pairs),
                        "p": p,
                        "identical": same,
                        "mean_diff": float(d.mean()),
                        "sem_diff": _clean(mean_sem(d)[1]),
                        "better": int((d > 0).sum()),
                        "worse": int((d < 0).sum()),
                        "tied": int((d == 0).sum()),
                    }
            per_budget[key] = cell
        out["algorithms"][label] = per_budget
    for name in ("oracle_train", "oracle_test"):
        m, s = mean_sem([r[name] for r in runs])
        out[name] = {"mean": m, "sem": _clean(s)}
    return out


def _fmt_budget(b: int) -> str:
    return f"{b // 1000}k" if b % 1000 == 0 and b >= 1000 else str(b)


#: Marks a cell whose runs spent more completions than the budget (tables and plot legend).
OVERSPENT = "✱"


def _cell(c: Mapping[str, Any], ref: str | None, label: str, digits: int) -> str:
    if c["status"] != "ok":
        return f"infeasible (min {c['min_budget']})" if c["status"] == "infeasible" else "—"
    sem = c["acr_sem"]
    txt = f"{c['acr_mean']:.{digits}f}" + (f" ± {sem:.{digits}f}" if sem is not None else "")
    if c.get("overspent"):
        txt += f" {OVERSPENT}"
    vs = c.get("vs_reference")
    if label == ref:
        return f"**{txt}**"
    if vs is None:
        return txt + " (n/a)"
    if vs["identical"]:
        return txt + " (=)"
    mark = ""
    if vs["p"] < ALPHA:
        mark = " ▲" if vs["mean_diff"] > 0 else " ▼"
    return f"{txt}{mark} p={vs['p']:.2g}"


def markdown_tables(
    summary: Mapping[str, Any],
    titles: Mapping[str, str],
    budgets: Sequence[int],
    *,
    digits: int = 4,
    heading: str = "####",
) -> str:
    """ACR (± SEM, Wilcoxon p against the reference), optimal-arm fraction and CPU time."""
    ref = summary.get("reference")
    algos: Mapping[str, Mapping[str, Any]] = summary["algorithms"]
    head = "| algorithm | " + " | ".join(_fmt_budget(b) for b in budgets) + " |"
    rule = "|---|" + "---|" * len(budgets)
    lines = [
        f"{heading} Test ACR, mean ± SEM over runs"
        + (
            f" (▲/▼: significantly better/worse than {titles.get(ref, ref)} by a paired "
            "two-sided Wilcoxon test, p < 0.05; (=): identical in every run)"
            if ref
            else ""
        ),
        "",
        head,
        rule,
    ]
    for label, per in algos.items():
        cells = [_cell(per[str(b)], ref, label, digits) for b in budgets]
        lines.append(f"| {titles.get(label, label)} | " + " | ".join(cells) + " |")
    over = any(c.get("overspent") for per in algos.values() for c in per.values())
    for name, title in (("oracle_train", "oracle-train"), ("oracle_test", "oracle-test")):
        o = summary[name]
        sem = f" ± {o['sem']:.{digits}f}" if o["sem"] is not None else ""
        lines.append(
            f"| *{title}* | " + " | ".join([f"*{o['mean']:.{digits}f}{sem}*"] * len(budgets)) + " |"
        )
    if over:
        lines += [
            "",
            f"{OVERSPENT} spent more completions than the budget (see the completions actually "
            "spent below): not comparable with the other cells of its column; the plot shows it "
            "at its mean actual spend.",
        ]
    lines += [
        "",
        f"{heading} Runs that found the optimal arm (optimal on the run's training queries, the "
        "oracle-train arm), fraction: in every context / mean over contexts",
        "",
        head,
        rule,
    ]
    for label, per in algos.items():
        cells = []
        for b in budgets:
            c = per[str(b)]
            cells.append(
                f"{c['found_all_contexts']:.2f} / {c['found_mean']:.2f}"
                if c["status"] == "ok"
                else "—"
            )
        lines.append(f"| {titles.get(label, label)} | " + " | ".join(cells) + " |")
    lines += ["", f"{heading} CPU time per run (ms), mean", "", head, rule]
    for label, per in algos.items():
        cells = [
            f"{per[str(b)]['cpu_s_mean'] * 1e3:.0f}" if per[str(b)]["status"] == "ok" else "—"
            for b in budgets
        ]
        lines.append(f"| {titles.get(label, label)} | " + " | ".join(cells) + " |")
    if any("spent_mean" in c for per in algos.values() for c in per.values()):
        lines += [
            "",
            f"{heading} Completions actually spent per run, mean (max; {OVERSPENT}: more than "
            "the budget)",
            "",
            head,
            rule,
        ]
        for label, per in algos.items():
            lines.append(
                f"| {titles.get(label, label)} | "
                + " | ".join(_spent(per[str(b)]) for b in budgets)
                + " |"
            )
    runs = sorted(
        {c["runs"] for per in algos.values() for c in per.values() if c["status"] == "ok"}
    )
    lines += ["", f"Runs per cell: {', '.join(map(str, runs))}."]
    return "\n".join(lines) + "\n"


def _spent(c: Mapping[str, Any]) -> str:
    if c["status"] != "ok" or "spent_mean" not in c:
        return "—"
    mark = f" {OVERSPENT}" if c.get("overspent") else ""
    return f"{c['spent_mean']:,.0f} ({c['spent_max']:,}){mark}"


def _x(c: Mapping[str, Any], budget: int) -> float:
    """Where a cell is plotted: at its mean actual spend if it overspent, else its budget."""
    return float(c["spent_mean"]) if c.get("overspent") else float(budget)


def _style(label: str, i: int, reference: str | None) -> dict[str, Any]:
    import matplotlib

    if label == reference:
        return {"color": "black", "lw": 2.2, "marker": "o", "ms": 4}
    cmap = matplotlib.colormaps["tab20"]
    return {"color": cmap((2 * i) % 20 + (i // 10) % 2), "lw": 1.2, "marker": "o", "ms": 3}


def plot(
    summary: Mapping[str, Any],
    titles: Mapping[str, str],
    budgets: Sequence[int],
    path: str | Path,
    title: str,
) -> None:
    """Write :func:`figure` to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    fig = figure(summary, titles, budgets, title)
    fig.savefig(path)
    plt.close(fig)


def figure(
    summary: Mapping[str, Any],
    titles: Mapping[str, str],
    budgets: Sequence[int],
    title: str,
) -> Any:
    """Left: ACR vs budget, one line per algorithm with a ± SEM band, the oracles dashed; an
    overspending algorithm at its actual spend. Right: each algorithm's paired ACR difference to
    the summary's reference (± SEM of the paired differences), at the nominal budget where the
    pairs were made."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5), dpi=100)
    ref = summary.get("reference")
    ref_name = titles.get(ref, ref) if ref else "the reference"
    for i, (label, per) in enumerate(summary["algorithms"].items()):
        style = _style(label, i, ref)
        xs: list[float] = []
        ys, es, dx, dy, de = [], [], [], [], []
        over = False
        for b in budgets:
            c = per[str(b)]
            if c["status"] != "ok":
                continue
            xs.append(_x(c, b))
            over = over or bool(c.get("overspent"))
            ys.append(c["acr_mean"])
            es.append(c["acr_sem"] or 0.0)
            vs = c.get("vs_reference")
            if vs is not None:  # paired with the reference at the same nominal budget
                dx.append(b)
                dy.append(vs["mean_diff"])
                de.append(vs.get("sem_diff") or 0.0)
        if not xs:
            continue
        y, e = np.array(ys), np.array(es)
        name = diff_name = titles.get(label, label)
        if over:  # drawn at its actual spend, dashed with hollow markers
            name += f" {OVERSPENT} at actual spend"
            diff_name += f" {OVERSPENT}"
            style = {**style, "ls": "--", "mfc": "none"}
        ax.plot(xs, y, label=name, **style)
        ax.fill_between(xs, y - e, y + e, color=style["color"], alpha=0.12, lw=0)
        if label == ref:
            bx.axhline(0.0, label=titles.get(label, label), **{**style, "marker": None})
        elif dx:
            d, f = np.array(dy), np.array(de)
            bx.plot(dx, d, label=diff_name, **style)
            bx.fill_between(dx, d - f, d + f, color=style["color"], alpha=0.12, lw=0)
    oracles = [
        ax.axhline(summary[name]["mean"], color="grey", ls=ls, lw=1, label=name.replace("_", "-"))
        for name, ls in (("oracle_test", "--"), ("oracle_train", ":"))
    ]
    ax.legend(handles=oracles, fontsize=7, loc="lower right")
    ax.set_xlabel(f"budget (completions; {OVERSPENT}: at the completions actually spent)")
    bx.set_xlabel("nominal budget (completions; the pairs' budget)")
    for a in (ax, bx):
        a.set_xscale("log")
        a.grid(alpha=0.3)
    ax.set_ylabel("test ACR (exact), mean ± SEM")
    ax.set_title(f"{title}: test ACR")
    bx.set_ylabel(f"paired ACR difference to {ref_name}, mean ± SEM")
    bx.set_title(f"{title}: paired difference to {ref_name}")
    lows = sorted(float(np.min(np.asarray(ln.get_ydata(), dtype=float))) for ln in bx.get_lines())
    if len(lows) >= 3 and lows[0] < 2.0 * lows[1] - 0.01:
        # one far-off baseline would flatten the rest: let it leave the plot
        top = max(float(np.max(np.asarray(ln.get_ydata(), dtype=float))) for ln in bx.get_lines())
        pad = 0.15 * (top - lows[1] + 1e-3)
        bx.set_ylim(bottom=lows[1] - pad, top=top + pad)
        bx.set_title(f"{title}: paired difference to {ref_name} (clipped)")
    bx.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    return fig
