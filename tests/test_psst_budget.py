"""PSST at any budget (``psst_any``): its schedule, its budget, and identity with strict PSST."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import iapo
from iapo import algorithms
from iapo.algorithms import PSST, Algorithm, PSSTAny, halve
from iapo.algorithms._budget import pull_cap, trim
from iapo.config import AlgorithmConfig, load_config
from iapo.contexts import context_grid
from iapo.errors import BudgetError
from iapo.problem import Problem
from iapo.testing import AlgorithmSuite
from iapo.testing.algorithms import fake_puller, suite_problem
from iapo.types import PullRequest

MCQA = Path(__file__).resolve().parents[1] / "examples" / "mcqa.yaml"


def shaped(
    n_prompts: int, n_max: int, weights: tuple[float, ...] = (0.0, 0.3), n_queries: int = 10
) -> Problem:
    base = suite_problem()
    contexts = tuple(context_grid({"accuracy": [1.0]}, list(weights)))
    prompts = tuple(f"p{i}" for i in range(n_prompts))
    queries = tuple(f"q{j}" for j in range(n_queries))
    return replace(base, prompts=prompts, queries=queries, n_max=n_max, contexts=contexts)


def drive(algo: Algorithm, seed: int) -> tuple[list[list[PullRequest]], dict[str, object]]:
    pull = fake_puller(algo.problem, seed)
    batches = []
    while batch := algo.ask():
        assert algo.spent + sum(r.n for r in batch) <= algo.budget
        batches.append(list(batch))
        algo.tell(pull(batch))
    return batches, dict(algo.policy())


class TestPSSTAny(AlgorithmSuite):
    def make(self, problem: Problem, budget: int, seed: int) -> Algorithm:
        return algorithms.create("psst_any", problem, budget, seed)


class TestPSSTAnyLarger(TestPSSTAny):
    """The suite on a problem where the floor (|P|) is far below strict PSST's minimum."""

    def problem(self) -> Problem:
        return shaped(9, 6, (0.0, 0.2, 1.0))


def test_floor_is_one_completion_per_prompt_and_psst_refuses_it():
    problem = shaped(48, 32)
    assert PSSTAny.min_budget(problem) == 48
    assert PSST.min_budget(problem) == 11 * 48 * 32  # 16,896: what the issue starts from
    with pytest.raises(BudgetError):
        algorithms.create("psst", problem, 5000, 0)
    algo = algorithms.create("psst_any", problem, 48, 0)
    batches, policy = drive(algo, 0)
    assert len(batches) == 1 and all(r.n == 1 for r in batches[0])
    assert sorted(r.prompt for r in batches[0]) == sorted(problem.prompts)
    assert algo.spent == 48 and len(policy) == len(problem.contexts)


