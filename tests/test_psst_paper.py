"""``psst_paper``: the released research code's PSST, with honest accounting of its overspend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import iapo
from iapo import algorithms
from iapo.algorithms import PSST, ArmStats, PSSTPaper
from iapo.algorithms._paper import add_blocks  # the helper itself
from iapo.backends import MockBackend
from iapo.commands import format_preflight, format_result
from iapo.config import parse_config
from iapo.contexts import context_grid
from iapo.problem import Problem
from iapo.runner import preflight
from iapo.strategies import MajorityVote
from iapo.testing.algorithms import fake_puller
from iapo.types import Sample

REPO = Path(__file__).resolve().parents[1]
MCQA = REPO / "examples" / "mcqa.yaml"


def problem(n_prompts: int = 8, n_max: int = 8, n_queries: int = 50) -> Problem:
    contexts = tuple(context_grid({"accuracy": [1.0]}, [0.0, 0.3]))
    prompts = tuple(f"p{i}" for i in range(n_prompts))
    queries = tuple(f"q{j}" for j in range(n_queries))
    return Problem(prompts, queries, n_max, contexts, MajorityVote())


def drive(algo: PSSTPaper) -> list[list[iapo.types.PullRequest]]:
    pull = fake_puller(algo.problem, 0)
    batches = []
    while batch := algo.ask():
        batches.append(batch)
        algo.tell(pull(batch))
    return batches


def test_below_the_strict_minimum_it_overspends_and_spent_says_so() -> None:
    prob = problem()  # R = 6 rounds, |P|·N_max = 64: strict PSST needs 384
    assert PSST.min_budget(prob) == 384
    algo = algorithms.create("psst_paper", prob, 50, 0)  # accepted: min_budget is 1
    batches = drive(algo)
    asked = sum(r.n for b in batches for r in b)
    assert asked == algo.spent == sum(t.completions for t in algo.trace)
    assert algo.spent > algo.budget  # the overspend is in `spent`, not hidden
    assert algo.spent <= PSSTPaper.max_spend(prob, 50) == 384
    first = batches[0]  # max(1, ⌊(50/6)/64⌋) = 1 pull per prompt, at N_max
    assert sorted(r.prompt for r in first) == list(prob.prompts)
    assert {r.n for r in first} == {8}
    assert len(algo.trace) == algo.rounds


def test_with_a_budget_that_funds_every_round_it_stays_within_it() -> None:
    prob = problem()
    for budget in (384, 1000, 5000):
        algo = algorithms.create("psst_paper", prob, budget, 1)
        drive(algo)
        assert algo.spent <= budget


def test_each_pull_draws_its_own_random_query() -> None:
    prob = problem(n_prompts=4, n_max=2, n_queries=200)
    algo = algorithms.create("psst_paper", prob, 3000, 0)
    first = algo.ask()
    per_prompt = {p: [r.query for r in first if r.prompt == p] for p in prob.prompts}
    m = len(per_prompt["p0"])
    assert m == algo.pulls_per_prompt() > 10
    assert len({tuple(qs) for qs in per_prompt.values()}) == 4  # nothing paired across prompts
    paired = algorithms.create("psst_paired_blocks", prob, 3000, 0).ask()
    assert len({tuple(r.query for r in paired if r.prompt == p) for p in prob.prompts}) == 1


def test_blocks_are_weighted_one_observation_each() -> None:
    stats = ArmStats(1, 1, 4)
    # a pull of 4 whose blocks at N = 1 average 1.0, and a pull of 1 scoring 0.0
    est = np.full((2, 1, 4), np.nan)
    est[0, 0, :] = [1.0, 0.5, 0.25, 0.0]
    est[1, 0, 0] = 0.0
    add_blocks(stats, np.array([0, 0]), np.array([4, 1]), est)
    assert stats.count[0, 0].tolist() == [5, 2, 1, 1]  # ⌊4/k⌋ blocks, + 1 at N = 1
    assert stats.mean[0, 0, 0] == pytest.approx(4 / 5)  # per block, not (1 + 0) / 2 per pull
    assert stats.mean[0, 0, 1] == pytest.approx(0.5)


def test_statistics_count_blocks_and_use_the_blocks_estimator() -> None:
    prob = problem(n_prompts=2, n_max=4)
    algo = PSSTPaper(prob, 400, 0)  # a ustat problem: the algorithm scores with blocks
    assert algo.problem.method == "blocks"
    first = algo.ask()
    m = algo.pulls_per_prompt()
    assert len(first) == 2 * m and {r.n for r in first} == {4}
    algo.tell(fake_puller(algo.problem)(first))
    for k in range(1, 5):
        assert (algo.stats.count[:, :, k - 1] == m * (4 // k)).all()


def test_psst_blocks_is_the_old_name_of_the_paired_blocks_ablation() -> None:
    prob = problem(n_prompts=3, n_max=4)
    runs = []
    for name in ("psst_blocks", "psst_paired_blocks"):
        algo = algorithms.create(name, prob, 2000, 7)
        assert algo.problem.method == "blocks" and isinstance(algo, PSST)
        runs.append((drive(algo), algo.policy()))  # type: ignore[arg-type]
    assert runs[0] == runs[1]


def test_a_config_run_accounts_for_and_prints_the_overspend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = iapo.setup(MCQA, storage="memory:")
    algo = PSSTPaper(s.problem, 20, seed=1)
    backend = MockBackend(lambda p, q, i: Sample("A", {}, 1.0), gold={q: "A" for q in s.train})
    result = iapo.run(s, algorithm=algo, backend=backend, write=False)
    acc = result.account
    assert acc["completions"] == algo.spent > acc["budget"] == 20
    text = format_result(result)
    assert f"overspent: {algo.spent - 20:,} completions more than the budget" in text


def test_estimate_bounds_and_shows_the_overspend() -> None:
    data = yaml.safe_load(MCQA.read_text())
    cfg = parse_config({**data, "algorithm": {"name": "psst_paper"}}, str(MCQA))
    pf = preflight(cfg, budget=20)
    assert pf["completions"] > 20
    assert pf["max_completions"] >= pf["completions"]
    assert pf["max_cost"] >= pf["completions"] * pf["max_cost_per_completion"]
    text = format_preflight(pf)
    assert f"{pf['completions'] - 20:,} over the budget: psst_paper may overspend" in text
