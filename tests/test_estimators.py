"""The estimator kernels against brute-force enumeration from the definitions (DESIGN §1-2)."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from iapo.estimators import (
    bon_blocks,
    bon_exact,
    bon_ustat,
    mv_blocks,
    mv_exact,
    mv_ustat,
)

TOL = 1e-9
FAST = settings(max_examples=150, deadline=None, derandomize=True)


# --------------------------------------------------------------------------- references


def credit(answers: Sequence[int], gold: int) -> Fraction:
    """MV credit of one vote, straight from the definition."""
    votes = Counter(a for a in answers if a != -1)
    if not votes or gold == -1:
        return Fraction(0)
    top = max(votes.values())
    tied = [a for a, c in votes.items() if c == top]
    return Fraction(1, len(tied)) if gold in tied else Fraction(0)


def pick(select: Sequence[float], value: Sequence[float]) -> float:
    """BoN value of one set: mean value of the items tied at the top select score."""
    top = max(select)
    tied = [v for s, v in zip(select, value, strict=True) if s == top]
    return sum(tied) / len(tied)


def subsets_mean_mv(labels: Sequence[int], gold: int, k: int) -> float:
    subs = list(itertools.combinations(labels, k))
    return float(sum((credit(s, gold) for s in subs), Fraction(0)) / len(subs))


def subsets_mean_bon(select: Sequence[float], value: Sequence[float], k: int) -> float:
    subs = list(itertools.combinations(range(len(select)), k))
    picks = [pick([select[i] for i in s], [value[i] for i in s]) for s in subs]
    return math.fsum(picks) / len(subs)


def blocks_mean_mv(labels: Sequence[int], gold: int, k: int) -> float:
    b = len(labels) // k
    return float(
        sum((credit(labels[i * k : (i + 1) * k], gold) for i in range(b)), Fraction(0)) / b
    )


def blocks_mean_bon(select: Sequence[float], value: Sequence[float], k: int) -> float:
    b = len(select) // k
    sl = [slice(i * k, (i + 1) * k) for i in range(b)]
    return math.fsum(pick(select[s], value[s]) for s in sl) / b


def draws_mean_mv(probs: Sequence[float], gold_index: int, k: int) -> float:
    """Expected credit over all ordered k-draws; outcome len(probs) is the abstention."""
    m = len(probs)
    p_all = [*probs, max(1.0 - sum(probs), 0.0)]
    gold = gold_index if gold_index >= 0 else -2  # -2: an answer no draw produces
    total = 0.0
    for draw in itertools.product(range(m + 1), repeat=k):
        weight = math.prod(p_all[d] for d in draw)
        if weight > 0.0:
            total += weight * float(credit([d if d < m else -1 for d in draw], gold))
    return total


def draws_mean_bon(
    select: Sequence[float], probs: Sequence[float], value: Sequence[float], k: int
) -> float:
    total = 0.0
    for draw in itertools.product(range(len(select)), repeat=k):
        weight = math.prod(probs[d] for d in draw)
        if weight > 0.0:
            total += weight * pick([select[d] for d in draw], [value[d] for d in draw])
    return total


# --------------------------------------------------------------------------- strategies


@st.composite
def mv_pools(draw: st.DrawFn) -> tuple[NDArray[np.int64], NDArray[np.int64], int]:
    """Rows of n ≤ 8 labels from a few classes (-1 abstains), gold present or absent."""
    n = draw(st.integers(1, 8))
    rows = draw(st.integers(1, 4))
    n_cls = draw(st.integers(1, 4))
    alphabet = st.integers(-1, n_cls - 1)
    labels = [[draw(alphabet) for _ in range(n)] for _ in range(rows)]
    if draw(st.booleans()):
        labels[0] = [-1] * n  # an all-abstain row
    gold = [draw(st.integers(-1, n_cls)) for _ in range(rows)]  # n_cls: never in the row
    k_max = draw(st.integers(1, n + 2))
    return np.array(labels, dtype=np.int64), np.array(gold, dtype=np.int64), k_max


@st.composite
def mv_models(draw: st.DrawFn) -> tuple[NDArray[np.float64], NDArray[np.int64], int]:
    """Categorical answer models over M ≤ 3 classes (+ abstention), zero entries allowed."""
    m = draw(st.integers(1, 3))
    rows = draw(st.integers(1, 3))
    probs, gold = [], []
    for _ in range(rows):
        weights = [draw(st.integers(0, 4)) for _ in range(m + 1)]
        if sum(weights) == 0:
            weights[0] = 1
        probs.append([w / sum(weights) for w in weights[:m]])
        gold.append(draw(st.integers(-1, m - 1)))
    return np.array(probs), np.array(gold, dtype=np.int64), draw(st.integers(1, 5))


@st.composite
def bon_pools(
    draw: st.DrawFn,
) -> tuple[NDArray[np.float64], NDArray[np.float64], int]:
    """Scores from a few distinct levels (ties on purpose) and 0/1-ish values."""
    n = draw(st.integers(1, 8))
    rows = draw(st.integers(1, 4))
    levels = draw(st.lists(st.sampled_from([-1.5, 0.0, 0.25, 1.0, 3.0]), min_size=1, max_size=4))
    score = st.sampled_from(levels)
    select = [[draw(score) for _ in range(n)] for _ in range(rows)]
    value = [[draw(st.sampled_from([0.0, 1.0, 0.5, 2.0])) for _ in range(n)] for _ in range(rows)]
    return np.array(select), np.array(value), draw(st.integers(1, n + 2))


@st.composite
def bon_models(
    draw: st.DrawFn,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], int]:
    """Categoricals over V ≤ 4 outcomes with tied scores and zero-probability padding."""
    v = draw(st.integers(1, 4))
    rows = draw(st.integers(1, 3))
    select, probs, value = [], [], []
    for _ in range(rows):
        select.append([draw(st.sampled_from([0.0, 1.0, 2.5])) for _ in range(v)])
        weights = [draw(st.integers(0, 3)) for _ in range(v)]
        if sum(weights) == 0:
            weights[-1] = 1
        probs.append([w / sum(weights) for w in weights])
        value.append([draw(st.sampled_from([0.0, 1.0, -0.5])) for _ in range(v)])
    return np.array(select), np.array(probs), np.array(value), draw(st.integers(1, 4))


# --------------------------------------------------------------------------- majority voting


@FAST
@given(mv_pools())
def test_mv_ustat_matches_subset_enumeration(
    case: tuple[NDArray[np.int64], NDArray[np.int64], int],
) -> None:
    labels, gold, k_max = case
    got = mv_ustat(labels, gold, k_max)
    n = labels.shape[1]
    assert got.shape == (labels.shape[0], k_max)
    for r in range(labels.shape[0]):
        for k in range(1, k_max + 1):
            if k > n:
                assert np.isnan(got[r, k - 1])
            else:
                ref = subsets_mean_mv(labels[r].tolist(), int(gold[r]), k)
                assert got[r, k - 1] == pytest.approx(ref, abs=TOL)


@FAST
@given(mv_pools())
def test_mv_blocks_matches_block_enumeration(
    case: tuple[NDArray[np.int64], NDArray[np.int64], int],
) -> None:
    labels, gold, k_max = case
    got = mv_blocks(labels, gold, k_max)
    n = labels.shape[1]
    for r in range(labels.shape[0]):
        for k in range(1, k_max + 1):
            if k > n:
                assert np.isnan(got[r, k - 1])
            else:
                ref = blocks_mean_mv(labels[r].tolist(), int(gold[r]), k)
                assert got[r, k - 1] == pytest.approx(ref, abs=TOL)


@FAST
@given(mv_pools())
def test_mv_ustat_equals_blocks_at_k1_and_kn(
    case: tuple[NDArray[np.int64], NDArray[np.int64], int],
) -> None:
    labels, gold, _ = case
    n = labels.shape[1]
    u, b = mv_ustat(labels, gold, n), mv_blocks(labels, gold, n)
    np.testing.assert_allclose(u[:, [0, n - 1]], b[:, [0, n - 1]], rtol=0, atol=TOL)


def test_mv_ustat_larger_pools_match_enumeration() -> None:
    """n = 14 with 4 classes and abstentions: exercises gold counts j up to 7 and many ties."""
    rng = np.random.default_rng(7)
    labels = rng.integers(-1, 4, size=(3, 14))
    labels[2, :8] = 2  # a dominant class, gold elsewhere
    gold = np.array([0, 1, 3])
    got = mv_ustat(labels, gold, 14)
    for r in range(3):
        for k in range(1, 15):
            ref = subsets_mean_mv(labels[r].tolist(), int(gold[r]), k)
            assert got[r, k - 1] == pytest.approx(ref, abs=TOL)


def test_mv_ustat_two_classes_is_hypergeometric() -> None:
    """gold vs one wrong answer, n = 32: credit = P(X > k/2) + P(X = k/2)/2, X hypergeometric."""
    n = 32
    g_counts = [0, 1, 5, 16, 17, 31, 32]
    labels = np.array([[7] * g + [3] * (n - g) for g in g_counts])
    got = mv_ustat(labels, np.full(len(g_counts), 7), n)
    for r, g in enumerate(g_counts):
        for k in range(1, n + 1):
            ref = Fraction(0)
            for x in range(k + 1):
                pmf = Fraction(math.comb(g, x) * math.comb(n - g, k - x), math.comb(n, k))
                ref += pmf if 2 * x > k else pmf / 2 if 2 * x == k else 0
            assert got[r, k - 1] == pytest.approx(float(ref), abs=1e-12)


def test_mv_edge_cases() -> None:
    labels = np.array(
        [
            [-1, -1, -1, -1],  # every sample abstains
            [1, 1, 2, 2],  # gold never appears
            [-1, -1, -1, -1],  # gold = -1 (an abstention never wins)
            [5, -1, -1, -1],  # one vote beats any number of abstentions
        ]
    )
    gold = np.array([1, 3, -1, 5])
    for kernel in (mv_ustat, mv_blocks):
        got = kernel(labels, gold, 6)
        np.testing.assert_array_equal(got[:3, :4], 0.0)
        np.testing.assert_array_equal(
            got[3, :4], [0.25, 0.5, 1, 1] if kernel is mv_blocks else [0.25, 0.5, 0.75, 1]
        )
        assert np.isnan(got[:, 4:]).all()
        assert kernel(labels, gold, 0).shape == (4, 0)
        assert kernel(labels[:0], gold[:0], 3).shape == (0, 3)
    with pytest.raises(ValueError):
        mv_ustat(labels, gold[:2], 3)
    with pytest.raises(ValueError):
        mv_blocks(labels[0], gold, 3)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(mv_models())
def test_mv_exact_matches_draw_enumeration(
    case: tuple[NDArray[np.float64], NDArray[np.int64], int],
) -> None:
    probs, gold_index, k_max = case
    got = mv_exact(probs, gold_index, k_max)
    assert got.shape == (probs.shape[0], k_max)
    for r in range(probs.shape[0]):
        for k in range(1, k_max + 1):
            ref = draws_mean_mv(probs[r].tolist(), int(gold_index[r]), k)
            assert got[r, k - 1] == pytest.approx(ref, abs=TOL)


def test_mv_exact_padding_and_order_are_harmless() -> None:
    probs = np.array([[0.3, 0.25, 0.25, 0.1], [0.5, 0.5, 0.0, 0.0]])
    gold_index = np.array([1, 0])
    base = mv_exact(probs, gold_index, 12)
    padded = np.concatenate([np.zeros((2, 3)), probs[:, ::-1]], axis=1)
    np.testing.assert_allclose(mv_exact(padded, np.array([5, 6]), 12), base, rtol=0, atol=1e-13)
    # Rows of the batch are independent of each other.
    np.testing.assert_allclose(
        mv_exact(probs[1:], gold_index[1:], 12), base[1:], rtol=0, atol=1e-13
    )
    # Tiny negative abstention mass from rounding is clipped, not an error.
    over = np.array([[0.7, 0.3 + 1e-16]])
    assert np.isfinite(mv_exact(over, np.array([0]), 5)).all()


def test_mv_exact_zero_credit_rows() -> None:
    probs = np.array([[0.5, 0.5], [0.0, 0.9], [0.2, 0.2]])
    got = mv_exact(probs, np.array([-1, 0, 1]), 6)
    np.testing.assert_array_equal(got[:2], 0.0)
    assert (got[2] > 0).all()
    with pytest.raises(ValueError):
        mv_exact(probs, np.array([0, 2, 0]), 3)


def test_mv_exact_binary_is_binomial_with_coin_flip_ties() -> None:
    for p in (0.05, 0.4, 0.5, 0.62, 0.9):
        got = mv_exact(np.array([[p, 1 - p]]), np.array([0]), 40)[0]
        for k in range(1, 41):
            pmf = [math.comb(k, x) * p**x * (1 - p) ** (k - x) for x in range(k + 1)]
            ref = sum(pmf[x] for x in range(k + 1) if 2 * x > k)
            ref += pmf[k // 2] / 2 if k % 2 == 0 else 0.0
            assert got[k - 1] == pytest.approx(ref, abs=1e-12)


def test_mv_exact_deceiving_prompt_example() -> None:
    """DESIGN §1: prompt 1 (0.4, 0.9) beats prompt 2 (0.62, 0.62) at N=1 and loses at N=10."""
    prompt1 = mv_exact(np.array([[0.4, 0.6], [0.9, 0.1]]), np.array([0, 0]), 10).mean(axis=0)
    prompt2 = mv_exact(np.array([[0.62, 0.38], [0.62, 0.38]]), np.array([0, 0]), 10).mean(axis=0)
    assert round(prompt1[0], 4) == 0.65
    assert round(prompt2[0], 4) == 0.62
    assert round(prompt1[9], 4) == 0.6328
    assert round(prompt2[9], 4) == 0.7738


def test_mv_exact_large_k_stays_finite_and_accurate() -> None:
    """k up to 200: the generating functions are scaled so nothing under- or overflows."""
    probs = np.array([[0.55, 0.45, 0.0], [0.3, 0.3, 0.2], [0.01, 0.5, 0.0]])
    got = mv_exact(probs, np.array([0, 0, 0]), 200)
    assert np.isfinite(got).all()
    assert ((got >= 0) & (got <= 1)).all()
    for k in (1, 2, 51, 100, 199, 200):
        pmf = [math.comb(k, x) * 0.55**x * 0.45 ** (k - x) for x in range(k + 1)]
        ref = math.fsum(pmf[x] for x in range(k + 1) if 2 * x > k)
        ref += pmf[k // 2] / 2 if k % 2 == 0 else 0.0
        assert got[0, k - 1] == pytest.approx(ref, abs=1e-12)
    assert got[1, -1] == pytest.approx(0.5, abs=0.01)  # two leaders, tied in the limit
    assert got[2, -1] == pytest.approx(0.0, abs=1e-12)


def test_mv_ustat_is_unbiased_for_the_categorical_model() -> None:
    rng = np.random.default_rng(1)
    probs = np.array([0.4, 0.3, 0.15])  # abstention 0.15
    n, pulls = 10, 4000
    outcome = rng.choice(4, size=(pulls, n), p=[*probs, 0.15])
    labels = np.where(outcome == 3, -1, outcome + 10)
    est = mv_ustat(labels, np.full(pulls, 10), n)
    truth = mv_exact(probs[None], np.array([0]), n)[0]
    se = est.std(axis=0, ddof=1) / math.sqrt(pulls)
    assert (np.abs(est.mean(axis=0) - truth) < 4 * se + 1e-12).all()
    # The re-use over all subsets never has more variance than the disjoint blocks.
    blocks = mv_blocks(labels, np.full(pulls, 10), n)
    assert (est.var(axis=0) <= blocks.var(axis=0) + 1e-12).all()


# --------------------------------------------------------------------------- best-of-N


@FAST
@given(bon_pools(), st.booleans())
def test_bon_ustat_matches_subset_enumeration(
    case: tuple[NDArray[np.float64], NDArray[np.float64], int], own_value: bool
) -> None:
    select, value, k_max = case
    got = bon_ustat(select, None if own_value else value, k_max)
    ref_value = select if own_value else value
    n = select.shape[1]
    assert got.shape == (select.shape[0], k_max)
    for r in range(select.shape[0]):
        for k in range(1, k_max + 1):
            if k > n:
                assert np.isnan(got[r, k - 1])
            else:
                ref = subsets_mean_bon(select[r].tolist(), ref_value[r].tolist(), k)
                assert got[r, k - 1] == pytest.approx(ref, abs=TOL)


@FAST
@given(bon_pools(), st.booleans())
def test_bon_blocks_matches_block_enumeration(
    case: tuple[NDArray[np.float64], NDArray[np.float64], int], own_value: bool
) -> None:
    select, value, k_max = case
    got = bon_blocks(select, None if own_value else value, k_max)
    ref_value = select if own_value else value
    n = select.shape[1]
    for r in range(select.shape[0]):
        for k in range(1, k_max + 1):
            if k > n:
                assert np.isnan(got[r, k - 1])
            else:
                ref = blocks_mean_bon(select[r].tolist(), ref_value[r].tolist(), k)
                assert got[r, k - 1] == pytest.approx(ref, abs=TOL)


@FAST
@given(bon_pools())
def test_bon_ustat_equals_blocks_at_k1_and_kn(
    case: tuple[NDArray[np.float64], NDArray[np.float64], int],
) -> None:
    select, value, _ = case
    n = select.shape[1]
    for val in (None, value):
        u, b = bon_ustat(select, val, n), bon_blocks(select, val, n)
        np.testing.assert_allclose(u[:, [0, n - 1]], b[:, [0, n - 1]], rtol=0, atol=TOL)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(bon_models(), st.booleans())
def test_bon_exact_matches_draw_enumeration(
    case: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], int], own_value: bool
) -> None:
    select, probs, value, k_max = case
    got = bon_exact(select, probs, None if own_value else value, k_max)
    ref_value = select if own_value else value
    assert got.shape == (select.shape[0], k_max)
    for r in range(select.shape[0]):
        for k in range(1, k_max + 1):
            ref = draws_mean_bon(select[r].tolist(), probs[r].tolist(), ref_value[r].tolist(), k)
            assert got[r, k - 1] == pytest.approx(ref, abs=TOL)


def test_bon_exact_padding_and_closed_form() -> None:
    # Uniform over 0..V-1: E[max of k] = Σ_s s·[((s+1)/V)^k − (s/V)^k].
    v = 6
    select = np.arange(v, dtype=np.float64)[None]
    probs = np.full((1, v), 1 / v)
    got = bon_exact(select, probs, None, 30)[0]
    for k in range(1, 31):
        ref = sum(s * (((s + 1) / v) ** k - (s / v) ** k) for s in range(v))
        assert got[k - 1] == pytest.approx(ref, abs=1e-12)
    # Zero-probability padding anywhere (even an inf score or a NaN value) changes nothing.
    pad_sel = np.concatenate([select, [[np.inf, -np.inf]]], axis=1)
    pad_p = np.concatenate([probs, [[0.0, 0.0]]], axis=1)
    pad_v = np.concatenate([select, [[np.nan, np.nan]]], axis=1)
    np.testing.assert_allclose(bon_exact(pad_sel, pad_p, pad_v, 30)[0], got, rtol=0, atol=1e-13)


def test_bon_ties_average_the_tied_values() -> None:
    select = np.array([[1.0, 1.0, 0.0, 1.0]])
    value = np.array([[1.0, 0.0, 5.0, 0.0]])
    # A set with a top item reports 1/3 in expectation; only {item 2} alone reports 5.
    np.testing.assert_allclose(bon_ustat(select, value, 4)[0], [1.5, 1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(bon_blocks(select, value, 4)[0], [1.5, 0.25, 0.5, 1 / 3])
    got = bon_exact(select, np.full((1, 4), 0.25), value, 2)[0]
    np.testing.assert_allclose(got, [1.5, 0.0625 * 5 + (1 - 0.0625) / 3])


def test_bon_ustat_is_unbiased_for_the_categorical_model() -> None:
    rng = np.random.default_rng(2)
    scores = np.array([0.0, 1.0, 1.0, 2.0, 3.0])
    values = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    probs = np.array([0.4, 0.2, 0.2, 0.15, 0.05])
    n, pulls = 8, 4000
    idx = rng.choice(5, size=(pulls, n), p=probs)
    est = bon_ustat(scores[idx], values[idx], n)
    truth = bon_exact(scores[None], probs[None], values[None], n)[0]
    se = est.std(axis=0, ddof=1) / math.sqrt(pulls)
    assert (np.abs(est.mean(axis=0) - truth) < 4 * se + 1e-12).all()


def test_bon_shape_checks() -> None:
    select = np.zeros((2, 3))
    with pytest.raises(ValueError):
        bon_ustat(select, np.zeros((2, 4)), 3)
    with pytest.raises(ValueError):
        bon_exact(select, np.zeros((3, 3)), None, 3)
    assert bon_ustat(select, None, 0).shape == (2, 0)
    assert np.isnan(bon_blocks(select, None, 5)[:, 3:]).all()
