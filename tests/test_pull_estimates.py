"""``tell()`` estimates a round a block of pulls at a time (issue #13, item 4, the ``iapo run``
path): the same numbers as the dense array, every decision the same, a bounded block held."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from iapo import algorithms
from iapo.algorithms import PullEstimates, _base
from iapo.algorithms._estimates import BLOCK_ELEMENTS
from iapo.contexts import context_grid
from iapo.problem import Problem
from iapo.strategies import BestOfN, MajorityVote, Method, Strategy
from iapo.testing.algorithms import fake_puller
from iapo.types import Context, PullRequest, PullResult, Sample


def _results(rng: np.random.Generator, n_pulls: int, n_max: int, scores: bool) -> list[PullResult]:
    out = []
    for i in range(n_pulls):
        n = int(rng.integers(1, n_max + 1))
        samples = tuple(
            Sample(
                str(rng.choice(["A", "B", "C", "D"])) if rng.random() > 0.1 else None,
                {"accuracy": float(rng.random()), "helpfulness": float(rng.random())}
                if scores
                else {},
                float(rng.random()),
            )
            for _ in range(n)
        )
        out.append(PullResult(PullRequest(f"p{i % 3}", f"q{i % 7}", n), samples, "A"))
    return out


def _bits(a: NDArray[np.float64]) -> bytes:
    return np.ascontiguousarray(a).tobytes()


@pytest.mark.parametrize(
    ("strategy", "method", "adaptive", "scores"),
    [
        (MajorityVote(), "ustat", (), False),
        (MajorityVote(), "blocks", (), False),
        (MajorityVote(tie_credit="half"), "ustat", (), False),
        (MajorityVote(), "ustat", ("decided/b1", "beta:0.9/b2"), False),
        (BestOfN(("accuracy", "helpfulness")), "ustat", (), True),
        (BestOfN(("accuracy",)), "blocks", (), True),
    ],
)
def test_blocks_equal_the_dense_array_bit_for_bit(
    strategy: Strategy, method: Method, adaptive: tuple[str, ...], scores: bool
) -> None:
    rng = np.random.default_rng(7)
    n_max = 10  # ≥ 8 samples: numpy sums 8 or more in another order than fewer
    contexts = tuple(context_grid({"accuracy": [1.0, 0.5]}, [0.0, 0.01, 0.3]))
    results = _results(rng, 60, n_max, scores)
    dense = strategy.estimate(results, contexts, n_max, method, adaptive=adaptive)

    def estimate(part: Sequence[PullResult], k: int) -> NDArray[np.float64]:
        k_max = n_max if adaptive else k
        return strategy.estimate(part, contexts, k_max, method, adaptive=adaptive)

    lazy = PullEstimates(estimate, results, len(contexts), dense.shape[2], narrow=not adaptive)
    assert lazy.shape == dense.shape
    assert _bits(lazy.dense()) == _bits(dense)
    for _ in range(30):
        index = np.sort(rng.choice(len(results), size=int(rng.integers(1, 20)), replace=False))
        width = lazy.width_of(index)
        widest = max(len(results[i].samples) for i in index)
        assert width == (dense.shape[2] if adaptive else widest)
        assert _bits(lazy.fetch(index, width)) == _bits(dense[index, :, :width])
        # what a narrowed block leaves out says nothing: NaN in the dense array
        assert np.isnan(dense[index, :, width:]).all()


class _Counting(MajorityVote):
    """The built-in estimate (so ``tell`` reads it lazily), counting the pulls per call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def encode_pulls(self, pulls: Sequence[PullResult], contexts: Sequence[Context]) -> NDArray:
        self.calls.append(len(pulls) * len(pulls[0].samples))  # pulls × n: a call's columns
        return super().encode_pulls(pulls, contexts)


class _Dense(MajorityVote):
    """Overrides ``estimate``: ``tell`` then computes the whole array at once, as before."""

    def estimate(
        self,
        pulls: Sequence[PullResult],
        contexts: Sequence[Context],
        k_max: int,
        method: Method = "ustat",
        adaptive: Sequence[str] = (),
    ) -> NDArray[np.float64]:
        return super().estimate(pulls, contexts, k_max, method, adaptive)


#: one pull per ask, or rounds small enough at this budget: nothing to bound
_SMALL_ROUNDS = {"ucb", "ucb_tuned", "epsilon_greedy", "epsilon_greedy_tuned", "softmax"}


@pytest.mark.parametrize("name", sorted(algorithms.registry()))
def test_tell_holds_a_block_and_decides_as_the_dense_array(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 contexts × N ≤ 8: a round of PSST is millions of estimates, more than one block
    (2^20). Lazily, no estimate call covers more than a block (or one prompt's 128 pulls, numpy's
    summation leaf); the statistics and the policy are those of the dense array, bit for bit.
    (``tell`` reads lazily from 8 blocks' worth; 1 here, to keep the problem small.)"""
    monkeypatch.setattr(_base, "_LAZY_BLOCKS", 1)
    contexts = tuple(context_grid({"accuracy": [1.0]}, np.linspace(0, 0.3, 200).tolist()))
    prompts = tuple(f"p{i}" for i in range(4))
    queries = tuple(f"q{j}" for j in range(50))
    runs = {}
    for kind in (_Counting, _Dense):
        strategy = kind()
        problem = Problem(prompts, queries, 8, contexts, strategy)
        # sequential halving splits its budget over the 200 contexts: it needs more
        algo = algorithms.create(
            name, problem, 144_000 if name == "sequential_halving" else 40_000, 3
        )
        pull = fake_puller(problem, seed=1)
        biggest_round = 0
        while batch := algo.ask():
            biggest_round = max(biggest_round, len(batch) * max(r.n for r in batch))
            algo.tell(pull(batch))
        runs[kind] = (algo, biggest_round, strategy)
    lazy, biggest_round, counting = runs[_Counting]
    dense = runs[_Dense][0]
    assert _bits(lazy.stats.total) == _bits(dense.stats.total)
    assert _bits(lazy.stats.total_sq) == _bits(dense.stats.total_sq)
    assert _bits(lazy.stats.count) == _bits(dense.stats.count)
    assert lazy.policy() == dense.policy()
    assert lazy.spent == dense.spent
    if name in _SMALL_ROUNDS:
        return
    assert isinstance(counting, _Counting)
    assert biggest_round * len(contexts) > BLOCK_ELEMENTS  # a round's dense array: > a block
    # each call: ≤ 2^20 estimates (pulls × n × C), or one prompt's numpy leaf of 128 pulls
    assert max(counting.calls) * len(contexts) <= max(BLOCK_ELEMENTS, 128 * 8 * len(contexts))


def test_absorb_adds_what_the_dense_array_adds() -> None:
    contexts = tuple(context_grid({"accuracy": [1.0]}, [0.0, 0.1]))
    results: dict[type, bytes] = {}
    for kind in (_Counting, _Dense):
        problem = Problem(("p0", "p1"), ("q0", "q1", "q2"), 4, contexts, kind())
        algo = algorithms.create("psst", problem, 200, 0)
        batch = algo.ask()
        algo.absorb(fake_puller(problem, seed=2)(batch[:3]))
        results[kind] = _bits(algo.stats.total) + _bits(algo.stats.count)
        assert algo.spent == sum(r.n for r in batch[:3])
    assert results[_Counting] == results[_Dense]
