"""Padding-free rounds: estimates read a block of pulls at a time give the dense path's bits."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from iapo import algorithms
from iapo.algorithms import _estimates
from iapo.algorithms._estimates import ArrayEstimates, _add_dense, add_sums
from iapo.bench import (
    bernoulli_contexts,
    categorical_contexts,
    encode_pool,
    synth_bernoulli,
    synth_categorical,
)
from iapo.contexts import context_grid
from iapo.problem import Problem
from iapo.strategies import BestOfN, MajorityVote, Method
from iapo.types import PullRequest


def _sums(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=np.int64)


def _same(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> None:
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes()


@pytest.mark.parametrize("block", [1, 40, 700, 5000])
@pytest.mark.parametrize("n_ctx,k", [(1, 1), (3, 5), (2, 1)])
def test_blocked_sums_are_the_dense_sums_bit_for_bit(block: int, n_ctx: int, k: int) -> None:
    rng = np.random.default_rng(block + 7 * n_ctx + k)
    # long runs of one prompt (numpy's pairwise tree splits them past 128), short ones, NaN
    counts = [1, 2, 7, 8, 9, 129, 130, 300, 1000, 3001]
    prompt_index = rng.permutation(np.repeat(np.arange(len(counts)), counts)).astype(np.int64)
    m = len(prompt_index)
    est = (rng.random((m, n_ctx, k)) - 0.3) * np.exp(rng.normal(size=(m, n_ctx, k)) * 4)
    est[rng.random(est.shape) < 0.2] = np.nan
    shape = (n_ctx, len(counts) + 2, k + 1)
    dense, blocked = _sums(shape), _sums(shape)
    for d, b in ((dense, blocked), (dense, blocked)):  # twice: on top of non-zero totals
        _add_dense(*d, prompt_index, est)
        add_sums(*b, prompt_index, ArrayEstimates(est), block=block)
    _same(dense, blocked)


def test_masked_estimates_are_np_where() -> None:
    rng = np.random.default_rng(0)
    est = rng.random((6, 2, 3))
    active = rng.random((2, 4, 3)) < 0.5
    index = np.array([0, 3, 1, 1, 2, 0])
    got = ArrayEstimates(est).masked(active, index)
    want = np.where(active[:, index, :3].transpose(1, 0, 2), est, np.nan)
    np.testing.assert_array_equal(got.dense(), want)
    np.testing.assert_array_equal(got.rows(np.array([4, 1]), 2), want[[4, 1], :, :2])


def _envs() -> list[Any]:
    mv = synth_bernoulli(8, 30, seed=3, wrong_answers=2)
    ctx = context_grid({"accuracy": [1.0]}, [round(0.002 * i, 3) for i in range(12)])
    bon = synth_categorical(6, 30, seed=1)
    return [
        (mv, MajorityVote(), tuple(ctx), 16),
        (mv, MajorityVote(), tuple(bernoulli_contexts()), 8),
        (bon, BestOfN(("helpful", "harmless")), tuple(categorical_contexts()), 8),
    ]


@pytest.mark.parametrize("env", range(3))
@pytest.mark.parametrize(
    "name",
    [
        "psst",
        "psst_blocks",
        "psst_any",
        "psst_paper",
        "psst_k4",
        "uniform",
        "triple_n1",
        "sequential_halving",
        "ucb",
        "softmax",
    ],
)
def test_runs_with_blocked_rounds_match_dense_rounds(
    env: int, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole run fed lazily and summed in tiny blocks ends with the statistics (bit for bit),
    trace and policy of the same run fed the dense arrays of ``simulate``."""
    pool, strategy, ctx, n_max = _envs()[env]
    sim = encode_pool(pool, strategy, ctx, n_max)
    problem = Problem(sim.prompts, sim.queries[:24], n_max, ctx, strategy)
    budget = max(6000, algorithms.get(name).min_budget(problem))
    if budget > 50_000:  # sequential halving with 12 contexts: a smaller problem
        problem = Problem(sim.prompts[:3], sim.queries[:24], 4, ctx[:4], strategy)
        budget = algorithms.get(name).min_budget(problem)

    def run(lazy: bool) -> algorithms.Algorithm:
        algo = algorithms.create(name, problem, budget, 11)
        rng = np.random.default_rng(5)
        while batch := algo.ask():
            if lazy:
                algo.tell_estimates(sim.simulate_lazy(batch, algo.problem.method, rng))
            else:
                algo.tell_estimates(sim.simulate(batch, algo.problem.method, rng, narrow=True))
        return algo

    dense = run(lazy=False)
    monkeypatch.setattr(_estimates, "BLOCK_ELEMENTS", 97)
    blocked = run(lazy=True)
    _same(
        (dense.stats.total, dense.stats.total_sq, dense.stats.count),
        (blocked.stats.total, blocked.stats.total_sq, blocked.stats.count),
    )
    assert dense.trace == blocked.trace
    assert dense.policy() == blocked.policy()


