"""Aggregation strategies: how N completions become one answer, and its worth per context."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from iapo.estimators import sum_blocks, sum_ustat
from iapo.pools import Cell
from iapo.types import Context, PullResult, Sample

__all__ = ["Method", "ProfileCache", "Strategy", "net_utility"]

Method = Literal["ustat", "blocks"]

#: A per-process memo a strategy may keep between calls of ``quality_encoded`` (the bench
#: simulator keeps one per pool): keys and values are the strategy's own business.
ProfileCache = dict[bytes, NDArray[np.float64]]


def net_utility(
    quality: NDArray[np.float64], cost: NDArray[np.float64], cost_weight: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The paper's utility R = quality − w_cost · cost, for every pull, context and N = k.

    ``quality`` (m, C, k), ``cost`` (m, k): the (estimated or expected) total cost of N = k
    samples, ``cost_weight`` (C,). NaN in either input stays NaN.
    """
    return quality - cost_weight[None, :, None] * cost[:, None, :]


def cost_weights(contexts: Sequence[Context]) -> NDArray[np.float64]:
    return np.array([c.cost_weight for c in contexts])


class Strategy(ABC):
    """Majority vote or Best-of-N: utility of one aggregated pull, its estimators, its ground truth.

    Utilities are ``quality − w_cost · Σ_{i≤N} cost(y_i)`` (:func:`net_utility`); subclasses
    define the quality part.

    The estimators work on an *encoded* form of samples: :meth:`encode` turns the samples of one
    (prompt, query) cell into an array with one row per sample that determines their quality
    under every context (majority vote: an answer code; Best-of-N: the context-weighted scores),
    and :meth:`quality_encoded` estimates from such rows. :meth:`estimate` (for
    :class:`PullResult` objects) and the ``iapo bench`` simulator (which encodes a pool once and
    draws rows) both go through :meth:`estimate_encoded`, so they compute the same numbers.
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
    def encode(
        self, samples: Sequence[Sample], gold: str | None, contexts: Sequence[Context]
    ) -> NDArray[Any]:
        """(len(samples), F): one row per sample, consistent across the samples of one call
        (one cell's outcomes, or one pull's samples), read by :meth:`quality_encoded`."""

    @abstractmethod
    def quality_encoded(
        self,
        codes: NDArray[Any],
        contexts: Sequence[Context],
        k_max: int,
        method: Method,
        cache: ProfileCache | None = None,
    ) -> NDArray[np.float64]:
        """(m, C, k_max) quality estimates at N = k ≤ k_max (NaN where k > n) of m pulls of the
        same size n, from their encoded rows ``codes`` (m, n, F). ``cache``: an optional memo
        that may make repeated inputs cheaper; the values agree with the uncached ones up to
        rounding."""

    @abstractmethod
    def exact_quality(
        self, cells: Sequence[Cell], contexts: Sequence[Context], k_max: int
    ) -> NDArray[np.float64]:
        """(len(cells), C, k_max): expected quality at N = k under i.i.d. draws from each cell."""

    def estimate_encoded(
        self,
        codes: NDArray[Any],
        costs: NDArray[np.float64],
        contexts: Sequence[Context],
        k_max: int,
        method: Method = "ustat",
        cache: ProfileCache | None = None,
        adaptive: Sequence[str] = (),
    ) -> NDArray[np.float64]:
        """Utility estimates (m, C, k_max) of m pulls of one size n, from encoded rows (m, n, F)
        and per-sample costs (m, n); NaN where k > n. With ``adaptive`` arm ids, the adaptive
        arms' columns follow: (m, C, (1 + len(adaptive))·k_max), the layout of
        :class:`iapo.adaptive.ArmLayout` with N_max = ``k_max``."""
        cost = (sum_ustat if method == "ustat" else sum_blocks)(costs, k_max)
        quality = self.quality_encoded(codes, contexts, k_max, method, cache)
        fixed = net_utility(quality, cost, cost_weights(contexts))
        if not adaptive:
            return fixed
        extra = self.adaptive_encoded(codes, costs, contexts, k_max, adaptive, quality, cache)
        return np.concatenate([fixed, extra], axis=2)

    def adaptive_encoded(
        self,
        codes: NDArray[Any],
        costs: NDArray[np.float64],
        contexts: Sequence[Context],
        k_max: int,
        adaptive: Sequence[str],
        quality: NDArray[np.float64],
        cache: ProfileCache | None = None,
    ) -> NDArray[np.float64]:
        """(m, C, len(adaptive)·k_max): the utility estimates of the adaptive arms (issue #15;
        :class:`iapo.adaptive.ArmLayout`'s blocks after the fixed one). Majority vote only."""
        raise ValueError(f"adaptive arms need majority_vote, not {self.name}")

    def estimate(
        self,
        pulls: Sequence[PullResult],
        contexts: Sequence[Context],
        k_max: int,
        method: Method = "ustat",
        adaptive: Sequence[str] = (),
    ) -> NDArray[np.float64]:
        """Utility estimates (len(pulls), C, k_max) for every N = k ≤ k_max; NaN where k > n
        (with ``adaptive``, the adaptive arms' columns after them, see :meth:`estimate_encoded`)."""
        width = k_max * (1 + len(adaptive))
        out = np.full((len(pulls), len(contexts), width), np.nan)
        by_n: dict[int, list[int]] = {}
        for i, pr in enumerate(pulls):
            by_n.setdefault(len(pr.samples), []).append(i)
        for idx in by_n.values():
            group = [pulls[i] for i in idx]
            codes = self.encode_pulls(group, contexts)
            costs = np.array([[s.cost for s in pr.samples] for pr in group], dtype=np.float64)
            if adaptive:
                est = self.estimate_encoded(
                    codes, costs, contexts, k_max, method, adaptive=adaptive
                )
            else:  # a subclass's estimate_encoded may predate adaptive arms
                est = self.estimate_encoded(codes, costs, contexts, k_max, method)
            out[idx] = est
        return out

    def encode_pulls(
        self, pulls: Sequence[PullResult], contexts: Sequence[Context]
    ) -> NDArray[Any]:
        """(m, n, F): :meth:`encode` of each of m pulls of one size n (a strategy may do the
        whole batch at once)."""
        return np.stack([self.encode(pr.samples, pr.gold, contexts) for pr in pulls])

    def exact_utility(
        self, cells: Sequence[Cell], contexts: Sequence[Context], k_max: int
    ) -> NDArray[np.float64]:
        """(len(cells), C, k_max): exact expected utility of (cell's prompt, N = k) on its query."""
        q = self.exact_quality(cells, contexts, k_max)
        wc = cost_weights(contexts)
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
