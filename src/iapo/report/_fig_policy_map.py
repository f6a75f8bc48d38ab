"""The policy map: the chosen prompt and N per context, on a grid of objective weights × cost
weight."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from iapo.fmt import weight as fmt_weight
from iapo.report._data import Report
from iapo.report._style import new_figure, palette, text_color

__all__ = ["policy_map_figure"]


def policy_map_figure(rep: Report) -> Figure:
    """Contexts on a grid (objective weights × cost weight), coloured by the chosen prompt and
    annotated with its N."""
    labels, cols, cells = rep.policy_grid()
    pal = palette(rep.prompts_used())
    nrows, ncols = len(labels), len(cols)
    label_w = min(max((len(s) for s in labels), default=4) * 0.085, 3.2)
    fig = new_figure(max(6.0, 1.45 * ncols + label_w + 1.2), max(2.6, 0.55 * nrows + 1.9))
    ax = fig.add_subplot()
    used: list[str] = []
    big = nrows * ncols <= 40
    for (i, j), ctx in cells.items():
        ch = rep.result["policy"][ctx]
        p = ch["prompt"]
        if p not in used:
            used.append(p)
        color = pal[p]["color"]
        ax.add_patch(Rectangle((j, i), 1, 1, facecolor=color, edgecolor="white", linewidth=2))
        name = p if len(p) <= 16 else p[:15] + "…"
        n = f"N≤{ch['n']}" if ch.get("adaptive") else f"N={ch['n']}"  # adaptive: up to N
        text = f"{name}\n{n}" if big else n
        ax.text(
            j + 0.5,
            i + 0.5,
            text,
            ha="center",
            va="center",
            fontsize=10 if big else 9,
            color=text_color(color),
            fontweight="bold",
        )
    ax.set_xlim(0, ncols)
    ax.set_ylim(nrows, 0)
    ax.set_xticks([j + 0.5 for j in range(ncols)], [fmt_weight(c) for c in cols])
    ax.set_yticks([i + 0.5 for i in range(nrows)], labels)
    ax.set_xlabel("cost weight")
    ax.set_ylabel("objective weights")
    ax.tick_params(length=0)
    ax.grid(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title("Policy map: the chosen prompt and N per context", loc="left")
    order = [p for p in rep.prompts_used() if p in used]
    fig.legend(
        handles=[Patch(facecolor=pal[p]["color"], label=p) for p in order],
        loc="outside lower center",
        ncol=min(len(order), 4),
        title="chosen prompt",
    )
    return fig
