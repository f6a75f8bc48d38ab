"""tie_credit "half" (the paper's released code: 0.5 for any tie at the top that includes gold)
against brute force, next to the default "fractional" (1/t): the definition, the U-statistic, the
disjoint blocks, the exact categorical expectation, the strategy and its memo."""

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

from iapo.contexts import context_grid
from iapo.estimators import TIE_CREDITS, mv_blocks, mv_exact, mv_ustat
from iapo.pools import Cell
from iapo.strategies import MajorityVote, get_strategy, vote_credit
from iapo.types import Context, PullRequest, PullResult, Sample

TOL = 1e-9
CASES = settings(max_examples=120, deadline=None, derandomize=True)


def credit(answers: Sequence[int], gold: int, rule: str) -> Fraction:
    """One vote's credit from the definition; -1 abstains."""
    votes = Counter(a for a in answers if a != -1)
    if not votes or gold == -1:
        return Fraction(0)
    top = max(votes.values())
    tied = [a for a, c in votes.items() if c == top]
    if gold not in tied:
        return Fraction(0)
    if len(tied) == 1:
        return Fraction(1)
    return Fraction(1, 2) if rule == "half" else Fraction(1, len(tied))


def subsets_mean(labels: Sequence[int], gold: int, k: int, rule: str) -> float:
    subs = list(itertools.combinations(labels, k))
    return float(sum((credit(s, gold, rule) for s in subs), Fraction(0)) / len(subs))


def blocks_mean(labels: Sequence[int], gold: int, k: int, rule: str) -> float:
    b = len(labels) // k
    parts = [credit(labels[i * k : (i + 1) * k], gold, rule) for i in range(b)]
    return float(sum(parts, Fraction(0)) / b)


def profiles_mean(probs: Sequence[float], gold_index: int, k: int, rule: str) -> float:
    """Expected credit of k i.i.d. draws, summed over every vote profile (counts per class, the
    last class = abstention) with its multinomial probability."""
    p_all = [*probs, max(1.0 - sum(probs), 0.0)]
    m = len(p_all)
    total = 0.0
    for cut in itertools.combinations(range(k + m - 1), m - 1):  # stars and bars
        bounds = [-1, *cut, k + m - 1]
        counts = [bounds[i + 1] - bounds[i] - 1 for i in range(m)]
        weight = math.factorial(k) * math.prod(
            p**c / math.factorial(c) for p, c in zip(p_all, counts, strict=True)
        )
        if weight > 0.0:
            votes = [i if i < m - 1 else -1 for i, c in enumerate(counts) for _ in range(c)]
            total += weight * float(credit(votes, gold_index, rule))
    return total


@st.composite
def tie_rich_rows(draw: st.DrawFn) -> tuple[NDArray[np.int64], NDArray[np.int64], int]:
    """Rows of n ≤ 9 labels over ≤ 4 classes (ties at every count likely), -1 abstains; gold
    present, absent (4) or -1."""
    n = draw(st.integers(1, 9))
    rows = draw(st.integers(1, 4))
    n_cls = draw(st.integers(1, 4))
    labels = [[draw(st.integers(-1, n_cls - 1)) for _ in range(n)] for _ in range(rows)]
    gold = [draw(st.integers(-1, n_cls)) for _ in range(rows)]
    return np.array(labels, dtype=np.int64), np.array(gold, dtype=np.int64), draw(st.integers(1, n))


@st.composite
def tiny_models(draw: st.DrawFn) -> tuple[NDArray[np.float64], NDArray[np.int64], int]:
    """Categoricals over ≤ 4 answers (+ abstention); equal weights make ties likely."""
    m = draw(st.integers(1, 4))
    rows = draw(st.integers(1, 3))
    probs, gold = [], []
    for _ in range(rows):
        weights = [draw(st.integers(0, 3)) for _ in range(m + 1)]
        if sum(weights) == 0:
            weights[0] = 1
        probs.append([w / sum(weights) for w in weights[:m]])
        gold.append(draw(st.integers(-1, m - 1)))
    return np.array(probs), np.array(gold, dtype=np.int64), draw(st.integers(1, 6))


