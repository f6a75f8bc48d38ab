"""Aggregation strategies: how N completions become one answer, and its worth per context."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from iapo.estimators import sum_blocks, sum_ustat
from iapo.pools import Cell
from iapo.types import Context, PullResult, Sample

__all__ = ["Method", "Strategy"]

Method = Literal["ustat", "blocks"]


class Strategy(ABC):
    """Majority vote or Best-of-N: utility of one aggregated pull, its estimators, its ground truth.

    Utilities are ``quality − w_cost · Σ_{i≤N} cost(y_i)``; subclasses define the quality part.
    """

    name: ClassVar[str]

    def __init__(self, objectives: Sequence[str]) -> None:
        self.objectives = tuple(objectives)

    # -- the definition (one pull, all of its samples aggregated) ---------------------------
    @abstractmethod
    def quality(self, samples: Sequence[Sample], gold: str | None, context: Context) -> float:
        """Quality of aggregating exactly these samples under ``context`` (mean over ties)."""

    def utility(self, samples: Sequence[Sample], gold: str | None, context: Context) -> float:
        """The paper's per-query utility R of one pull (eqs. 1–2)."""
        cost = sum(s.cost for s in samples)
        return self.quality(samples, gold, context) - context.cost_weight * cost

    @abstractmethod
    def aggregate(self, samples: Sequence[Sample], context: Context) -> Sample | None:
        """The sample whose answer is returned when this strategy is deployed."""

    # -- estimators over a batch of pulls -------------------------------------------------
    @abstractmethod
    def _quality_estimates(
        self, pulls: Sequence[PullResult], contexts: Sequence[Context], k_max: int, method: Method
    ) -> NDArray[np.float64]:
        """(len(pulls), C, k_max) estimates of the quality at N = k; all pulls share one n."""

    @abstractmethod
    def exact_quality(
        self, cells: Sequence[Cell], contexts: Sequence[Context], k_max: int
    ) -> NDArray[np.float64]:
        """(len(cells), C, k_max): expected quality at N = k under i.i.d. draws from each cell."""

    def estimate(
        self,
        pulls: Sequence[PullResult],
        contexts: Sequence[Context],
        k_max: int,
        method: Method = "ustat",
    ) -> NDArray[np.float64]:
        """Utility estimates (len(pulls), C, k_max) for every N = k ≤ k_max; NaN where k > n."""
        out = np.full((len(pulls), len(contexts), k_max), np.nan)
        if not pulls:
            return out
        wc = np.array([c.cost_weight for c in contexts])
        by_n: dict[int, list[int]] = {}
        for i, pr in enumerate(pulls):
            by_n.setdefault(len(pr.samples), []).append(i)
        for idx in by_n.values():
            group = [pulls[i] for i in idx]
            costs = np.array([[s.cost for s in pr.samples] for pr in group], dtype=np.float64)
            cost_est = (sum_ustat if method == "ustat" else sum_blocks)(costs, k_max)
            q = self._quality_estimates(group, contexts, k_max, method)
            out[idx] = q - wc[None, :, None] * cost_est[:, None, :]
        return out

    def exact_utility(
        self, cells: Sequence[Cell], contexts: Sequence[Context], k_max: int
    ) -> NDArray[np.float64]:
        """(len(cells), C, k_max): exact expected utility of (cell's prompt, N = k) on its query."""
        q = self.exact_quality(cells, contexts, k_max)
        wc = np.array([c.cost_weight for c in contexts])
        mean_cost = np.array([c.mean_cost() for c in cells])
        k = np.arange(1, k_max + 1)
        return q - wc[None, :, None] * mean_cost[:, None, None] * k[None, None, :]

    def validate_context(self, context: Context) -> str | None:
        """A problem with ``context`` for this strategy (one line), or None."""
        unknown = sorted(set(context.weights) - set(self.objectives))
        if unknown:
            return (
                f"weights name {', '.join(map(repr, unknown))}, which are not objectives "
                f"of this run ({', '.join(self.objectives)})"
            )
        return None
