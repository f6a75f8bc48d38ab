"""The majority-vote U-statistic at large n (``_mv_fast``): brute force and the loops it replaces.

The loops of ``_majority`` (used below ``_FAST_FROM`` samples, unchanged since the stored results
were made) are the reference: forcing either path everywhere compares them at any n.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from numpy.typing import NDArray
from test_estimators import mv_pools, subsets_mean_mv
from test_tie_credit import subsets_mean, tie_rich_rows

from iapo.estimators import TIE_CREDITS, _majority, mv_ustat

TOL = 1e-9
CASES = settings(max_examples=150, deadline=None, derandomize=True)


@contextmanager
def fast_from(n: int) -> Iterator[None]:
    old = _majority._FAST_FROM
    _majority._FAST_FROM = n
    try:
        yield
    finally:
        _majority._FAST_FROM = old


def reference(labels: NDArray[np.int64], gold: NDArray[np.int64], k_max: int, rule: str) -> Any:
    with fast_from(10**9):  # the loops, at every n
        return mv_ustat(labels, gold, k_max, rule)  # type: ignore[arg-type]


@CASES
@given(mv_pools())
def test_fast_path_matches_subset_enumeration(
    case: tuple[NDArray[np.int64], NDArray[np.int64], int],
) -> None:
    labels, gold, k_max = case
    with fast_from(1):
        got = mv_ustat(labels, gold, k_max)
        single = [mv_ustat(labels[r : r + 1], gold[r : r + 1], k_max) for r in range(len(gold))]
    n = labels.shape[1]
    for r in range(labels.shape[0]):
        np.testing.assert_allclose(single[r][0], got[r], rtol=1e-12, atol=1e-15)
        for k in range(1, k_max + 1):
            if k > n:
                assert np.isnan(got[r, k - 1])
            else:
                ref = subsets_mean_mv(labels[r].tolist(), int(gold[r]), k)
                assert got[r, k - 1] == pytest.approx(ref, abs=TOL)


@CASES
@given(tie_rich_rows())
def test_fast_path_matches_every_k_subset_under_both_tie_rules(
    case: tuple[NDArray[np.int64], NDArray[np.int64], int],
) -> None:
    labels, gold, k_max = case
    for rule in TIE_CREDITS:
        with fast_from(1):
            got = mv_ustat(labels, gold, k_max, rule)
            one = mv_ustat(labels[:1], gold[:1], k_max, rule)
        np.testing.assert_allclose(one[0], got[0], rtol=1e-12, atol=1e-15)
        for r in range(labels.shape[0]):
            for k in range(1, k_max + 1):
                want = subsets_mean(labels[r].tolist(), int(gold[r]), k, rule)
                assert got[r, k - 1] == pytest.approx(want, abs=TOL), (rule, r, k)


def _rows(n: int, seed: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Vote profiles of every kind at n samples: one dominant wrong answer, many small classes,
    abstentions, gold absent, gold everywhere, a gold class that is not in the row."""
    rng = np.random.default_rng(seed)
    rows = []
    for classes in (1, 2, 3, 6, 20):
        p = rng.dirichlet(np.ones(classes + 2))
        rows.append(rng.choice(np.arange(-1, classes + 1), size=n, p=p))
    rows.append(np.r_[np.zeros(n // 2, int), np.ones(n - n // 2, int)])  # a dead heat
    rows.append(np.zeros(n, int))
    rows.append(np.full(n, 3))
    rows.append(np.r_[np.full(n // 3, 2), np.full(n // 3, 5), np.zeros(n - 2 * (n // 3), int)])
    gold = np.array([0] * len(rows))
    gold[3] = -1
    gold[7] = 9
    return np.array(rows, dtype=np.int64), gold


@pytest.mark.parametrize("n", [65, 128, 256])
@pytest.mark.parametrize("rule", TIE_CREDITS)
def test_large_n_agrees_with_the_loops(n: int, rule: str) -> None:
    labels, gold = _rows(n, seed=n)
    want = reference(labels, gold, n + 3, rule)
    got = mv_ustat(labels, gold, n + 3, rule)  # type: ignore[arg-type]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)
    for r in range(len(gold)):  # the single-row path (memoised profiles take it)
        one = mv_ustat(labels[r : r + 1], gold[r : r + 1], n // 2, rule)  # type: ignore[arg-type]
        np.testing.assert_allclose(one[0], want[r, : n // 2], rtol=1e-12, atol=1e-300)


def test_two_classes_at_n_200_is_hypergeometric() -> None:
    """gold vs one wrong answer: credit = P(X > k/2) + P(X = k/2)/2, X hypergeometric (exact)."""
    n = 200
    g_counts = [1, 37, 99, 100, 101, 150, 200]
    labels = np.array([[7] * g + [3] * (n - g) for g in g_counts], dtype=np.int64)
    got = mv_ustat(labels, np.full(len(g_counts), 7), n)
    for r, g in enumerate(g_counts):
        for k in range(1, n + 1, 7):
            ref = Fraction(0)
            for x in range(k + 1):
                pmf = Fraction(math.comb(g, x) * math.comb(n - g, k - x), math.comb(n, k))
                ref += pmf if 2 * x > k else pmf / 2 if 2 * x == k else 0
            assert got[r, k - 1] == pytest.approx(float(ref), rel=1e-12, abs=1e-300)
