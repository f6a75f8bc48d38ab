"""The look shared by every report figure: colours, markers and line styles per prompt, the
matplotlib rc settings, font and resolution floors, and small layout helpers.

No pyplot: figures are built on the Agg canvas, so nothing here touches matplotlib's global
backend or figure registry.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = [
    "DPI",
    "MIN_FONT_PT",
    "OKABE_ITO",
    "chosen_handle",
    "draw_chosen",
    "grid_shape",
    "new_figure",
    "palette",
    "short_context",
    "style",
    "text_color",
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


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def short_context(name: str) -> str:
    return name.replace(",", ", ")


def text_color(background: str) -> str:
    r, g, b = to_rgb(background)
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


def grid_shape(k: int) -> tuple[int, int]:
    cols = 2 if k == 4 else min(k, 3)
    return math.ceil(k / cols), cols


def context_panels(k: int, panel_height: float, extra: float) -> tuple[Figure, Any]:
    """A figure of one 4.6-wide panel per context (:func:`grid_shape`), ``panel_height`` each
    plus ``extra`` for legends, and its axes grid; the panels past ``k`` hidden."""
    nrows, ncols = grid_shape(k)
    fig = new_figure(4.6 * ncols, panel_height * nrows + extra)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[k:]:
        ax.set_visible(False)
    return fig, axes


def draw_chosen(ax: Any, x: float, y: float, color: Any) -> None:
    """The chosen arm's star at (x, y), in its prompt's colour."""
    ax.plot(
        [x],
        [y],
        marker="*",
        markersize=17,
        markerfacecolor=color,
        markeredgecolor="black",
        markeredgewidth=1.3,
        linestyle="none",
        zorder=5,
    )


def chosen_handle() -> Line2D:
    """The legend entry of :func:`draw_chosen`'s star."""
    return Line2D(
        [],
        [],
        marker="*",
        markersize=14,
        markerfacecolor="0.85",
        markeredgecolor="black",
        linestyle="none",
        label="chosen arm",
    )
