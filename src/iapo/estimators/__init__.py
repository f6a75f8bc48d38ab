"""Estimators of a pull's utility for every smaller N (DESIGN §2).

One pull of (p, n) gives n i.i.d. completions. These kernels turn a batch of pulls into, for every
k ≤ k_max, an estimate of the aggregated quantity at N = k:

* ``*_ustat``: the U-statistic, the mean over all C(n, k) k-subsets (unbiased, lowest variance);
* ``*_blocks``: the paper's re-use, the mean over ⌊n/k⌋ disjoint consecutive blocks of size k;
* ``*_exact``: the expectation under k i.i.d. draws (with replacement) from a categorical
  distribution, the ground truth of replayed pools.

All kernels are vectorised over rows (one row = one pull, or one pull × context) and return an
array of shape ``(rows, k_max)`` whose column ``k - 1`` is the value for N = k (``NaN`` where
k > n). The majority-vote kernels take ``tie_credit`` (:data:`TIE_CREDITS`): how a tie at the
top that includes the gold answer is credited.
"""

from __future__ import annotations

from iapo.estimators._bon import bon_blocks, bon_exact, bon_ustat
from iapo.estimators._majority import (
    TIE_CREDITS,
    TieCredit,
    check_tie_credit,
    mv_blocks,
    mv_ustat,
    vote_credit,
)
from iapo.estimators._mv_exact import mv_exact, mv_exact_many
from iapo.estimators._sums import sum_blocks, sum_ustat

__all__ = [
    "TIE_CREDITS",
    "TieCredit",
    "bon_blocks",
    "bon_exact",
    "bon_ustat",
    "check_tie_credit",
    "mv_blocks",
    "mv_exact",
    "mv_exact_many",
    "mv_ustat",
    "sum_blocks",
    "sum_ustat",
    "vote_credit",
]
