"""Majority voting (self-consistency) with 1/t credit for t tied plurality answers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from iapo.estimators import mv_blocks, mv_exact, mv_ustat
from iapo.pools import Cell
from iapo.strategies._base import Method, Strategy
from iapo.types import Context, PullResult, Sample

__all__ = ["MajorityVote"]

ACCURACY = "accuracy"


def vote_credit(answers: Sequence[str | None], gold: str | None) -> float:
    """1/t if ``gold`` is among the t answers tied for the most votes, else 0; None abstains."""
    counts = Counter(a for a in answers if a is not None)
    if not counts or gold is None:
        return 0.0
    top = max(counts.values())
    tied = [a for a, c in counts.items() if c == top]
    return 1.0 / len(tied) if gold in tied else 0.0


class MajorityVote(Strategy):
    """``R = w_accuracy · credit − w_cost · Σ cost``: the objective is the vote's correctness."""

    name: ClassVar[str] = "majority_vote"

    def __init__(self, objectives: Sequence[str] = (ACCURACY,)) -> None:
        if tuple(objectives) != (ACCURACY,):
            raise ValueError("majority_vote has exactly one objective, 'accuracy'")
        super().__init__(objectives)

    def quality(self, samples: Sequence[Sample], gold: str | None, context: Context) -> float:
        w = float(context.weights.get(ACCURACY, 1.0))
        return w * vote_credit([s.answer for s in samples], gold)

    def aggregate(self, samples: Sequence[Sample], context: Context) -> Sample | None:
        counts = Counter(s.answer for s in samples if s.answer is not None)
        if not counts:
            return None
        top = max(counts.values())
        winner = next(a for a, c in counts.items() if c == top)  # first to reach the top count
        return next(s for s in samples if s.answer == winner)

    @staticmethod
    def _weights(contexts: Sequence[Context]) -> NDArray[np.float64]:
        return np.array([float(c.weights.get(ACCURACY, 1.0)) for c in contexts])

    def _quality_estimates(
        self, pulls: Sequence[PullResult], contexts: Sequence[Context], k_max: int, method: Method
    ) -> NDArray[np.float64]:
        n = len(pulls[0].samples)
        labels = np.empty((len(pulls), n), dtype=np.int64)
        gold = np.empty(len(pulls), dtype=np.int64)
        for r, pr in enumerate(pulls):
            codes: dict[str, int] = {}
            if pr.gold is not None:
                codes[pr.gold] = 0
            gold[r] = 0 if pr.gold is not None else -2
            for j, s in enumerate(pr.samples):
                labels[r, j] = -1 if s.answer is None else codes.setdefault(s.answer, len(codes))
        credit = (mv_ustat if method == "ustat" else mv_blocks)(labels, gold, k_max)
        return credit[:, None, :] * self._weights(contexts)[None, :, None]

    def exact_quality(
        self, cells: Sequence[Cell], contexts: Sequence[Context], k_max: int
    ) -> NDArray[np.float64]:
        classes: list[dict[str, float]] = []
        for cell in cells:
            probs: dict[str, float] = {}
            for o, p in zip(cell.outcomes, cell.probs, strict=True):
                if o.answer is not None:
                    probs[o.answer] = probs.get(o.answer, 0.0) + float(p)
            classes.append(probs)
        m = max([len(c) for c in classes] + [1])
        probs_arr = np.zeros((len(cells), m))
        gold_idx = np.full(len(cells), -1, dtype=np.int64)
        for r, (cell, cls) in enumerate(zip(cells, classes, strict=True)):
            for j, (answer, p) in enumerate(cls.items()):
                probs_arr[r, j] = p
                if answer == cell.gold:
                    gold_idx[r] = j
        credit = mv_exact(probs_arr, gold_idx, k_max)
        return credit[:, None, :] * self._weights(contexts)[None, :, None]
