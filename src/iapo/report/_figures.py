"""The report's figures, drawn with matplotlib's object API on the Agg canvas.

No pyplot: nothing here touches matplotlib's global backend or figure registry, so rendering a
report inside a notebook or a GUI program leaves it alone. Import this module only when drawing.
One module per figure (``_fig_*``); the shared look lives in :mod:`iapo.report._style`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure

from iapo.report._data import Report
from iapo.report._fig_budget import budget_figure
from iapo.report._fig_pareto import pareto_figure
from iapo.report._fig_policy_map import policy_map_figure
from iapo.report._fig_q_vs_n import q_vs_n_figure
from iapo.report._fig_rankings import rankings_figure
from iapo.report._fig_trace import trace_figure
from iapo.report._style import DPI, MIN_FONT_PT, style

__all__ = ["ADAPTIVE_FIGURES", "DPI", "FIGURES", "MIN_FONT_PT", "figures_for", "render", "save"]

#: File stem → (figure builder, section title).
FIGURES: dict[str, tuple[Callable[[Report], Figure], str]] = {
    "q_vs_n": (q_vs_n_figure, "Q vs N per prompt"),
    "policy_map": (policy_map_figure, "Policy map"),
    "psst_trace": (trace_figure, "PSST trace"),
    "rankings": (rankings_figure, "Deceiving prompts"),
    "budget": (budget_figure, "Budget account"),
}


#: Figures drawn only when the run has adaptive arms (issue #15), after the Q-vs-N figure.
ADAPTIVE_FIGURES: dict[str, tuple[Callable[[Report], Figure], str]] = {
    "pareto": (pareto_figure, "Utility vs expected samples"),
}


def figures_for(rep: Report) -> dict[str, tuple[Callable[[Report], Figure], str]]:
    """The figures of ``rep``'s report, in page order: :data:`FIGURES`, with
    :data:`ADAPTIVE_FIGURES` after the first when the run has adaptive arms."""
    if not rep.has_adaptive:
        return dict(FIGURES)
    items = list(FIGURES.items())
    return dict(items[:1] + list(ADAPTIVE_FIGURES.items()) + items[1:])


def render(rep: Report, name: str) -> Figure:
    """Build one of :data:`FIGURES` (or :data:`ADAPTIVE_FIGURES`) under the report style."""
    builder = {**FIGURES, **ADAPTIVE_FIGURES}[name][0]
    with style():
        return builder(rep)


def save(fig: Figure, path: Path) -> Path:
    with style():
        fig.savefig(path, dpi=DPI, facecolor="white", metadata={"Software": None})
    return path
