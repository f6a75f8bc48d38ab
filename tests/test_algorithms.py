"""Algorithms against their schedules and budgets (PSST eq. 6, halving, stockpiling)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from conftest import bernoulli_pool, replay_puller

from iapo import algorithms
from iapo.algorithms import PSST, PSSTTopK, halve
from iapo.contexts import context_grid
from iapo.errors import BudgetError
from iapo.problem import Problem
from iapo.strategies import MajorityVote
from iapo.types import Arm


def make_problem(pool, n_max=4, cost_weights=(0.0,), method="ustat"):
    contexts = tuple(context_grid({"accuracy": [1.0]}, list(cost_weights)))
    return Problem(pool.prompts, pool.queries, n_max, contexts, MajorityVote(), method)


def clear_pool(n_prompts=4, n_queries=30, best=2, seed=0):
    rng = np.random.default_rng(seed)
    success = rng.uniform(0.3, 0.45, size=(n_prompts, n_queries))
    success[best] = 0.85
    return bernoulli_pool(success)


def test_psst_schedule_follows_eq6_and_never_exceeds_budget():
    pool = clear_pool(n_prompts=5)
    problem = make_problem(pool, n_max=4, cost_weights=(0.0, 0.5))
    budget = 2000
    algo = PSST(problem, budget, seed=1)
    rounds = math.ceil(math.log2(5 * 4))
    assert algo.rounds == rounds == 5
    pull = replay_puller(pool)
    seen_rounds = 0
    while batch := algo.ask():
        sizes = PSST.live_sizes(algo.active)
        m = int((budget / rounds) // sizes.sum())
        live = [p for p, s in zip(problem.prompts, sizes, strict=True) if s > 0]
        # every live prompt pulled m times at its largest live N, on the same queries
        for p, s in zip(problem.prompts, sizes, strict=True):
            mine = [r for r in batch if r.prompt == p]
            assert len(mine) == (m if s > 0 else 0)
            assert all(r.n == s for r in mine)
        qsets = {tuple(r.query for r in batch if r.prompt == p) for p in live}
        assert len(qsets) == 1
        alive_before = algo.active.sum(axis=(1, 2))
        algo.tell(pull(batch))
        assert (algo.active.sum(axis=(1, 2)) == np.ceil(alive_before / 2)).all()
        seen_rounds += 1
    assert seen_rounds == rounds
    assert algo.spent <= budget
    assert (algo.active.sum(axis=(1, 2)) == 1).all()


def test_psst_huge_budget_finds_clear_optimum_in_every_context():
    pool = clear_pool(n_prompts=4, best=2)
    # cost-free: the best prompt at the largest odd N (with two answer classes an even N ties
    # with N - 1 exactly, and ties go to the smaller N)
    problem = make_problem(pool, n_max=5, cost_weights=(0.0,))
    for seed in range(3):
        algo = PSST(problem, 40_000, seed=seed)
        policy = algo.run_offline(replay_puller(pool, seed))
        assert policy[problem.contexts[0].name] == Arm("p2", 5)


def test_psst_costly_context_prefers_small_n():
    pool = bernoulli_pool(np.full((3, 20), 0.9), costs=[0.3, 0.1, 0.6])
    problem = make_problem(pool, n_max=4, cost_weights=(0.0, 1.0))
    policy = PSST(problem, 30_000, seed=0).run_offline(replay_puller(pool))
    assert policy[problem.contexts[1].name] == Arm("p1", 1)


def test_same_seed_same_policy_and_different_seeds_differ():
    pool = clear_pool(n_prompts=6, best=1)
    problem = make_problem(pool, n_max=3, cost_weights=(0.0, 0.3))

    def run(seed: int) -> tuple[dict[str, Arm], list[str]]:
        algo = PSST(problem, 600, seed=seed)
        pull = replay_puller(pool, seed)
        queries: list[str] = []
        while batch := algo.ask():
            queries += [r.query for r in batch]
            algo.tell(pull(batch))
        return algo.policy(), queries

    assert run(7) == run(7)
    # the seed drives which training queries are pulled: other seeds pull others
    assert len({tuple(run(seed)[1]) for seed in (7, 8, 9)}) > 1


def test_budget_too_small_is_reported_with_smallest_budget():
    pool = clear_pool(n_prompts=3)
    problem = make_problem(pool, n_max=4)
    need = PSST.min_budget(problem)
    assert need == math.ceil(math.log2(12)) * 3 * 4
    # refused before anything is asked: at creation through the registry, else on the first ask
    with pytest.raises(BudgetError, match=f"smallest budget that works is {need}"):
        algorithms.create("psst", problem, need - 1)
    lazy = PSST(problem, need - 1)
    with pytest.raises(BudgetError, match=f"smallest budget that works is {need}"):
        lazy.ask()
    assert lazy.spent == 0
    algo = PSST(problem, need)
    algo.run_offline(replay_puller(pool))
    assert algo.spent == need


def test_halve_keeps_ceil_half_best():
    active = np.ones((1, 3, 1), dtype=bool)
    mean = np.array([[[0.2], [0.9], [0.5]]])
    kept = halve(active, mean)
    assert kept[0, :, 0].tolist() == [False, True, True]


def test_stockpiling_keeps_earlier_rounds():
    pool = clear_pool(n_prompts=3, n_queries=10, best=1)
    problem = make_problem(pool, n_max=3)
    algo = PSST(problem, 900, seed=0)
    pull = replay_puller(pool)
    pulls_of: dict[str, int] = {}
    while batch := algo.ask():
        for r in batch:
            pulls_of[r.prompt] = pulls_of.get(r.prompt, 0) + 1
        algo.tell(pull(batch))
    # the surviving arm was alive every round, so every pull of its prompt informed it
    arm = algo.policy()[problem.contexts[0].name]
    pi = problem.prompts.index(arm.prompt)
    assert algo.stats.count[0, pi, arm.n - 1] == pulls_of[arm.prompt]
    assert len(algo.trace) == algo.rounds


def test_topk_screens_at_n1_then_runs_psst_on_topk():
    pool = clear_pool(n_prompts=6, best=4)
    problem = make_problem(pool, n_max=4, cost_weights=(0.0, 0.2))
    algo = PSSTTopK(problem, 5000, seed=0, k=2, rho=0.2)
    pull = replay_puller(pool)
    first = algo.ask()
    assert all(r.n == 1 for r in first)
    assert len(first) == (1000 // 6) * 6
    algo.tell(pull(first))
    assert algo.inner is not None
    assert (algo.inner.active.any(axis=2).sum(axis=1) == 2).all()
    while batch := algo.ask():
        algo.tell(pull(batch))
    assert algo.spent <= 5000
    assert all(a.prompt == "p4" for a in algo.policy().values())


def test_triple_returns_n1_and_random_n():
    pool = clear_pool(n_prompts=4, best=3)
    problem = make_problem(pool, n_max=5)
    pol = algorithms.create("triple_n1", problem, 2000, 0).run_offline(replay_puller(pool))
    assert all(a == Arm("p3", 1) for a in pol.values())
    pol = algorithms.create("triple_nrandom", problem, 2000, 0).run_offline(replay_puller(pool))
    assert all(a.prompt == "p3" and 1 <= a.n <= 5 for a in pol.values())


def test_arm_stats_add_equals_a_plain_loop():
    rng = np.random.default_rng(3)
    stats = algorithms.ArmStats(2, 4, 5)
    naive_total = np.zeros((2, 4, 5))
    naive_count = np.zeros((2, 4, 5), dtype=np.int64)
    for _ in range(3):
        index = rng.integers(0, 4, size=17)
        est = rng.normal(size=(17, 2, 3))
        est[rng.random(est.shape) < 0.3] = np.nan
        stats.add(index, est)
        for row, p in enumerate(index):
            for c in range(2):
                for k in range(3):
                    if not np.isnan(est[row, c, k]):
                        naive_total[c, p, k] += est[row, c, k]
                        naive_count[c, p, k] += 1
    assert np.array_equal(stats.count, naive_count)
    np.testing.assert_allclose(stats.total, naive_total, atol=1e-12)


def test_triple_random_policy_is_the_same_on_every_call():
    pool = clear_pool(n_prompts=3, best=1)
    problem = make_problem(pool, n_max=8, cost_weights=(0.0, 0.1, 0.2))
    algo = algorithms.create("triple_nrandom", problem, 1000, 0)
    algo.run_offline(replay_puller(pool))
    assert algo.policy() == algo.policy()


# ------------------------------------------------------------------------------------------
# the registry
# ------------------------------------------------------------------------------------------


@pytest.fixture
def private_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test vanish after it."""
    from iapo.algorithms import _registry

    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))


