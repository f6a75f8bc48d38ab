"""The report's figures, drawn with matplotlib's object API on the Agg canvas.

No pyplot: nothing here touches matplotlib's global backend or figure registry, so rendering a
report inside a notebook or a GUI program leaves it alone. Import this module only when drawing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator

from iapo.report._data import Report, fmt_weight

__all__ = [
    "FIGURES",
    "budget_figure",
    "palette",
    "policy_map_figure",
    "q_vs_n_figure",
    "rankings_figure",
    "render",
    "save",
    "trace_figure",
]

#: Okabe & Ito's colour-blind-safe palette, yellow last (weak on white).
OKABE_ITO = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#D55E00",  # vermillion
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#F0E442",  # yellow
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")
DASHES = ("-", (0, (5, 1.5)), (0, (1, 1)), (0, (3, 1, 1, 1)))

#: With more prompts than this, each Q-vs-N panel colours only the few that matter there.
MAX_COLOURED = 8
#: With more prompts than this, the ranking panels show only the top ones.
MAX_RANKED = 12
TOP_RANKS = 8
GREY = "#BBBBBB"

#: Smallest font size (points) any text in a figure may have.
MIN_FONT_PT = 9.0
DPI = 150

#: matplotlib rc settings of every figure (keys typed loosely: matplotlib types them as literals)
STYLE: dict[Any, Any] = {
    "font.size": 11,
    "axes.titlesize": 11.5,
    "axes.titleweight": "bold",
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
    "figure.titlesize": 13,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "svg.fonttype": "none",
}


@contextmanager
def style() -> Iterator[None]:
    with mpl.rc_context(STYLE):
        yield


def palette(prompts: list[str]) -> dict[str, dict[str, Any]]:
    """A stable colour, marker and line style per prompt (colours repeat after 8, with another
    line style, so 32 prompts stay distinguishable)."""
    out = {}
    for i, p in enumerate(prompts):
        out[p] = {
            "color": OKABE_ITO[i % len(OKABE_ITO)],
            "marker": MARKERS[i % len(MARKERS)],
            "linestyle": DASHES[(i // len(OKABE_ITO)) % len(DASHES)],
        }
    return out


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


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


def _short_context(name: str) -> str:
    return name.replace(",", ", ")


def _text_color(background: str) -> str:
    r, g, b = to_rgb(background)
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


def _grid_shape(k: int) -> tuple[int, int]:
    cols = 2 if k == 4 else min(k, 3)
    return math.ceil(k / cols), cols


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


# -- 1. Q vs N per prompt -------------------------------------------------------------------------
def q_vs_n_figure(rep: Report) -> Figure:
    """Estimated Q against N per prompt with 95 % bands, one panel per (representative) context;
    dashed: the exact held-out curve when the run replayed a pool; a star: the chosen arm."""
    ctxs = rep.representative_contexts()
    prompts = rep.prompts
    pal = palette(prompts)
    truth = rep.truth
    zoomed = False
    nrows, ncols = _grid_shape(len(ctxs))
    fig = _new_figure(4.6 * ncols, 3.7 * nrows + 0.9)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(ctxs) :]:
        ax.set_visible(False)
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
        if ch.get("q") is not None:
            ax.plot(
                [ch["n"]],
                [ch["q"]],
                marker="*",
                markersize=17,
                markerfacecolor=pal.get(ch["prompt"], {"color": "black"})["color"],
                markeredgecolor="black",
                markeredgewidth=1.3,
                linestyle="none",
                zorder=5,
            )
        ax.set_title(f"{_short_context(ctx)}\nchosen: {ch['prompt']} @ N={ch['n']}", loc="left")
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
    handles.append(
        Line2D(
            [],
            [],
            marker="*",
            markersize=14,
            markerfacecolor="0.85",
            markeredgecolor="black",
            linestyle="none",
            label="chosen arm",
        )
    )
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5))
    total = len(rep.context_names)
    subset = "" if len(ctxs) == total else f" ({len(ctxs)} of {total} contexts)"
    note = "\ny axes zoomed to the top: steeply falling curves leave the panel" if zoomed else ""
    fig.suptitle(f"Q vs N per prompt{subset}{note}")
    return fig


# -- 2. The policy map ----------------------------------------------------------------------------
def policy_map_figure(rep: Report) -> Figure:
    """Contexts on a grid (objective weights × cost weight), coloured by the chosen prompt and
    annotated with its N."""
    labels, cols, cells = rep.policy_grid()
    pal = palette(rep.prompts_used())
    nrows, ncols = len(labels), len(cols)
    label_w = min(max((len(s) for s in labels), default=4) * 0.085, 3.2)
    fig = _new_figure(max(6.0, 1.45 * ncols + label_w + 1.2), max(2.6, 0.55 * nrows + 1.9))
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
        text = f"{name}\nN={ch['n']}" if big else f"N={ch['n']}"
        ax.text(
            j + 0.5,
            i + 0.5,
            text,
            ha="center",
            va="center",
            fontsize=10 if big else 9,
            color=_text_color(color),
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


# -- 3. The PSST trace ----------------------------------------------------------------------------
def trace_figure(rep: Report) -> Figure:
    """Per round: arms alive per context (median and range), pulls and completions per prompt."""
    prompts = rep.prompts_used()
    pal = palette(prompts)
    fig = _new_figure(14.0, 4.6)
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
                            color=_text_color(pal[p]["color"]),
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


# -- 4. Deceiving prompts -------------------------------------------------------------------------
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
    nrows, ncols = _grid_shape(len(ctxs))
    panel_h = max(2.8, 0.3 * deepest + 1.4)
    fig = _new_figure(4.6 * ncols, panel_h * nrows + 0.9)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(ctxs) :]:
        ax.set_visible(False)
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
            _short_context(ctx) + ("\nN=1 leader dropped" if deceived else "\nN=1 leader kept"),
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


# -- 5. The budget account ------------------------------------------------------------------------
def budget_figure(rep: Report) -> Figure:
    """Per prompt: completions (drawn new vs from the bank) and cost."""
    rows = rep.budget_rows()
    pal = palette(rep.prompts_used())
    fig = _new_figure(12.0, max(3.0, 0.45 * len(rows) + 1.9))
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


#: File stem → (figure builder, section title).
FIGURES: dict[str, tuple[Callable[[Report], Figure], str]] = {
    "q_vs_n": (q_vs_n_figure, "Q vs N per prompt"),
    "policy_map": (policy_map_figure, "Policy map"),
    "psst_trace": (trace_figure, "PSST trace"),
    "rankings": (rankings_figure, "Deceiving prompts"),
    "budget": (budget_figure, "Budget account"),
}


def render(rep: Report, name: str) -> Figure:
    """Build one of :data:`FIGURES` under the report style."""
    builder = FIGURES[name][0]
    with style():
        return builder(rep)


def save(fig: Figure, path: Path) -> Path:
    with style():
        fig.savefig(path, dpi=DPI, facecolor="white", metadata={"Software": None})
    return path