def test_lazy_simulation_draws_the_dense_stream() -> None:
    pool, strategy, ctx, n_max = _envs()[0]
    sim = encode_pool(pool, strategy, ctx, n_max)
    batch = [PullRequest(p, q, n) for p, q, n in [("p01", "q003", 5), ("p00", "q007", 16)] * 3]
    a = sim.simulate(batch, "ustat", np.random.default_rng(1), narrow=True)
    lazy = sim.simulate_lazy(batch, "ustat", np.random.default_rng(1))
    assert isinstance(lazy, algorithms.Estimates)
    np.testing.assert_array_equal(lazy.dense(), a)
    np.testing.assert_array_equal(lazy.rows(np.array([1, 0]), 5), a[[1, 0], :, :5])


@pytest.mark.parametrize("method", ["blocks", "ustat"])
def test_blocks_in_batch_order_equal_the_dense_rows(method: Method) -> None:
    """``Estimates.blocks`` (psst_paper, sequential halving): blocks of ≥ 128 pulls in batch
    order whose rows are the dense array's bit for bit, also where a block holds the only pull
    of its size (a Best-of-N block of one pull of 8 rounds differently unless estimated beside
    another; the batch below puts pulls of 8 at rows 100 and 200 only)."""
    pool, strategy, ctx, n_max = _envs()[2]
    sim = encode_pool(pool, strategy, ctx, n_max)
    sizes = [8 if i in (100, 200) else 1 + i % 7 for i in range(300)]
    batch = [
        PullRequest(sim.prompts[i % len(sim.prompts)], sim.queries[i % 30], n)
        for i, n in enumerate(sizes)
    ]
    dense = sim.simulate(batch, method, np.random.default_rng(4), narrow=True)
    lazy = sim.simulate_lazy(batch, method, np.random.default_rng(4))
    assert isinstance(lazy, algorithms.Estimates)
    seen = []
    for rows, block in lazy.blocks(97):
        assert len(rows) >= 128 or rows[-1] == len(batch) - 1
        assert block.tobytes() == np.ascontiguousarray(dense[rows, :, : block.shape[2]]).tobytes()
        seen.extend(rows.tolist())
    assert seen == list(range(len(batch)))


@pytest.mark.parametrize("name", ["psst", "psst_any"])
def test_blocked_rounds_with_adaptive_arms_match_dense_rounds(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adaptive arms' columns lie past N_max: a masked block must not be narrowed to its pulls'
    largest n (it crashed, the simulator's rows being full width)."""
    pool, strategy, ctx, n_max = _envs()[0]
    ids = ("decided/b1",)
    sim = encode_pool(pool, strategy, ctx, n_max, adaptive=ids)
    problem = Problem(sim.prompts, sim.queries[:24], n_max, ctx, strategy, adaptive=ids)

    def run(lazy: bool) -> algorithms.Algorithm:
        algo = algorithms.create(name, problem, 6000, 11)
        rng = np.random.default_rng(5)
        while batch := algo.ask():
            method = algo.problem.method
            if lazy:
                algo.tell_estimates(sim.simulate_lazy(batch, method, rng, adaptive=ids))
            else:
                algo.tell_estimates(sim.simulate(batch, method, rng, adaptive=ids))
        return algo

    dense = run(lazy=False)
    monkeypatch.setattr(_estimates, "BLOCK_ELEMENTS", 97)
    blocked = run(lazy=True)
    _same(
        (dense.stats.total, dense.stats.total_sq, dense.stats.count),
        (blocked.stats.total, blocked.stats.total_sq, blocked.stats.count),
    )
    assert dense.stats.count[..., n_max:].sum() > 0  # the adaptive arms were measured
    assert dense.policy() == blocked.policy()