def test_every_config_and_bench_name_is_registered():
    names = set(algorithms.registry())
    configs = {"psst", "psst_topk", "uniform", "sequential_halving", "triple"}
    configs |= {"triple_n1", "triple_nrandom", "ucb", "epsilon_greedy"}
    from iapo.bench import DEFAULT_ALGORITHMS

    assert configs | set(DEFAULT_ALGORITHMS) <= names
    with pytest.raises(ValueError, match="unknown algorithm 'nope': use one of epsilon_greedy, "):
        algorithms.create("nope", make_problem(clear_pool()), 100)


def test_variants_start_from_their_base_and_entries_set_the_estimator():
    k4 = algorithms.get("psst_k4")
    assert k4.base is algorithms.get("psst_topk") and k4.all_params == {"k": 4}
    assert k4.to_dict()["algorithm"] == "psst_topk" and k4.to_dict()["params"] == {"k": 4}
    problem = make_problem(clear_pool())
    algo = algorithms.create("psst_blocks", problem, 5000, 0)
    assert algo.problem.method == "blocks" and problem.method == "ustat"
    assert isinstance(algo, PSST)
    topk = algorithms.create("psst_k4", problem, 5000, 0)
    assert isinstance(topk, PSSTTopK) and topk.k == 4
    assert pickle.loads(pickle.dumps(k4)) == k4  # benchmark workers may receive entries


