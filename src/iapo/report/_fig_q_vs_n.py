"""The Q-vs-N figure: estimated Q against N per prompt, one panel per (representative) context."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from iapo.report._data import Report
from iapo.report._style import (
    chosen_handle,
    context_panels,
    draw_chosen,
    palette,
    short_context,
)
from iapo.report._view import adaptive_of, arm_label

__all__ = ["q_vs_n_figure"]

#: With more prompts than this, each Q-vs-N panel colours only the few that matter there.
MAX_COLOURED = 8
#: Colour of the prompts a crowded panel does not highlight.
GREY = "#BBBBBB"


def _prompt_handles(prompts: list[str], pal: dict[str, dict[str, Any]]) -> list[Line2D]:
    return [
        Line2D(
            [],
            [],
            color=pal[p]["color"],
            marker=pal[p]["marker"],
            linestyle=pal[p]["linestyle"],
            linewidth=2,
            markersize=7,
            label=p,
        )
        for p in prompts
    ]


def _focus_limits(values: list[list[float]], highs: list[float]) -> tuple[float, float] | None:
    """Y limits that keep every prompt's best value (and the top of every interval) in view
    while cutting off curves that fall far below, as costly prompts do at large N; ``None``
    when nothing would be cut."""
    bests = [max(v) for v in values if v]
    every = [x for v in values for x in v]
    if not bests:
        return None
    top = max(every + highs)
    floor = min(bests)
    span = top - floor
    if span <= 0:
        span = max(abs(top) * 0.1, 0.05)
    low = floor - 0.45 * span
    if min(every) >= low:
        return None
    return low, top + 0.06 * span


def q_vs_n_figure(rep: Report) -> Figure:
    """Estimated Q against N per prompt with 95 % bands, one panel per (representative) context;
    dashed: the exact held-out curve when the run replayed a pool; a star: the chosen arm."""
    ctxs = rep.representative_contexts()
    prompts = rep.prompts
    pal = palette(prompts)
    truth = rep.truth
    zoomed = False
    fig, axes = context_panels(len(ctxs), 3.7, 0.9)
    crowded = len(prompts) > MAX_COLOURED
    shown: list[str] = []
    for ax, ctx in zip(axes.flat, ctxs, strict=False):
        curves = rep.curves(ctx)
        values: list[list[float]] = []
        highs: list[float] = []
        coloured = rep.highlighted_prompts(ctx) if crowded else prompts
        shown += [p for p in coloured if p not in shown]
        for p in prompts:
            st = pal[p]
            rows = [r for r in curves.get(p, []) if r["q"] is not None]
            xs = [r["n"] for r in rows]
            ys = [r["q"] for r in rows]
            lo = [r["ci_low"] if r["ci_low"] is not None else r["q"] for r in rows]
            hi = [r["ci_high"] if r["ci_high"] is not None else r["q"] for r in rows]
            if p not in coloured:
                if xs:
                    ax.plot(xs, ys, color=GREY, linewidth=0.9, alpha=0.8, zorder=1)
                continue
            own = list(ys)
            highs += hi
            if xs:
                ax.fill_between(xs, lo, hi, color=st["color"], alpha=0.14, linewidth=0)
                ax.plot(
                    xs,
                    ys,
                    color=st["color"],
                    marker=st["marker"],
                    markersize=4.5,
                    linewidth=1.8,
                    linestyle=st["linestyle"],
                )
            if truth and p in truth.get(ctx, {}):
                t = truth[ctx][p]
                ax.plot(
                    range(1, len(t) + 1),
                    t,
                    color=st["color"],
                    linewidth=1.2,
                    linestyle=(0, (2, 2)),
                    alpha=0.9,
                )
                values.append(list(t))
            values.append(own)
        limits = _focus_limits(values, highs)
        if limits is not None:
            ax.set_ylim(*limits)
            zoomed = True
        ch = rep.result["policy"][ctx]
        adaptive = adaptive_of(ch)
        # an adaptive arm's star sits at its expected samples (when known), not on a curve
        x = ch.get("expected_samples") if adaptive else ch["n"]
        if ch.get("q") is not None and x is not None:
            draw_chosen(ax, x, ch["q"], pal.get(ch["prompt"], {"color": "black"})["color"])
        chosen = arm_label(ch["prompt"], ch["n"], adaptive)
        ax.set_title(f"{short_context(ctx)}\nchosen: {chosen}", loc="left")
        ax.set_xlabel("N (completions per query)")
        ax.set_ylabel("utility Q")
        ax.set_xlim(0.6, rep.n_max + 0.4)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(rep.n_max, 10)))
    handles: list[Any] = _prompt_handles([p for p in prompts if p in shown], pal)
    if crowded:
        handles.append(Line2D([], [], color=GREY, linewidth=1.2, label="other prompts"))
    handles.append(Patch(facecolor="0.6", alpha=0.35, label="95 % interval"))
    if truth:
        handles.append(
            Line2D([], [], color="0.3", linestyle=(0, (2, 2)), label="exact Q, held-out queries")
        )
    handles.append(chosen_handle())
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5))
    total = len(rep.context_names)
    subset = "" if len(ctxs) == total else f" ({len(ctxs)} of {total} contexts)"
    note = "\ny axes zoomed to the top: steeply falling curves leave the panel" if zoomed else ""
    fig.suptitle(f"Q vs N per prompt{subset}{note}")
    return fig