@pytest.mark.parametrize(("n_prompts", "n_max"), [(4, 4), (5, 3), (7, 8), (1, 4), (3, 1)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_identical_to_psst_where_psst_is_feasible(n_prompts: int, n_max: int, seed: int):
    problem = shaped(n_prompts, n_max)
    need = PSST.min_budget(problem)
    for budget in (need, need + 37, 3 * need + 5):
        strict = drive(PSST(problem, budget, seed), seed)
        anyb = drive(algorithms.create("psst_any", problem, budget, seed), seed)
        assert anyb == strict, (budget, seed)


@pytest.mark.parametrize(
    ("n_prompts", "n_max", "budget"), [(48, 32, 5000), (9, 6, 100), (9, 6, 20)]
)
@pytest.mark.parametrize("groups", [1, 3, 8])
def test_schedule_below_psst_minimum(n_prompts: int, n_max: int, budget: int, groups: int):
    """R' rounds; B_r = left // rounds left; each live prompt pulled m_r = B_r // S_r times at
    min(Nmax_r(p), c_r), c_r the largest cap S_r fits in B_r; the live prompts dealt into
    min(groups, live) groups of sizes differing by at most one, the prompts of a group on the
    same m_r queries (distinct within the round), the groups on their own; unspent < S_last."""
    problem = shaped(n_prompts, n_max, n_queries=100_000)
    assert budget < PSST.min_budget(problem)
    full = math.ceil(math.log2(n_prompts * n_max))
    algo = PSSTAny(problem, budget, seed=4, groups=groups)
    rounds = min(full, budget // n_prompts)
    assert algo.rounds == rounds and algo.keep == 2.0 ** (-full / rounds)
    pull = fake_puller(problem, 4)
    seen = 0
    last_s = 0
    while batch := algo.ask():
        sizes = PSST.live_sizes(algo.active)
        b_r = (budget - algo.spent) // (rounds - seen)
        cap = max(c for c in range(1, n_max + 1) if np.minimum(sizes[sizes > 0], c).sum() <= b_r)
        pulled = np.minimum(sizes, cap)
        last_s = int(pulled.sum())
        m = b_r // last_s
        for p, n in zip(problem.prompts, pulled, strict=True):
            mine = [r for r in batch if r.prompt == p]
            assert len(mine) == (m if n > 0 else 0)
            assert all(r.n == n for r in mine)
        live = [p for p, n in zip(problem.prompts, pulled, strict=True) if n > 0]
        sets = [tuple(r.query for r in batch if r.prompt == p) for p in live]
        assert all(len(set(qs)) == m for qs in sets)  # distinct queries within a pull set
        # (100,000 queries: two groups drawing the same query set would be a bug, not chance)
        sizes_of = sorted(sets.count(qs) for qs in set(sets))
        g = min(groups, len(live))
        assert len(sizes_of) == g and sizes_of[-1] - sizes_of[0] <= 1
        spend = sum(r.n for r in batch)
        assert spend == m * last_s <= b_r
        algo.tell(pull(batch))
        seen += 1
    assert seen == rounds
    assert budget - last_s < algo.spent <= budget


def test_larger_n_pulled_once_the_round_can_fund_it():
    """48 × 32 at 5,000: early rounds pull below N_max, and the pull size grows as prompts go."""
    algo = PSSTAny(shaped(48, 32), 5000, seed=0)
    drive(algo, 0)
    caps = [max(t.n.values()) for t in algo.trace]
    # (not monotone: a prompt's largest live N can fall faster than its cap rises)
    assert (
        caps[0] < 32
        and max(caps) == 32
        and caps[: caps.index(32)] == sorted(caps[: caps.index(32)])
    )
    assert all(t.alive[c] >= 1 for t in algo.trace for c in t.alive)


def test_trim_is_halve_when_every_active_arm_is_measured():
    rng = np.random.default_rng(0)
    for _ in range(20):
        active = rng.random((3, 5, 4)) < 0.6
        mean = rng.random((3, 5, 4)).round(1)  # ties exercised
        count = np.ones((3, 5, 4), dtype=np.int64)
        assert (trim(active, mean, count, 0.5) == halve(active, mean)).all()


def test_trim_keeps_unmeasured_arms_of_surviving_prompts_only():
    active = np.ones((1, 3, 4), dtype=bool)
    count = np.zeros((1, 3, 4), dtype=np.int64)
    count[0, :, :2] = 1  # pulls of n = 2: N = 3, 4 never measured
    mean = np.zeros((1, 3, 4))
    mean[0, :, :2] = [[0.9, 0.8], [0.5, 0.4], [0.1, 0.0]]
    out = trim(active, mean, count, 0.34)  # keeps ⌈6·0.34⌉ = 3 measured arms
    assert out[0, 0].all()  # prompt 0 keeps both measured arms and its unmeasured N = 3, 4
    assert out[0, 1].tolist() == [True, False, True, True]
    assert not out[0, 2].any()  # prompt 2 lost every measured arm: its unmeasured ones go too


def test_pull_cap():
    assert pull_cap(np.array([4, 4, 0, 2]), 7) == 2
    assert pull_cap(np.array([4, 4, 0, 2]), 8) == 3
    assert pull_cap(np.array([4, 4, 0, 2]), 10) == 4
    assert pull_cap(np.array([4, 4]), 1) == 0


@settings(max_examples=60, deadline=None)
@given(
    n_prompts=st.integers(1, 12),
    n_max=st.integers(1, 10),
    n_contexts=st.integers(1, 3),
    frac=st.floats(0.0, 1.5),
    seed=st.integers(0, 3),
)
def test_any_budget_from_the_floor_never_overspends_and_answers_every_context(
    n_prompts: int, n_max: int, n_contexts: int, frac: float, seed: int
):
    problem = shaped(n_prompts, n_max, tuple(0.5 * i for i in range(n_contexts)))
    floor, strict = PSSTAny.min_budget(problem), PSST.min_budget(problem)
    budget = floor + int(frac * (strict - floor))
    algo = algorithms.create("psst_any", problem, budget, seed)
    batches, policy = drive(algo, seed)
    assert algo.spent <= budget
    assert set(policy) == {c.name for c in problem.contexts}
    if budget < strict:  # only the last round leaves anything: one pull per live prompt at most
        assert budget - algo.spent < n_prompts * n_max
        last_round = {r.prompt: r.n for r in batches[-1]}
        assert budget - algo.spent < sum(last_round.values())


def test_pull_sizes_and_pulls_per_prompt_describe_the_next_batch():
    for budget in (30, 200, PSST.min_budget(shaped(9, 6)) + 3):
        algo = PSSTAny(shaped(9, 6), budget, seed=2)
        pull = fake_puller(algo.problem, 2)
        while True:
            sizes, m = algo.pull_sizes(), algo.pulls_per_prompt()
            batch = algo.ask()
            if not batch:
                break
            for p, n in zip(algo.problem.prompts, sizes, strict=True):
                mine = [r.n for r in batch if r.prompt == p]
                assert mine == ([int(n)] * m if n > 0 else [])
            algo.tell(pull(batch))


def test_a_run_below_strict_psst_minimum_replays_end_to_end(tmp_path: Path):
    """`iapo.run` on the MCQA example with `psst_any` at a budget `psst` refuses: it runs,
    spends at most the budget (nearly all of it), and `preflight` shows the same schedule."""
    config = load_config(MCQA)
    config = config.model_copy(update={"algorithm": AlgorithmConfig(name="psst_any")})
    problem = iapo.setup(config).problem
    budget = PSST.min_budget(problem) // 4
    with pytest.raises(BudgetError):
        iapo.preflight(
            config.model_copy(update={"algorithm": AlgorithmConfig(name="psst")}), budget=budget
        )
    pf = iapo.preflight(config, budget=budget)
    result = iapo.run(config, budget=budget, storage="memory:", run_dir=tmp_path, write=False)
    assert set(result.policy) == {c.name for c in problem.contexts}
    spent = sum(t["completions"] for t in result.trace)
    assert budget - len(problem.prompts) * problem.n_max < spent <= budget
    assert [t["completions"] for t in result.trace][:1] == [pf["rounds"][0]["completions"]]
