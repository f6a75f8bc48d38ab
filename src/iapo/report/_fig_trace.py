"""The PSST trace: per round, arms alive per context, and pulls and completions per prompt."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from iapo.report._data import Report
from iapo.report._style import OKABE_ITO, new_figure, palette, text_color

__all__ = ["trace_figure"]


def trace_figure(rep: Report) -> Figure:
    """Per round: arms alive per context (median and range), pulls and completions per prompt."""
    prompts = rep.prompts_used()
    pal = palette(prompts)
    fig = new_figure(14.0, 4.6)
    ax_alive, ax_pulls, ax_comp = fig.subplots(1, 3)
    by_round: dict[int, list[int]] = {}
    for r in rep.alive_rows():
        by_round.setdefault(r["round"], []).append(r["alive"])
    rounds = sorted(by_round)
    med = [sorted(by_round[r])[len(by_round[r]) // 2] for r in rounds]
    lo = [min(by_round[r]) for r in rounds]
    hi = [max(by_round[r]) for r in rounds]
    ax_alive.fill_between(rounds, lo, hi, color=OKABE_ITO[0], alpha=0.2, linewidth=0, step=None)
    ax_alive.plot(rounds, med, color=OKABE_ITO[0], marker="o", linewidth=2)
    for x, y in zip(rounds, med, strict=True):
        ax_alive.annotate(str(y), (x, y), textcoords="offset points", xytext=(5, 5), fontsize=10)
    ax_alive.set_yscale("log", base=2)
    ax_alive.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax_alive.set_ylim(0.7, max(hi) * 1.6 if hi else 2)
    ax_alive.set_xlabel("round (0 = start)")
    ax_alive.set_ylabel("arms alive per context")
    same = lo == hi
    ax_alive.set_title(
        "Arms alive" + (" (same in every context)" if same else " (median; band: range)"),
        loc="left",
    )
    ax_alive.xaxis.set_major_locator(MaxNLocator(integer=True))

    trace = rep.trace_rows()
    rounds_t = sorted({r["round"] for r in trace})
    for ax, key, title in (
        (ax_pulls, "pulls", "Pulls per prompt (queries sampled)"),
        (ax_comp, "completions", "Completions per prompt (labels: N)"),
    ):
        bottom = dict.fromkeys(rounds_t, 0)
        for p in prompts:
            vals = {r["round"]: r for r in trace if r["prompt"] == p}
            if not vals:
                continue
            xs = list(vals)
            ys = [vals[x][key] for x in xs]
            ax.bar(
                xs,
                ys,
                bottom=[bottom[x] for x in xs],
                color=pal[p]["color"],
                edgecolor="white",
                linewidth=0.8,
                width=0.75,
            )
            if key == "completions":
                top = max((r["completions"] for r in rep.round_summary()), default=1)
                for x, y in zip(xs, ys, strict=True):
                    if y >= 0.07 * top:
                        ax.text(
                            x,
                            bottom[x] + y / 2,
                            f"N={vals[x]['n']}",
                            ha="center",
                            va="center",
                            fontsize=9,
                            color=text_color(pal[p]["color"]),
                        )
            for x, y in zip(xs, ys, strict=True):
                bottom[x] += y
        ax.set_xlabel("round")
        ax.set_ylabel(key)
        ax.set_title(title, loc="left")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="x", visible=False)
    fig.legend(
        handles=[Patch(facecolor=pal[p]["color"], label=p) for p in prompts],
        loc="outside lower center",
        ncol=min(len(prompts), 8),
    )
    acc = rep.result["account"]
    fig.suptitle(
        f"PSST trace: {len(rep.result['trace'])} rounds, "
        f"{acc.get('completions', 0)} of {acc.get('budget', 0)} completions"
    )
    return fig
