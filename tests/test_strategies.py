"""Strategies: definitions, estimators wired per context, exact ground truth (DESIGN §1 toy)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from conftest import bernoulli_pool

from iapo.contexts import context_grid
from iapo.pools import Cell
from iapo.strategies import BestOfN, MajorityVote, exact_cell_utilities, vote_credit
from iapo.types import Context, PullRequest, PullResult, Sample


def test_vote_credit_ties_and_abstentions():
    assert vote_credit(["A", "B", "A"], "A") == 1.0
    assert vote_credit(["A", "B"], "A") == 0.5
    assert vote_credit(["A", "B", "C"], "C") == pytest.approx(1 / 3)
    assert vote_credit([None, None], "A") == 0.0
    assert vote_credit([None, "B", None], "B") == 1.0
    assert vote_credit(["A", "A", "B"], "B") == 0.0


def test_design_toy_deceiving_prompt_exact():
    """DESIGN §1: prompt 1 wins at N=1 (.65 vs .62) and loses at N=10 (.6328 vs .7738)."""
    pool = bernoulli_pool(np.array([[0.4, 0.9], [0.62, 0.62]]))
    ctx = (Context("acc", {"accuracy": 1.0}, 0.0),)
    q = exact_cell_utilities(pool, MajorityVote(), ctx, 10).mean(axis=1).transpose(1, 0, 2)
    assert q[0, 0, 0] == pytest.approx(0.65)
    assert q[0, 1, 0] == pytest.approx(0.62)
    assert round(q[0, 0, 9], 4) == 0.6328
    assert round(q[0, 1, 9], 4) == 0.7738


def _brute_utility(strategy, samples, gold, ctx, k):
    vals = [strategy.utility(list(sub), gold, ctx) for sub in itertools.combinations(samples, k)]
    return sum(vals) / len(vals)


@pytest.mark.parametrize("seed", range(5))
def test_mv_estimate_equals_mean_over_subsets_with_cost(seed):
    rng = np.random.default_rng(seed)
    n = 6
    answers = rng.choice(["A", "B", "C", None], size=n, p=[0.4, 0.3, 0.2, 0.1])
    samples = tuple(
        Sample(a, {}, float(c)) for a, c in zip(answers, rng.uniform(0, 2, n), strict=True)
    )
    contexts = tuple(context_grid({"accuracy": [1.0]}, [0.0, 0.3]))
    pr = PullResult(PullRequest("p", "q", n), samples, "A")
    est = MajorityVote().estimate([pr], contexts, n)
    for ci, c in enumerate(contexts):
        for k in range(1, n + 1):
            assert est[0, ci, k - 1] == pytest.approx(
                _brute_utility(MajorityVote(), samples, "A", c, k), abs=1e-9
            )


@pytest.mark.parametrize("seed", range(5))
def test_bon_estimate_selects_by_each_contexts_own_score(seed):
    rng = np.random.default_rng(seed)
    n = 5
    samples = tuple(
        Sample(None, {"helpful": float(h), "harmless": float(s)}, float(c))
        for h, s, c in zip(
            rng.integers(0, 4, n) / 3, rng.integers(0, 4, n) / 3, rng.uniform(0, 1, n), strict=True
        )
    )
    strategy = BestOfN(("helpful", "harmless"))
    contexts = tuple(context_grid({"helpful": [0.1, 0.5, 0.9]}, [0.0, 0.2], complement="harmless"))
    pr = PullResult(PullRequest("p", "q", n), samples)
    est = strategy.estimate([pr], contexts, n)
    blocks = strategy.estimate([pr], contexts, n, method="blocks")
    for ci, c in enumerate(contexts):
        for k in range(1, n + 1):
            assert est[0, ci, k - 1] == pytest.approx(
                _brute_utility(strategy, samples, None, c, k), abs=1e-9
            )
        assert blocks[0, ci, n - 1] == pytest.approx(est[0, ci, n - 1], abs=1e-9)


def test_exact_utility_matches_enumeration_of_draws():
    outcomes = (Sample("A", {}, 1.0), Sample("B", {}, 2.0), Sample(None, {}, 0.5))
    cell = Cell("p", "q", "A", outcomes, np.array([0.5, 0.3, 0.2]))
    ctx = Context("c", {"accuracy": 1.0}, 0.1)
    got = MajorityVote().exact_utility([cell], (ctx,), 4)[0, 0]
    for k in range(1, 5):
        want = 0.0
        for draw in itertools.product(range(3), repeat=k):
            p = math.prod(cell.probs[i] for i in draw)
            want += p * MajorityVote().utility([outcomes[i] for i in draw], "A", ctx)
        assert got[k - 1] == pytest.approx(want, abs=1e-9)


def test_bon_exact_matches_enumeration_of_draws():
    outcomes = (
        Sample(None, {"a": 0.2, "b": 0.9}, 0.1),
        Sample(None, {"a": 0.8, "b": 0.1}, 0.3),
        Sample(None, {"a": 0.5, "b": 0.5}, 0.2),
    )
    cell = Cell("p", "q", None, outcomes, np.array([1.0, 2.0, 1.0]))
    strategy = BestOfN(("a", "b"))
    ctxs = (Context("x", {"a": 0.7, "b": 0.3}, 0.5), Context("y", {"a": 0.1, "b": 0.9}, 0.0))
    got = strategy.exact_utility([cell], ctxs, 3)[0]
    for ci, ctx in enumerate(ctxs):
        for k in range(1, 4):
            want = sum(
                math.prod(cell.probs[i] for i in d)
                * strategy.utility([outcomes[i] for i in d], None, ctx)
                for d in itertools.product(range(3), repeat=k)
            )
            assert got[ci, k - 1] == pytest.approx(want, abs=1e-9)


def test_context_weights_must_name_objectives():
    assert BestOfN(("a",)).validate_context(Context("c", {"z": 1.0})) is not None
    assert BestOfN(("a",)).validate_context(Context("c", {"a": 1.0})) is None


@pytest.mark.parametrize("strategy", [MajorityVote(), BestOfN(("helpful", "harmless"))])
def test_encoded_estimates_with_a_memo_equal_the_plain_ones(strategy):
    rng = np.random.default_rng(4)
    ctx = tuple(context_grid({o: [0.0, 1.0] for o in strategy.objectives}, [0.0, 0.5]))
    cache: dict[bytes, np.ndarray] = {}
    for n in (1, 2, 5, 9):
        samples = [
            [
                Sample(
                    str(rng.choice(["A", "B", "C", "D"])) if rng.random() < 0.9 else None,
                    {"helpful": float(rng.random()), "harmless": float(rng.random())},
                    float(rng.random()),
                )
                for _ in range(n)
            ]
            for _ in range(12)
        ]
        codes = np.stack([strategy.encode(s, "A", ctx) for s in samples])
        costs = np.array([[x.cost for x in s] for s in samples])
        plain = strategy.estimate_encoded(codes, costs, ctx, 6)
        for _ in range(2):  # the second pass reads the memo
            memo = strategy.estimate_encoded(codes, costs, ctx, 6, "ustat", cache)
            np.testing.assert_allclose(memo, plain, rtol=1e-12, atol=1e-15)
            one = strategy.estimate_encoded(codes[:1], costs[:1], ctx, 6, "ustat", cache)
            np.testing.assert_allclose(one, plain[:1], rtol=1e-12, atol=1e-15)
        assert np.isnan(plain[:, :, n:]).all() and not np.isnan(plain[:, :, : min(n, 6)]).any()
        pulls = [PullResult(PullRequest("p", "q", n), tuple(s), "A") for s in samples]
        np.testing.assert_array_equal(strategy.estimate(pulls, ctx, 6), plain)
