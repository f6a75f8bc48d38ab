"""The one-pull-per-step baselines: softmax against hand-computed Boltzmann probabilities, its
limits (τ → 0 greedy, τ large uniform), seeded reproducibility, and the tuned registrations."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import bernoulli_pool, replay_puller

from iapo import algorithms
from iapo.algorithms import UCB, Algorithm, EpsilonGreedy, Softmax
from iapo.bench._protocol import seed_key
from iapo.contexts import context_grid
from iapo.pools import Pool
from iapo.problem import Problem
from iapo.strategies import MajorityVote
from iapo.testing import AlgorithmSuite


def one_context_problem(pool: Pool, n_max: int = 3) -> Problem:
    contexts = tuple(context_grid({"accuracy": [1.0]}, [0.0]))
    return Problem(pool.prompts, pool.queries, n_max, contexts, MajorityVote())


def spread_pool() -> Pool:
    """Three prompts with clearly different success rates (0.2, 0.5, 0.8) on 20 queries."""
    return bernoulli_pool(np.repeat([[0.2], [0.5], [0.8]], 20, axis=1))


def warmed(tau: float, steps: int = 60, seed: int = 0) -> tuple[Softmax, Pool]:
    """A softmax run after ``steps`` pulls (every arm tried), with a large budget left."""
    pool = spread_pool()
    algo = Softmax(one_context_problem(pool), 100_000, seed, tau=tau)
    pull = replay_puller(pool, seed)
    for _ in range(steps):
        algo.tell(pull(algo.ask()))
    assert (algo.stats.count[0] > 0).all()
    return algo, pool


def next_arm_counts(algo: Softmax, draws: int) -> np.ndarray:
    """How often the next pull is each (prompt, N), over ``draws`` copies with fresh streams."""
    counts = np.zeros(algo.stats.count.shape[1:], dtype=np.int64)
    index = {p: i for i, p in enumerate(algo.problem.prompts)}
    for i in range(draws):
        fork = copy.deepcopy(algo, {id(algo.problem): algo.problem})  # as iapo bench does
        fork.rng = np.random.default_rng(1000 + i)
        (req,) = fork.ask()
        counts[index[req.prompt], req.n - 1] += 1
    return counts


class TestSoftmaxNearlyGreedy(AlgorithmSuite):
    """The contract holds at extreme temperatures too (no overflow, no NaN probabilities)."""

    def make(self, problem: Problem, budget: int, seed: int) -> Algorithm:
        return Softmax(problem, budget, seed, tau=1e-9)


class TestSoftmaxNearlyUniform(AlgorithmSuite):
    def make(self, problem: Problem, budget: int, seed: int) -> Algorithm:
        return Softmax(problem, budget, seed, tau=1e6)


def test_softmax_draws_arms_with_boltzmann_probabilities() -> None:
    algo, _ = warmed(tau=0.05)
    mean = algo.stats.total[0] / algo.stats.count[0]
    weights = np.exp((mean - mean.max()) / 0.05)
    expected = weights / weights.sum()
    draws = 3000
    got = next_arm_counts(algo, draws) / draws
    sigma = np.sqrt(expected * (1 - expected) / draws)
    assert np.all(np.abs(got - expected) <= 4 * sigma + 1e-3), (got, expected)
    assert expected.max() < 0.99  # the check is not a degenerate greedy one


def test_softmax_tau_to_zero_is_greedy() -> None:
    algo, pool = warmed(tau=1e-9)
    pull = replay_puller(pool, 5)
    for _ in range(200):
        mean = algo.stats.total[0] / algo.stats.count[0]
        best = {(int(p), int(n) + 1) for p, n in zip(*np.nonzero(mean == mean.max()), strict=True)}
        batch = algo.ask()
        (req,) = batch
        assert (algo.problem.prompts.index(req.prompt), req.n) in best
        algo.tell(pull(batch))


def test_softmax_tau_large_is_uniform_over_affordable_arms() -> None:
    algo, _ = warmed(tau=1e6)
    draws = 2400
    counts = next_arm_counts(algo, draws)
    expected = draws / counts.size  # 9 arms: 266.7 each, sd ≈ 15.4
    assert np.all(np.abs(counts - expected) <= 4 * np.sqrt(expected)), counts
    # with 2 completions left only N ≤ 2 is affordable, still uniformly
    algo.budget = algo.spent + 2
    counts = next_arm_counts(algo, 1200)
    assert counts[:, 2].sum() == 0
    assert np.all(np.abs(counts[:, :2] - 200) <= 4 * np.sqrt(200)), counts


def test_softmax_tries_every_affordable_arm_first() -> None:
    pool = spread_pool()
    algo = Softmax(one_context_problem(pool), 10_000, 3, tau=1e-9)
    pull = replay_puller(pool)
    steps = 0
    while (algo.stats.count[0] == 0).any():
        (req,) = algo.ask()
        assert algo.stats.count[0, algo.problem.prompts.index(req.prompt), req.n - 1] == 0
        algo.tell(pull([req]))
        steps += 1
    assert steps <= algo.stats.count[0].size  # each step informs at least one untried arm


def test_softmax_same_seed_same_run_and_other_seeds_differ() -> None:
    def trajectory(seed: int) -> list[tuple[str, str, int]]:
        pool = spread_pool()
        algo = algorithms.create("softmax", one_context_problem(pool), 400, seed)
        pull = replay_puller(pool, 0)
        out = []
        while batch := algo.ask():
            out += [(r.prompt, r.query, r.n) for r in batch]
            algo.tell(pull(batch))
        return out

    assert trajectory(7) == trajectory(7)
    assert trajectory(7) != trajectory(8)


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan"), float("inf")])
def test_softmax_refuses_a_temperature_that_is_not_positive_and_finite(tau: float) -> None:
    problem = one_context_problem(spread_pool())
    with pytest.raises(ValueError, match=r"^params\.tau: "):
        algorithms.create("softmax", problem, 1000, 0, tau=tau)


def test_softmax_is_benchmarked_after_epsilon_greedy() -> None:
    from iapo.bench import DEFAULT_ALGORITHMS

    i = DEFAULT_ALGORITHMS.index("epsilon_greedy")
    assert DEFAULT_ALGORITHMS[i + 1] == "softmax"
    assert algorithms.get("softmax").cls is Softmax


# -- the constants: the paper's under the paper's names, the tuned ones beside them ------------

REPO = Path(__file__).resolve().parents[1]


def tuning_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "tune_baselines", REPO / "benchmarks" / "tune_baselines.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paper_constants_keep_their_names_and_tuned_ones_pair_with_them() -> None:
    problem = one_context_problem(spread_pool())
    ucb = algorithms.create("ucb", problem, 1000)
    eps = algorithms.create("epsilon_greedy", problem, 1000)
    assert isinstance(ucb, UCB) and ucb.c == 0.1
    assert isinstance(eps, EpsilonGreedy) and eps.epsilon == 0.15
    for tuned, base in (("ucb_tuned", "ucb"), ("epsilon_greedy_tuned", "epsilon_greedy")):
        entry = algorithms.get(tuned)
        assert entry.base is algorithms.get(base)
        # the same seed group: a benchmark run gives both the same random streams
        assert seed_key(entry) == seed_key(algorithms.get(base))


def test_registered_tuned_constants_are_the_recorded_tuning_choice() -> None:
    record = json.loads((REPO / "docs" / "bench" / "baseline-tuning.json").read_text())
    choice = {family: c["best"] for family, c in record["choice"].items()}
    assert algorithms.get("ucb_tuned").all_params == {"c": choice["ucb"]}
    assert algorithms.get("epsilon_greedy_tuned").all_params == {
        "epsilon": choice["epsilon_greedy"]
    }
    assert Softmax.Params is not None
    assert Softmax.Params.model_fields["tau"].default == choice["softmax"]
    problem = one_context_problem(spread_pool())
    softmax = algorithms.create("softmax", problem, 1000)
    assert isinstance(softmax, Softmax) and softmax.tau == choice["softmax"]


def test_tuning_ranks_ties_equally_and_picks_the_best_mean_rank() -> None:
    script = tuning_script()
    script.GRID = {"ucb": ("c", (0.1, 0.3, 1.0))}
    script.BUDGETS = (100, 200)
    regret = {0.1: (0.2, 0.30), 0.3: (0.2, 0.10), 1.0: (0.5, 0.25)}  # ranks 1.5/3, 1.5/1, 3/2
    cells = {
        script.label("ucb", v): {
            str(b): {"regret": r, "acr_runs": [1 - r, 1 - r + 0.01 * v]}
            for b, r in zip((100, 200), rs, strict=True)
        }
        for v, rs in regret.items()
    }
    got = script.choose({"env": {"cells": cells}})["ucb"]
    assert got["scores"]["0.1"]["mean_rank"] == 2.25
    assert got["scores"]["0.3"]["mean_rank"] == 1.25
    assert got["scores"]["1"]["mean_rank"] == 2.5
    assert got["best"] == 0.3 and got["paper"] == 0.1
    assert set(got["best_vs_paper"]) == {"env 100", "env 200"}
