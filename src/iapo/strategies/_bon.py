"""Best-of-N: keep the completion with the highest context-weighted score."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from iapo.estimators import bon_blocks, bon_exact, bon_ustat
from iapo.pools import Cell
from iapo.strategies._base import Method, ProfileCache, Strategy
from iapo.types import Context, PullResult, Sample

__all__ = ["BestOfN"]


class BestOfN(Strategy):
    """``R = max_i Σ_k w_k O_k(y_i) − w_cost · Σ_i cost(y_i)``, selecting by the context's score."""

    name: ClassVar[str] = "best_of_n"

    def _score(self, sample: Sample, context: Context) -> float:
        return sum(w * float(sample.scores[o]) for o, w in context.weights.items() if w)

    def quality(self, samples: Sequence[Sample], gold: str | None, context: Context) -> float:
        return max(self._score(s, context) for s in samples)

    def aggregate(self, samples: Sequence[Sample], context: Context) -> Sample | None:
        return max(samples, key=lambda s: self._score(s, context), default=None)

    def _weight_matrix(self, contexts: Sequence[Context]) -> NDArray[np.float64]:
        return np.array([c.weight_vector(self.objectives) for c in contexts]).T  # (K, C)

    def encode(
        self, samples: Sequence[Sample], gold: str | None, contexts: Sequence[Context]
    ) -> NDArray[np.float64]:
        """(n, C): each sample's selection score under each context."""
        scores = np.array(
            [[float(s.scores[o]) for o in self.objectives] for s in samples], dtype=np.float64
        ).reshape(len(samples), len(self.objectives))
        return np.asarray(scores @ self._weight_matrix(contexts), dtype=np.float64)

    def encode_pulls(
        self, pulls: Sequence[PullResult], contexts: Sequence[Context]
    ) -> NDArray[np.float64]:
        """:meth:`encode` of m pulls of one size n at once: (m, n, C), one weight matrix."""
        objectives = self.objectives
        scores = np.array(
            [[[float(s.scores[o]) for o in objectives] for s in pr.samples] for pr in pulls],
            dtype=np.float64,
        ).reshape(len(pulls), -1, len(objectives))
        return np.asarray(scores @ self._weight_matrix(contexts), dtype=np.float64)

    def quality_encoded(
        self,
        codes: NDArray[Any],
        contexts: Sequence[Context],
        k_max: int,
        method: Method,
        cache: ProfileCache | None = None,
    ) -> NDArray[np.float64]:
        m, n, n_ctx = codes.shape
        rows = codes.transpose(0, 2, 1).reshape(m * n_ctx, n)
        est = (bon_ustat if method == "ustat" else bon_blocks)(rows, None, k_max)
        return est.reshape(m, n_ctx, k_max)

    def exact_quality(
        self, cells: Sequence[Cell], contexts: Sequence[Context], k_max: int
    ) -> NDArray[np.float64]:
        v = max(len(c.outcomes) for c in cells)
        wm = self._weight_matrix(contexts)
        select = np.zeros((len(cells), len(contexts), v))
        probs = np.zeros((len(cells), len(contexts), v))
        for r, cell in enumerate(cells):
            scores = np.array([[o.scores[k] for k in self.objectives] for o in cell.outcomes])
            select[r, :, : len(cell.outcomes)] = (scores @ wm).T
            probs[r, :, : len(cell.outcomes)] = cell.probs[None, :]
        est = bon_exact(select.reshape(-1, v), probs.reshape(-1, v), None, k_max)
        return est.reshape(len(cells), len(contexts), k_max)
