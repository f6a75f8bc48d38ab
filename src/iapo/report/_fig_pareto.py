"""The Pareto figure of adaptive arms (issue #15): estimated Q against expected samples per query,
one panel per (representative) context. Fixed arms are a line per prompt (N samples at N);
adaptive arms are points at their expected samples, a marker per rule; a star marks the chosen
arm. Drawn only when the run has adaptive arms."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from iapo.report._data import Report
from iapo.report._style import (
    chosen_handle,
    context_panels,
    draw_chosen,
    palette,
    short_context,
)
from iapo.report._view import Row, adaptive_of, arm_label, distinct

__all__ = ["RULE_MARKERS", "chosen_point", "pareto_figure", "rule_ids"]

#: One marker per adaptive rule (rule and batch), in order of first appearance.
RULE_MARKERS = ("D", "^", "v", "s", "P", "X", "h", "<", ">", "p")
#: Colour of the prompts a crowded panel does not highlight.
GREY = "#BBBBBB"
#: With more prompts than this, each panel colours only the few that matter there.
MAX_COLOURED = 8


def rule_ids(rep: Report) -> list[str]:
    """The adaptive rules (``"decided/b2"``, …) of the run, in order of first appearance."""
    found = [adaptive_of(ch) for ch in rep.result["policy"].values()]
    found += [adaptive_of(e) for es in rep.result["estimates"].values() for e in es]
    return distinct([a for a in found if a])


def chosen_point(rep: Report, ctx: str) -> tuple[float, float] | None:
    """(expected samples, Q) of the context's chosen arm; None when either is unknown. An
    adaptive arm's expected samples come from its policy entry, else from its estimate."""
    ch = rep.result["policy"][ctx]
    adaptive = adaptive_of(ch)
    x = ch.get("expected_samples") if adaptive else ch["n"]
    if x is None:
        match = [
            r
            for r in rep.adaptive_points(ctx)
            if (r["prompt"], r["n"], r["adaptive"]) == (ch["prompt"], int(ch["n"]), adaptive)
        ]
        x = match[0]["expected_samples"] if match else None
    if x is None or ch.get("q") is None:
        return None
    return float(x), float(ch["q"])


def _legend(
    prompts: list[str], rules: list[str], pal: dict[str, dict[str, Any]], crowded: bool
) -> list[Any]:
    handles: list[Any] = [
        Line2D([], [], color=pal[p]["color"], linewidth=2, linestyle=pal[p]["linestyle"], label=p)
        for p in prompts
    ]
    if crowded:
        handles.append(Line2D([], [], color=GREY, linewidth=1.2, label="other prompts"))
    handles += [
        Line2D(
            [],
            [],
            marker=RULE_MARKERS[i % len(RULE_MARKERS)],
            markersize=8,
            markerfacecolor="0.7",
            markeredgecolor="black",
            linestyle="none",
            label=f"adaptive: {r}",
        )
        for i, r in enumerate(rules)
    ]
    handles.append(chosen_handle())
    return handles


def _points(ax: Any, rows: list[Row], colour: Any, marker: dict[str, str]) -> int:
    """Draw the adaptive arms of ``rows``; returns how many had no expected samples."""
    missing = 0
    for r in rows:
        if r["q"] is None or r["expected_samples"] is None:
            missing += 1
            continue
        ax.plot(
            [r["expected_samples"]],
            [r["q"]],
            marker=marker[r["adaptive"]],
            markersize=7,
            markerfacecolor=colour(r["prompt"]),
            markeredgecolor="black",
            markeredgewidth=0.8,
            linestyle="none",
            zorder=3,
        )
    return missing


def pareto_figure(rep: Report) -> Figure:
    """Q against expected samples per query: fixed arms as a line per prompt, adaptive arms as
    points (a marker per rule, the prompt's colour), the chosen arm starred."""
    ctxs = rep.representative_contexts()
    prompts = rep.prompts_used()
    pal = palette(prompts)
    rules = rule_ids(rep)
    marker = {r: RULE_MARKERS[i % len(RULE_MARKERS)] for i, r in enumerate(rules)}
    fig, axes = context_panels(len(ctxs), 3.7, 1.1)
    crowded = len(prompts) > MAX_COLOURED
    shown: list[str] = []
    missing = 0
    for ax, ctx in zip(axes.flat, ctxs, strict=False):
        coloured = rep.highlighted_prompts(ctx) if crowded else prompts
        shown += [p for p in coloured if p not in shown]

        def colour(p: str, coloured: list[str] = coloured) -> str:
            return str(pal[p]["color"]) if p in coloured else GREY

        for p, rows in rep.curves(ctx).items():
            pts = [(r["n"], r["q"]) for r in rows if r["q"] is not None]
            if pts:
                ax.plot(
                    [x for x, _ in pts],
                    [y for _, y in pts],
                    color=colour(p),
                    linewidth=1.8 if p in coloured else 0.9,
                    linestyle=pal[p]["linestyle"],
                    marker="o",
                    markersize=2.5,
                    zorder=2 if p in coloured else 1,
                )
        missing += _points(ax, rep.adaptive_points(ctx), colour, marker)
        ch = rep.result["policy"][ctx]
        star = chosen_point(rep, ctx)
        if star is not None:
            draw_chosen(ax, star[0], star[1], pal.get(ch["prompt"], {"color": "black"})["color"])
        chosen = arm_label(ch["prompt"], ch["n"], adaptive_of(ch))
        ax.set_title(f"{short_context(ctx)}\nchosen: {chosen}", loc="left")
        ax.set_xlabel("expected samples per query")
        ax.set_ylabel("utility Q")
        ax.set_xlim(0, rep.n_max + 0.5)
    handles = _legend([p for p in prompts if p in shown], rules, pal, crowded)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4))
    total = len(rep.context_names)
    subset = "" if len(ctxs) == total else f" ({len(ctxs)} of {total} contexts)"
    note = f"\n{missing} adaptive estimates without expected samples not drawn" if missing else ""
    fig.suptitle(
        f"Utility vs expected samples: fixed N (lines), adaptive arms (points){subset}{note}"
    )
    return fig
