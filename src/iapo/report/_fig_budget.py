"""The budget figure: completions (drawn new vs from the bank) and cost per prompt."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from iapo.report._data import Report
from iapo.report._style import new_figure, palette

__all__ = ["budget_figure"]


def fmt_amount(x: float) -> str:
    """A readable amount: 1,234 → "1.2k", 430,000 → "430k", 0.0123 → "0.0123"."""
    a = abs(x)
    if a >= 1e9:
        return f"{x / 1e9:.3g}G"
    if a >= 1e6:
        return f"{x / 1e6:.3g}M"
    if a >= 1e4:
        return f"{x / 1e3:.3g}k"
    if a >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}"


def budget_figure(rep: Report) -> Figure:
    """Per prompt: completions (drawn new vs from the bank) and cost."""
    rows = rep.budget_rows()
    pal = palette(rep.prompts_used())
    fig = new_figure(12.0, max(3.0, 0.45 * len(rows) + 1.9))
    ax_c, ax_cost = fig.subplots(1, 2, sharey=True)
    ys = list(range(len(rows)))
    names = [r["prompt"] for r in rows]
    colors = [pal[p]["color"] for p in names]
    drawn = [r["drawn"] for r in rows]
    hits = [r["cache_hits"] for r in rows]
    ax_c.barh(ys, drawn, color=colors, edgecolor="white", height=0.7)
    ax_c.barh(
        ys,
        hits,
        left=drawn,
        color=colors,
        alpha=0.45,
        hatch="//",
        edgecolor="white",
        height=0.7,
    )
    top = max((r["completions"] for r in rows), default=1) or 1
    for y, r in zip(ys, rows, strict=True):
        ax_c.text(
            r["completions"] + 0.01 * top,
            y,
            f"{r['completions']}  ({r['share']:.0%}, {r['pulls']} pulls)",
            va="center",
            fontsize=9.5,
        )
    ax_c.set_xlim(0, top * 1.55)
    ax_c.set_yticks(ys, names)
    ax_c.invert_yaxis()
    ax_c.set_xlabel("completions")
    ax_c.set_ylabel("prompt")
    ax_c.set_title("Completions per prompt", loc="left")
    ax_c.grid(axis="y", visible=False)
    fig.legend(
        handles=[
            Patch(facecolor="0.45", label="completions drawn new"),
            Patch(facecolor="0.45", alpha=0.45, hatch="//", label="completions from the bank"),
        ],
        loc="outside lower center",
        ncol=2,
    )
    costs = [r["cost"] for r in rows]
    ax_cost.barh(ys, costs, color=colors, edgecolor="white", height=0.7)
    ctop = max(costs, default=1.0) or 1.0
    ctotal = sum(costs) or 1.0
    for y, c in zip(ys, costs, strict=True):
        ax_cost.text(
            c + 0.01 * ctop, y, f"{fmt_amount(c)}  ({c / ctotal:.0%})", va="center", fontsize=9.5
        )
    ax_cost.set_xlim(0, ctop * 1.35)
    ax_cost.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_amount(v)))
    unit = rep.cost_unit
    ax_cost.set_xlabel(f"cost ({unit})" if unit else "cost")
    ax_cost.set_title("Cost per prompt", loc="left")
    ax_cost.grid(axis="y", visible=False)
    acc = rep.result["account"]
    fig.suptitle(
        f"Budget: {acc.get('completions', 0)} of {acc.get('budget', 0)} completions, "
        f"{acc.get('drawn', 0)} drawn new, {acc.get('cache_hits', 0)} from the bank"
    )
    return fig