# --------------------------------------------------------------------------- the definition


def test_vote_credit_half_gives_any_tie_one_half() -> None:
    assert vote_credit(["A", "B", "C"], "C", "half") == 0.5
    assert vote_credit(["A", "B", "C"], "C") == pytest.approx(1 / 3)
    assert vote_credit(["A", "B", "A", "B", "C", "C"], "A", "half") == 0.5
    assert vote_credit(["A", "B", "A"], "A", "half") == 1.0  # gold alone at the top
    assert vote_credit(["A", "B", "B"], "A", "half") == 0.0  # gold not at the top
    assert vote_credit(["A", None, None], "A", "half") == 1.0  # abstentions never tie
    assert vote_credit([None, None], "A", "half") == 0.0
    with pytest.raises(ValueError, match="fractional or half"):
        vote_credit(["A"], "A", "halves")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the kernels


@CASES
@given(tie_rich_rows())
def test_ustat_matches_every_k_subset(
    case: tuple[NDArray[np.int64], NDArray[np.int64], int],
) -> None:
    labels, gold, k_max = case
    for rule in TIE_CREDITS:
        got = mv_ustat(labels, gold, k_max, rule)
        for r in range(labels.shape[0]):
            for k in range(1, k_max + 1):
                want = subsets_mean(labels[r].tolist(), int(gold[r]), k, rule)
                assert got[r, k - 1] == pytest.approx(want, abs=TOL), (rule, r, k)


@CASES
@given(tie_rich_rows())
def test_blocks_match_every_block(case: tuple[NDArray[np.int64], NDArray[np.int64], int]) -> None:
    labels, gold, k_max = case
    for rule in TIE_CREDITS:
        got = mv_blocks(labels, gold, k_max, rule)
        for r in range(labels.shape[0]):
            for k in range(1, k_max + 1):
                want = blocks_mean(labels[r].tolist(), int(gold[r]), k, rule)
                assert got[r, k - 1] == pytest.approx(want, abs=TOL), (rule, r, k)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(tiny_models())
def test_exact_matches_every_vote_profile(
    case: tuple[NDArray[np.float64], NDArray[np.int64], int],
) -> None:
    probs, gold_index, k_max = case
    for rule in TIE_CREDITS:
        got = mv_exact(probs, gold_index, k_max, rule)
        for r in range(probs.shape[0]):
            for k in range(1, k_max + 1):
                want = profiles_mean(probs[r].tolist(), int(gold_index[r]), k, rule)
                assert got[r, k - 1] == pytest.approx(want, abs=TOL), (rule, r, k)


def test_half_differs_from_fractional_where_hand_computed() -> None:
    """Three equally likely answers, k = 3: all three differ with probability 6/27 (a three-way
    tie), gold at least twice with 7/27 (alone at the top). Fractional: 7/27 + 6/27 / 3 = 9/27;
    half: 7/27 + 6/27 / 2 = 10/27."""
    probs = np.array([[1 / 3, 1 / 3, 1 / 3]])
    frac = mv_exact(probs, np.array([0]), 3)[0, 2]
    half = mv_exact(probs, np.array([0]), 3, "half")[0, 2]
    assert frac == pytest.approx(9 / 27, abs=1e-12)
    assert half == pytest.approx(10 / 27, abs=1e-12)
    labels = np.array([[0, 1, 2, 0, 1, 2]])
    # every 3-subset: 8 of 20 hold one of each (a three-way tie), the other 12 have a pair;
    # gold 0 is in the pair in 4 of them
    assert mv_ustat(labels, np.array([0]), 3, "half")[0, 2] == pytest.approx((4 + 8 / 2) / 20)
    assert mv_ustat(labels, np.array([0]), 3)[0, 2] == pytest.approx((4 + 8 / 3) / 20)