def test_register_algorithm_adds_a_name_configs_and_bench_accept(private_registry):
    from iapo.algorithms import Uniform

    class Greedy(Uniform):
        """Uniform under another name (attributes set after super().__init__ are fine)."""

        name = "greedy"

        def __init__(self, problem, budget, seed=0, *, bonus=0.0):
            super().__init__(problem, budget, seed)
            self.bonus = bonus

        def params(self):
            return {"bonus": self.bonus}

    entry = algorithms.register_algorithm("greedy", Greedy, {"bonus": 1.0}, title="Greedy")
    assert algorithms.get("greedy") is entry and "greedy" in algorithms.registry()
    pool = clear_pool()
    algo = algorithms.create("greedy", make_problem(pool), 400, 0)
    assert algo.bonus == 1.0
    assert set(algo.run_offline(replay_puller(pool))) == {"accuracy=1,cost=0"}
    with pytest.raises(ValueError, match="already registered"):
        algorithms.register_algorithm("greedy", Greedy)
    with pytest.raises(ValueError, match="variant_of"):
        algorithms.register_algorithm("greedy2", Greedy, variant_of="nope")


def test_with_policy_changes_only_the_policy():
    pool = clear_pool(n_prompts=3, best=1)
    problem = make_problem(pool, n_max=6, cost_weights=(0.0, 0.1, 0.2))
    one = algorithms.create("triple_n1", problem, 1000, 0)
    one.run_offline(replay_puller(pool))
    fresh = algorithms.create("triple_nrandom", problem, 1000, 0)
    fresh.run_offline(replay_puller(pool))
    twin = one.with_policy(n="random")
    assert twin.policy() == fresh.policy() and one.policy() != twin.policy()
    assert all(a.n == 1 for a in one.policy().values())
    with pytest.raises(ValueError, match="changes more than the policy"):
        one.with_policy(paired=False)
