"""Majority voting (self-consistency): credit 1/t for t tied plurality answers that include the
gold answer (``tie_credit="fractional"``, the default) or 0.5 for any such tie (``"half"``, the
paper's released code)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from iapo.adaptive import ArmLayout, ProfileMemo, adaptive_ustat_many, answer_probs
from iapo.estimators import TieCredit, check_tie_credit, mv_blocks, mv_exact, mv_ustat, vote_credit
from iapo.pools import Cell
from iapo.strategies._base import Method, ProfileCache, Strategy
from iapo.types import Context, Sample

__all__ = ["MajorityVote"]

ACCURACY = "accuracy"
ABSTAIN_CODE = -1


class MajorityVote(Strategy):
    """``R = w_accuracy · credit − w_cost · Σ cost``: the objective is the vote's correctness.

    ``tie_credit`` ("fractional" or "half", see :func:`vote_credit`) applies to the definition,
    every estimator and the exact expectation alike."""

    name: ClassVar[str] = "majority_vote"

    def __init__(
        self, objectives: Sequence[str] = (ACCURACY,), tie_credit: TieCredit = "fractional"
    ) -> None:
        if tuple(objectives) != (ACCURACY,):
            raise ValueError("majority_vote has exactly one objective, 'accuracy'")
        super().__init__(objectives)
        self.tie_credit: TieCredit = check_tie_credit(tie_credit)

    def __repr__(self) -> str:
        return f"MajorityVote(tie_credit={self.tie_credit!r})"

    def quality(self, samples: Sequence[Sample], gold: str | None, context: Context) -> float:
        w = float(context.weights.get(ACCURACY, 1.0))
        return w * vote_credit([s.answer for s in samples], gold, self.tie_credit)

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

    def encode(
        self, samples: Sequence[Sample], gold: str | None, contexts: Sequence[Context]
    ) -> NDArray[np.int64]:
        """(n, 1) answer codes: gold = 0, abstention = -1, other answers 1, 2, … in order of
        first appearance (no sample codes 0 without a gold answer)."""
        codes: dict[str | None, int] = {None: ABSTAIN_CODE}
        if gold is not None:
            codes[gold] = 0
        out = np.empty((len(samples), 1), dtype=np.int64)
        for j, s in enumerate(samples):
            out[j, 0] = codes.setdefault(s.answer, len(codes) - (gold is not None))
        return out

    def quality_encoded(
        self,
        codes: NDArray[Any],
        contexts: Sequence[Context],
        k_max: int,
        method: Method,
        cache: ProfileCache | None = None,
    ) -> NDArray[np.float64]:
        """Vote credit times each context's accuracy weight. With ``cache``, U-statistics are
        computed once per distinct vote profile (n, gold votes, abstentions, the other answers'
        counts in descending order) and memoised there: a dictionary lookup per repeated pull."""
        labels = np.asarray(codes[:, :, 0], dtype=np.int64)
        credit = _credit(labels, k_max, method, cache, self.tie_credit)
        return credit[:, None, :] * self._weights(contexts)[None, :, None]

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
        """The adaptive arms' utility estimates: per arm, the scheme's credit and realised cost
        averaged over every ordering of the pull (:func:`iapo.adaptive.adaptive_ustat_many`,
        exact, memoised per count profile), ``w_accuracy · credit − w_cost · cost``. NaN where
        N_max' = 1 (not an arm) or N_max' > n. ``decided`` never changes the vote of the fixed
        N_max' arm, so its credit is taken from ``quality`` (the fixed arm's, bit for bit: the
        two tie exactly when cost does not count)."""
        layout = ArmLayout(k_max, tuple(adaptive))
        m, n = codes.shape[0], codes.shape[1]
        out = np.full((m, len(contexts), layout.width - k_max), np.nan)
        cols = [(c, s) for c, s in layout.schemes() if s.n_max <= n]
        if not cols or m == 0:
            return out
        labels = np.asarray(codes[:, :, 0], dtype=np.int64)
        est = adaptive_ustat_many(
            labels,
            np.zeros(m, dtype=np.int64),
            [s for _, s in cols],
            costs,
            self.tie_credit,
            self._memo(),
        )
        w = self._weights(contexts)
        wc = np.array([c.cost_weight for c in contexts])
        for j, (col, scheme) in enumerate(cols):
            if scheme.rule.id == "decided":
                q = quality[:, :, scheme.n_max - 1]
            else:
                q = est.credit[:, j, None] * w[None, :]
            out[:, :, col - k_max] = q - est.cost[:, j, None] * wc[None, :]
        return out

    def _memo(self) -> ProfileMemo:
        memo: ProfileMemo | None = self.__dict__.get("_adaptive_memo")
        if memo is None:
            memo = self.__dict__["_adaptive_memo"] = {}
        return memo

    def exact_quality(
        self, cells: Sequence[Cell], contexts: Sequence[Context], k_max: int
    ) -> NDArray[np.float64]:
        probs_arr, gold_idx = answer_probs(cells)
        credit = mv_exact(probs_arr, gold_idx, k_max, self.tie_credit)
        return credit[:, None, :] * self._weights(contexts)[None, :, None]


def _credit(
    labels: NDArray[np.int64],
    k_max: int,
    method: Method,
    cache: ProfileCache | None,
    tie_credit: TieCredit,
) -> NDArray[np.float64]:
    """Vote credit (m, k_max) of code rows (gold = 0, abstain = -1)."""
    m, n = labels.shape
    gold = np.zeros(m, dtype=np.int64)
    if method == "blocks":  # order matters: no profile sharing
        return mv_blocks(labels, gold, k_max, tie_credit)
    if cache is None:
        return mv_ustat(labels, gold, k_max, tie_credit)
    if n == 1 and k_max >= 1:  # one vote: credit 1 for gold, 0 for a wrong answer or abstention
        one = np.full((m, k_max), np.nan)
        one[:, 0] = labels[:, 0] == 0
        return one
    if m == 1:  # one pull (the one-pull-per-step baselines): the profile with less numpy
        counts = np.bincount(labels[0] + 1)  # 0: abstain, 1: gold, 2…: wrong answers
        wrong = sorted(counts[2:].tolist(), reverse=True)
        gold_votes = int(counts[1]) if len(counts) > 1 else 0
        prof = np.array([n, gold_votes, int(counts[0]), *wrong], dtype=np.int64)
        return _profile_credit(prof, k_max, cache, tie_credit)[None, :]
    # vote profile: n, gold count, abstentions, the other answers' counts (descending)
    width = max(int(labels.max()) + 2, 2)  # column 0: abstain, 1: gold, 2…: wrong answers
    flat = (np.arange(m)[:, None] * width + labels + 1).ravel()
    counts = np.bincount(flat, minlength=m * width).reshape(m, width)
    profile = np.empty((m, width + 1), dtype=np.int64)
    profile[:, 0] = n
    profile[:, 1] = counts[:, 1]
    profile[:, 2] = counts[:, 0]
    profile[:, 3:] = -np.sort(-counts[:, 2:], axis=1)
    base = n + 1  # profile entries lie in 0..n: one integer key per profile when it fits
    if (profile.shape[1] - 1) * math.log2(base) < 62:
        key = profile[:, 1:] @ (base ** np.arange(profile.shape[1] - 1, dtype=np.int64))
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        uniq = profile[first]
    else:
        uniq, inverse = np.unique(profile, axis=0, return_inverse=True)
    vals = np.array([_profile_credit(prof, k_max, cache, tie_credit) for prof in uniq])
    return np.asarray(vals[np.asarray(inverse).ravel()], dtype=np.float64)


def _profile_credit(
    prof: NDArray[np.int64], k_max: int, cache: ProfileCache, tie_credit: TieCredit
) -> NDArray[np.float64]:
    """The U-statistic credit (k_max,) of one vote profile; the values for k ≤ min(n, k_max)
    are memoised in ``cache`` (keyed by the tie rule too), shared by every k_max ≥ n."""
    n = int(prof[0])
    kc = min(n, k_max)
    used = 3 + int(np.count_nonzero(prof[3:]))  # without the trailing zero counts
    rule = b"h" if tie_credit == "half" else b"f"
    key = rule + kc.to_bytes(4, "little") + prof[:used].tobytes()
    hit = cache.get(key)
    if hit is None:
        gold_count, abstain = int(prof[1]), int(prof[2])
        row = [0] * gold_count + [ABSTAIN_CODE] * abstain
        for label, c in enumerate(prof[3:used], start=1):
            row += [label] * int(c)
        assert len(row) == n
        res = mv_ustat(np.array([row], dtype=np.int64), np.zeros(1, dtype=np.int64), kc, tie_credit)
        hit = cache[key] = np.asarray(res[0], dtype=np.float64)
    out = np.full(k_max, np.nan)
    out[:kc] = hit
    return out
