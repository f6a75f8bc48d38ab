"""The deceiving-prompts figure: each prompt's rank by estimated Q at N=1 against its rank at the
chosen N."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from iapo.report._data import Report
from iapo.report._style import context_panels, palette, short_context

__all__ = ["rankings_figure"]

#: With more prompts than this, the ranking panels show only the top ones.
MAX_RANKED = 12
TOP_RANKS = 8


def rankings_figure(rep: Report) -> Figure:
    """Per (representative) context: each prompt's rank by estimated Q at N=1 against its rank
    at the context's chosen N; the N=1 leader drawn bold."""
    ctxs = rep.ranking_contexts()
    prompts = rep.prompts
    pal = palette(prompts)
    rows_by_ctx: dict[str, list[dict[str, Any]]] = {}
    for r in rep.ranking_rows():
        rows_by_ctx.setdefault(r["context"], []).append(r)
    # many prompts: keep those in the top TOP_RANKS at either N (and the chosen one)
    trimmed = len(prompts) > MAX_RANKED

    def kept(r: dict[str, Any]) -> bool:
        if r["rank_n1"] is None or r["rank_chosen_n"] is None:
            return False
        top = min(r["rank_n1"], r["rank_chosen_n"]) <= TOP_RANKS
        return not trimmed or top or r["prompt"] == r["chosen_prompt"]

    deepest = max(
        (
            max(r["rank_n1"], r["rank_chosen_n"])
            for c in ctxs
            for r in rows_by_ctx.get(c, [])
            if kept(r)
        ),
        default=1,
    )
    panel_h = max(2.8, 0.3 * deepest + 1.4)
    fig, axes = context_panels(len(ctxs), panel_h, 0.9)
    label_size = 10 if deepest <= 12 else 9
    for ax, ctx in zip(axes.flat, ctxs, strict=False):
        rows = rows_by_ctx.get(ctx, [])
        leader = next((r["prompt"] for r in rows if r["rank_n1"] == 1), None)
        chosen = rows[0]["chosen_prompt"] if rows else None
        n_star = rows[0]["chosen_n"] if rows else 1
        for r in rows:
            if not kept(r):
                continue
            st = pal[r["prompt"]]
            bold = r["prompt"] in (leader, chosen)
            ax.plot(
                [0, 1],
                [r["rank_n1"], r["rank_chosen_n"]],
                color=st["color"],
                marker=st["marker"],
                markersize=7 if bold else 5,
                linewidth=3.2 if bold else 1.4,
                alpha=1.0 if bold else 0.75,
                linestyle=st["linestyle"],
            )
            ax.text(
                1.06,
                r["rank_chosen_n"],
                r["prompt"],
                va="center",
                ha="left",
                fontsize=label_size,
                color="black",
                fontweight="bold" if r["prompt"] == chosen else "normal",
            )
        ax.set_ylim(deepest + 0.5, 0.5)
        ax.set_xlim(-0.15, 2.0)
        ax.set_yticks(range(1, deepest + 1, 1 if deepest <= 16 else 2))
        ax.set_xticks([0, 1], ["N=1", f"N={n_star}\n(chosen)"])
        ax.set_ylabel("rank by estimated Q (1 = best)")
        ax.grid(axis="x", visible=False)
        ax.spines["bottom"].set_visible(False)
        deceived = leader is not None and leader != chosen
        ax.set_title(
            short_context(ctx) + ("\nN=1 leader dropped" if deceived else "\nN=1 leader kept"),
            loc="left",
            color="#D55E00" if deceived else "black",
        )
    fig.legend(
        handles=[
            Line2D([], [], color="0.2", linewidth=3.2, label="N=1 leader / chosen prompt"),
            Line2D([], [], color="0.2", linewidth=1.4, alpha=0.75, label="other prompts"),
        ],
        loc="outside lower center",
        ncol=2,
    )
    total = len(rep.context_names)
    dropped = sum(1 for r in rep.rankings() if r["deceived"])
    shown = "" if len(ctxs) == total else f" ({len(ctxs)} shown)"
    top = f"; prompts in the top {TOP_RANKS} at either N" if trimmed else ""
    fig.suptitle(
        "Deceiving prompts: rank at N=1 vs at the chosen N\n"
        f"N=1 leader dropped in {dropped} of {total} contexts{shown}{top}"
    )
    return fig
