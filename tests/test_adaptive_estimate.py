"""Estimates of adaptive arms from pulls: exact mode against enumeration of every ordered
N_max-tuple of distinct samples, and unbiasedness (the estimator's expectation over every
possible pull, enumerated, is the exact Q)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iapo.adaptive import (
    AdaptiveScheme,
    Beta,
    Decided,
    Dirichlet,
    Fixed,
    StopRule,
    Window,
    adaptive_exact,
    adaptive_ustat,
    adaptive_utility,
    run_sequence,
)
from iapo.estimators import mv_ustat
from iapo.types import Context

RULES: list[StopRule] = [Fixed(), Decided(), Beta(0.8), Dirichlet(0.7), Window(1), Window(2)]


def _orderings(
    row: list[int], costs: list[float], gold: int, sc: AdaptiveScheme, tie: str
) -> tuple[float, float, float]:
    """Mean (credit, samples, cost) over every ordered N_max-tuple of distinct samples."""
    tot = [0.0, 0.0, 0.0]
    count = 0
    for perm in itertools.permutations(range(len(row)), sc.n_max):
        seq = [row[i] if row[i] >= 0 else None for i in perm]
        c, n = run_sequence(sc, seq, gold if gold >= 0 else None, tie)  # type: ignore[arg-type]
        tot[0] += c
        tot[1] += n
        tot[2] += sum(costs[i] for i in perm[:n])
        count += 1
    return tot[0] / count, tot[1] / count, tot[2] / count


PULLS = [
    [0, 0, 1, 2, -1, 1, 0],
    [1, 1, 2, 2, 0, 0, -1],
    [0, 0, 0, 0, 0, 0, 1],
    [3, 4, 5, 6, -1, -1, 0],
    [1, 1, 1, 1, 2, -1, -1],  # gold 0 never answered
]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
@pytest.mark.parametrize("n_max,batch", [(5, 1), (5, 2), (4, 3), (7, 2), (3, 3)])
def test_exact_mode_is_the_mean_over_orderings(rule: StopRule, n_max: int, batch: int) -> None:
    sc = AdaptiveScheme(rule, n_max, batch)
    labels = np.array(PULLS, dtype=np.int64)
    gold = np.zeros(len(PULLS), dtype=np.int64)
    costs = np.random.default_rng(2).random(labels.shape)
    pulls = range(len(PULLS)) if n_max <= 5 else range(2)  # 7! orderings each
    for tie in ("fractional", "half"):
        est = adaptive_ustat(labels, gold, sc, costs, tie)  # type: ignore[arg-type]
        for r in pulls:
            c, s, k = _orderings(PULLS[r], list(costs[r]), 0, sc, tie)
            assert est.credit[r] == pytest.approx(c, abs=1e-12)
            assert est.samples[r] == pytest.approx(s, abs=1e-12)
            assert est.cost[r] == pytest.approx(k, abs=1e-12)


def test_fixed_rule_is_mv_ustat() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(-1, 4, size=(50, 10))
    gold = rng.integers(0, 4, size=50)
    for n_max in (1, 4, 10):
        est = adaptive_ustat(labels, gold, AdaptiveScheme(Fixed(), n_max, 3))
        np.testing.assert_allclose(est.credit, mv_ustat(labels, gold, n_max)[:, -1], atol=1e-12)


#: Cells as outcome lists (answer code, cost): answers cost differently (0 = gold, -1 abstains).
OUTCOMES = [
    [(0, 1.0), (0, 0.2), (1, 0.5), (-1, 2.0)],
    [(0, 1.0), (1, 0.3), (2, 0.6)],
    [(1, 0.4), (1, 0.9), (0, 0.1)],
]


@pytest.mark.parametrize("rule", [Decided(), Beta(0.8), Dirichlet(0.7), Window(2)], ids=str)
@pytest.mark.parametrize("n_max,batch,n", [(3, 1, 4), (3, 2, 5), (4, 3, 5)])
def test_unbiased_over_every_pull(rule: StopRule, n_max: int, batch: int, n: int) -> None:
    """Σ over all n-sequences of outcomes P(sequence) · estimate = exact expectation."""
    sc = AdaptiveScheme(rule, n_max, batch)
    for outs in OUTCOMES:
        k = len(outs)
        seqs = np.array(list(itertools.product(range(k), repeat=n)), dtype=np.int64)
        answers = np.array([a for a, _ in outs])[seqs]
        costs = np.array([c for _, c in outs])[seqs]
        est = adaptive_ustat(answers, np.zeros(len(seqs), dtype=np.int64), sc, costs)
        mean = [float(x.mean()) for x in (est.credit, est.samples, est.cost)]  # uniform outcomes
        classes = sorted({a for a, _ in outs if a >= 0})
        probs = np.array([[sum(a == c for a, _ in outs) / k for c in classes]])
        gold_col = np.array([classes.index(0) if 0 in classes else -1])
        mean_cost = np.array([np.mean([c for _, c in outs])])
        ex = adaptive_exact(probs, gold_col, sc, mean_cost=mean_cost)
        assert mean[0] == pytest.approx(ex.credit[0], abs=1e-12)
        assert mean[1] == pytest.approx(ex.samples[0], abs=1e-12)
        assert mean[2] == pytest.approx(ex.cost[0], abs=1e-12)


def test_random_orderings() -> None:
    labels = np.array(PULLS, dtype=np.int64)
    gold = np.zeros(len(PULLS), dtype=np.int64)
    costs = np.random.default_rng(4).random(labels.shape)
    sc = AdaptiveScheme(Beta(0.8), 5, 1)
    a = adaptive_ustat(labels, gold, sc, costs, orderings=64, seed=11)
    b = adaptive_ustat(labels, gold, sc, costs, orderings=64, seed=11)
    np.testing.assert_array_equal(a.credit, b.credit)
    np.testing.assert_array_equal(a.cost, b.cost)
    exact = adaptive_ustat(labels, gold, sc, costs)
    many = adaptive_ustat(labels, gold, sc, costs, orderings=4000, seed=1)
    # 4000 orderings: standard error below 0.01 for quantities in [0, 1] and [1, 5]
    np.testing.assert_allclose(many.credit, exact.credit, atol=0.05)
    np.testing.assert_allclose(many.samples, exact.samples, atol=0.2)
    with pytest.raises(ValueError):
        adaptive_ustat(labels, gold, sc, orderings=0)


def test_short_pulls_are_nan_and_guard() -> None:
    labels = np.zeros((2, 3), dtype=np.int64)
    est = adaptive_ustat(labels, np.zeros(2, dtype=np.int64), AdaptiveScheme(Decided(), 4))
    assert np.isnan(est.credit).all() and np.isnan(est.cost).all()
    wide = np.arange(200).reshape(1, 200) % 20
    with pytest.raises(ValueError, match="too large"):
        adaptive_ustat(wide, np.zeros(1, dtype=np.int64), AdaptiveScheme(Window(4), 200, 1))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(-1, 3), min_size=6, max_size=6),
    st.sampled_from(RULES),
    st.integers(1, 3),
    st.integers(1, 5),
)
def test_estimate_property(row: list[int], rule: StopRule, batch: int, n_max: int) -> None:
    sc = AdaptiveScheme(rule, n_max, batch)
    costs = [0.1 * (i + 1) for i in range(6)]
    est = adaptive_ustat(np.array([row]), np.array([0]), sc, np.array([costs]))
    c, s, k = _orderings(row, costs, 0, sc, "fractional")
    assert est.credit[0] == pytest.approx(c, abs=1e-12)
    assert est.samples[0] == pytest.approx(s, abs=1e-12)
    assert est.cost[0] == pytest.approx(k, abs=1e-12)


def test_utility() -> None:
    ctx = [
        Context("blind", {"accuracy": 1.0}, 0.0),
        Context("averse", {"accuracy": 2.0}, 0.5),
    ]
    u = adaptive_utility(np.array([0.5, 1.0]), np.array([2.0, 4.0]), ctx)
    np.testing.assert_allclose(u, [[0.5, 0.0], [1.0, 0.0]])