def test_a_bad_rule_is_refused_by_every_kernel() -> None:
    labels, gold = np.array([[0, 1]]), np.array([0])
    for call in (
        lambda: mv_ustat(labels, gold, 2, "coin"),  # type: ignore[arg-type]
        lambda: mv_blocks(labels, gold, 2, "coin"),  # type: ignore[arg-type]
        lambda: mv_exact(np.array([[0.5, 0.5]]), gold, 2, "coin"),  # type: ignore[arg-type]
        lambda: MajorityVote(tie_credit="coin"),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError, match="fractional or half"):
            call()


# --------------------------------------------------------------------------- the strategy


def _samples(rng: np.random.Generator, n: int) -> tuple[Sample, ...]:
    answers = rng.choice(["A", "B", "C", "D"], size=n)
    return tuple(
        Sample(None if rng.random() < 0.1 else str(a), {}, float(rng.random())) for a in answers
    )


@pytest.mark.parametrize("seed", range(4))
def test_strategy_estimates_with_and_without_memo_match_subsets(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 7
    ctx = tuple(context_grid({"accuracy": [1.0]}, [0.0, 0.4]))
    strat = MajorityVote(tie_credit="half")
    pulls = [PullResult(PullRequest("p", "q", n), _samples(rng, n), "A") for _ in range(6)]
    for method in ("ustat", "blocks"):
        est = strat.estimate(pulls, ctx, n, method)
        for i, pr in enumerate(pulls):
            for ci, c in enumerate(ctx):
                for k in range(1, n + 1):
                    if method == "ustat":
                        subs = list(itertools.combinations(pr.samples, k))
                    else:
                        subs = [pr.samples[b * k : (b + 1) * k] for b in range(n // k)]
                    want = sum(strat.utility(list(s), "A", c) for s in subs) / len(subs)
                    assert est[i, ci, k - 1] == pytest.approx(want, abs=1e-9)
    codes = np.stack([strat.encode(pr.samples, "A", ctx) for pr in pulls])
    costs = np.array([[s.cost for s in pr.samples] for pr in pulls])
    plain = strat.estimate_encoded(codes, costs, ctx, n)
    # one memo shared with a fractional strategy: the rules never read each other's entries
    memo: dict[bytes, NDArray[np.float64]] = {}
    frac = MajorityVote().estimate_encoded(codes, costs, ctx, n, "ustat", memo)
    for _ in range(2):
        got = strat.estimate_encoded(codes, costs, ctx, n, "ustat", memo)
        np.testing.assert_allclose(got, plain, rtol=1e-12, atol=1e-15)
        one = strat.estimate_encoded(codes[:1], costs[:1], ctx, n, "ustat", memo)
        np.testing.assert_allclose(one, plain[:1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        MajorityVote().estimate_encoded(codes, costs, ctx, n, "ustat", memo), frac, rtol=1e-12
    )


def test_strategy_exact_utility_matches_draws() -> None:
    outcomes = (Sample("A", {}, 1.0), Sample("B", {}, 2.0), Sample("C", {}, 0.0))
    outcomes += (Sample(None, {}, 0.5),)
    cell = Cell("p", "q", "A", outcomes, np.array([0.3, 0.3, 0.3, 0.1]))
    ctx = Context("c", {"accuracy": 1.0}, 0.1)
    strat = MajorityVote(tie_credit="half")
    got = strat.exact_utility([cell], (ctx,), 5)[0, 0]
    for k in range(1, 6):
        want = sum(
            math.prod(cell.probs[i] for i in d) * strat.utility([outcomes[i] for i in d], "A", ctx)
            for d in itertools.product(range(4), repeat=k)
        )
        assert got[k - 1] == pytest.approx(want, abs=1e-9)
    assert got[2] != pytest.approx(MajorityVote().exact_utility([cell], (ctx,), 5)[0, 0, 2])


def test_get_strategy_passes_the_rule_and_best_of_n_refuses_half() -> None:
    mv = get_strategy("majority_vote", None, "half")
    assert isinstance(mv, MajorityVote) and mv.tie_credit == "half"
    assert get_strategy("best_of_n", ("a",)).name == "best_of_n"
    with pytest.raises(ValueError, match="majority_vote only"):
        get_strategy("best_of_n", ("a",), "half")
