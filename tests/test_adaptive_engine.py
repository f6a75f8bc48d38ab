"""Adaptive arms in the engine (issue #15): layout, estimates from pulls, algorithms, exact
tables, evaluation, results, benchmark."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from iapo import algorithms
from iapo.adaptive import (
    ArmLayout,
    adaptive_exact_cells,
    adaptive_ids,
    adaptive_ustat,
    adaptive_ustat_many,
    adaptive_utility,
    parse_scheme,
)
from iapo.algorithms import PSST, PSSTAny, Uniform
from iapo.bench import build_environment, run_benchmark
from iapo.bench._sim import encode_pool
from iapo.evaluation import Evaluation, exact_q_table
from iapo.outcome import ArmChoice, ArmEstimate
from iapo.problem import Problem
from iapo.strategies import BestOfN, MajorityVote
from iapo.testing import AlgorithmSuite
from iapo.testing.algorithms import fake_puller, suite_problem
from iapo.types import Arm, Context, PullRequest, PullResult, Sample

IDS = ("decided/b1", "beta:0.9/b2", "window:2/b1")
CTX = (Context("c0", {"accuracy": 1.0}, 0.0), Context("c1", {"accuracy": 0.8}, 0.3))


# -- layout -------------------------------------------------------------------------------------
def test_layout_without_adaptive_is_the_fixed_axis() -> None:
    lay = ArmLayout(5)
    assert lay.width == 5 and lay.arms_per_prompt == 5
    assert lay.sizes.tolist() == [1, 2, 3, 4, 5] and lay.tie_rank.tolist() == [0, 1, 2, 3, 4]
    assert [lay.arm("p", c) for c in range(5)] == [Arm("p", n) for n in range(1, 6)]


def test_layout_columns_round_trip_and_n1_adaptive_is_no_arm() -> None:
    lay = ArmLayout(4, IDS)
    assert lay.width == 16 and lay.arms_per_prompt == 4 + 3 * 3
    for col in range(lay.width):
        arm = lay.arm("p", col)
        if lay.valid[col]:
            assert lay.column(arm) == col and arm.n == lay.sizes[col]
        else:
            assert arm.adaptive and arm.n == 1
            with pytest.raises(ValueError):
                lay.column(arm)
    with pytest.raises(ValueError):
        lay.column(Arm("p", 2, "beta:0.5/b1"))  # not configured
    # ties: smaller N first, the adaptive arms (in order) before the fixed one
    order = sorted(range(lay.width), key=lambda c: lay.tie_rank[c])
    assert [str(lay.arm("p", c)) for c in order[4:8]] == [
        "p@2~decided/b1",
        "p@2~beta:0.9/b2",
        "p@2~window:2/b1",
        "p@2",
    ]


def test_adaptive_ids_validate() -> None:
    assert adaptive_ids(["decided", "beta:0.95", "window:4"], 2) == (
        "decided/b2",
        "beta:0.95/b2",
        "window:4/b2",
    )
    for bad in (["nope"], ["beta:2"], ["decided", "decided"]):
        with pytest.raises(ValueError):
            adaptive_ids(bad, 1)
    with pytest.raises(ValueError):
        Problem(("p",), ("q",), 3, CTX, BestOfN(("accuracy",)), adaptive=("decided/b1",))


# -- estimates from pulls -----------------------------------------------------------------------
def _pulls(rng: np.random.Generator, m: int, n: int) -> list[PullResult]:
    out = []
    for i in range(m):
        ans = rng.choice(["A", "B", "C", None], size=n, p=[0.45, 0.3, 0.15, 0.1])
        cost = rng.choice([0.5, 1.0, 2.0], size=n)
        samples = tuple(Sample(a, {}, float(c)) for a, c in zip(ans, cost, strict=True))
        out.append(PullResult(PullRequest("p", f"q{i}", n), samples, "A"))
    return out


@pytest.mark.parametrize("n", [1, 3, 6])
def test_estimate_columns_are_the_core_estimator_per_pull(n: int) -> None:
    """Every adaptive column is adaptive_ustat + adaptive_utility of that pull (the estimator
    tested against enumeration), NaN where N_max' > n or N_max' = 1; fixed columns unchanged."""
    rng = np.random.default_rng(n)
    pulls = _pulls(rng, 12, n)
    mv = MajorityVote()
    k_max = 5
    got = mv.estimate(pulls, CTX, k_max, adaptive=IDS)
    assert got.shape == (12, 2, 5 * 4)
    np.testing.assert_array_equal(got[:, :, :k_max], mv.estimate(pulls, CTX, k_max))
    lay = ArmLayout(k_max, IDS)
    for i, pr in enumerate(pulls):
        codes = mv.encode(pr.samples, pr.gold, CTX)[:, 0][None]
        costs = np.array([[s.cost for s in pr.samples]])
        for col in range(k_max, lay.width):
            arm = lay.arm("p", col)
            if arm.n == 1 or arm.n > n:
                assert np.isnan(got[i, :, col]).all()
                continue
            sc = parse_scheme(f"{arm.adaptive}/n{arm.n}")
            est = adaptive_ustat(codes, np.zeros(1, np.int64), sc, costs)
            want = adaptive_utility(est.credit, est.cost, CTX)[0]
            np.testing.assert_allclose(got[i, :, col], want, rtol=1e-12, atol=1e-12)


def test_decided_ties_the_fixed_arm_exactly_when_cost_does_not_count() -> None:
    rng = np.random.default_rng(7)
    pulls = _pulls(rng, 30, 6)
    got = MajorityVote().estimate(pulls, CTX[:1], 6, adaptive=("decided/b1",))
    np.testing.assert_array_equal(got[:, 0, 7:12], got[:, 0, 1:6])  # N = 2..6, bit for bit


def test_memo_changes_nothing() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(-1, 3, size=(40, 5))
    costs = rng.random((40, 5))
    schemes = [parse_scheme(s) for s in ("decided/b1/n4", "window:2/b2/n5", "beta:0.8/b1/n3")]
    memo: dict = {}
    first = adaptive_ustat_many(labels, np.zeros(40, np.int64), schemes, costs, memo=memo)
    again = adaptive_ustat_many(labels, np.zeros(40, np.int64), schemes, costs, memo=memo)
    for j, sc in enumerate(schemes):
        one = adaptive_ustat(labels, np.zeros(40, np.int64), sc, costs)
        for a, b in ((first, one), (again, one)):
            np.testing.assert_allclose(a.credit[:, j], b.credit, atol=1e-12)
            np.testing.assert_allclose(a.samples[:, j], b.samples, atol=1e-12)
            np.testing.assert_allclose(a.cost[:, j], b.cost, atol=1e-12)
    assert len(memo) > 0


# -- algorithms -----------------------------------------------------------------------------------
ADAPTIVE_CAPABLE = [
    name
    for name, e in algorithms.registry().items()
    if e.estimator in (None, "ustat") and e.cls.name != "psst_paper"
]


@pytest.fixture(params=ADAPTIVE_CAPABLE)
def adaptive_algorithm(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


class TestRegisteredAlgorithmsWithAdaptiveArms(AlgorithmSuite):
    """The conformance suite on a problem with adaptive arms."""

    @pytest.fixture(autouse=True)
    def _name(self, adaptive_algorithm: str) -> None:
        self.name = adaptive_algorithm

    def problem(self) -> Problem:
        return suite_problem(adaptive=IDS)

    def make(self, problem: Problem, budget: int, seed: int) -> algorithms.Algorithm:
        return algorithms.create(self.name, problem, budget, seed)


def test_psst_pulls_at_the_largest_size_any_live_arm_needs() -> None:
    """With adaptive arms, a prompt is pulled at the largest N_max' of its live arms, fixed or
    adaptive; eliminated arms stop counting."""
    problem = suite_problem(adaptive=("decided/b1",))
    algo = PSST(problem, 20 * PSST.min_budget(problem), 0)
    pull = fake_puller(problem, 1)
    lay = problem.layout
    while batch := algo.ask():
        sizes = algo.sizes_alive()
        alive = algo.active.any(axis=0)
        for r in batch:
            pi = problem.prompts.index(r.prompt)
            assert r.n == sizes[pi] == lay.sizes[alive[pi]].max()
        before = algo.stats.count.copy()
        active = algo.active.copy()
        algo.tell(pull(batch))
        grew = algo.stats.count > before
        assert not (grew & ~active).any()  # dead arms learn nothing
    assert set(algo.policy()) == {c.name for c in problem.contexts}
    assert algo.spent <= algo.budget


def test_adaptive_arms_win_where_they_should() -> None:
    """Estimated from the same pulls, decided arms tie their fixed twins at cost weight 0 (same
    votes, bit for bit) and beat them under a cost weight (fewer samples; the fake LLM's cost
    per sample is the prompt's); the ranking puts the adaptive arm first."""
    problem = suite_problem(adaptive=("decided/b1",))
    algo = Uniform(problem, 4000, 3)
    algo.run_offline(fake_puller(problem, 3))
    mean, lay = algo.stats.mean, problem.layout
    for n in (2, 3, 4):
        col = lay.column(Arm("p", n, "decided/b1"))
        np.testing.assert_array_equal(mean[0, :, col], mean[0, :, n - 1])
        assert (mean[1, :, col] >= mean[1, :, n - 1]).all()
    assert (mean[1, :, lay.column(Arm("p", 4, "decided/b1"))] > mean[1, :, 3]).all()
    top = algo.ranking(0)[0]
    assert top.adaptive or top.n == 1  # at a tie the adaptive arm ranks first


def test_runs_without_adaptive_are_unchanged() -> None:
    """The fixed-arm part of an adaptive problem's layout is today's: a run on the plain problem
    is bit-identical to the same run before adaptive arms existed (stored benchmark tables are
    re-checked by benchmarks/check_reproducible.py); here: a problem with ``adaptive=()`` and
    the same problem built without the field give the same batches and statistics."""
    plain = suite_problem()
    assert plain.layout.width == plain.n_max
    runs = []
    for problem in (plain, replace(plain, adaptive=())):
        algo = PSSTAny(problem, 3000, 11)
        algo.run_offline(fake_puller(problem, 2))
        runs.append((algo.policy(), algo.stats.total.copy(), algo.spent))
    assert runs[0][0] == runs[1][0] and runs[0][2] == runs[1][2]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


# -- exact tables, evaluation, results -----------------------------------------------------------
def test_exact_tables_match_adaptive_exact_per_cell() -> None:
    env = build_environment("synth-bernoulli", n_max=5)
    pool, strategy, contexts = env.pool, env.strategy, env.contexts
    prompts, queries = pool.prompts[:3], pool.queries[:7]
    ev = Evaluation.from_pool(pool, strategy, contexts, 5, queries, prompts, "x", IDS)
    lay = ArmLayout(5, IDS)
    assert ev.q.shape == (len(contexts), 3, lay.width)
    np.testing.assert_array_equal(
        ev.q[:, :, :5], exact_q_table(pool, strategy, contexts, 5, queries, prompts)
    )
    for pi, p in enumerate(prompts):
        cells = [pool.cell(p, q) for q in queries]
        for col, sc in lay.schemes():
            ex = adaptive_exact_cells(cells, sc, strategy.tie_credit)
            for ci, c in enumerate(contexts):
                want = np.mean(ex.credit - c.cost_weight * ex.cost)
                assert ev.q[ci, pi, col] == pytest.approx(want, abs=1e-12)
            assert ev.samples is not None
            assert ev.samples[pi, col] == pytest.approx(np.mean(ex.samples), abs=1e-12)
            if sc.rule.id == "decided":  # the same vote as the fixed arm, never more samples
                for ci, c in enumerate(contexts):
                    fixed = ev.q[ci, pi, sc.n_max - 1]
                    assert ev.q[ci, pi, col] >= fixed - 1e-12
                    if c.cost_weight == 0:
                        assert ev.q[ci, pi, col] == pytest.approx(fixed, abs=1e-12)
    d = ev.to_dict()
    assert d["adaptive"] == list(IDS) and len(d["q"][contexts[0].name][prompts[0]]) == 5
    assert len(d["q_adaptive"][contexts[0].name][prompts[0]]["decided/b1"]) == 4
    for ctx, arm in ev.optimal().items():
        best = np.nanmax(ev.q[[c.name for c in contexts].index(ctx)])
        assert ev.value(ctx, arm) == pytest.approx(best, abs=1e-12)


def test_simulator_estimates_equal_the_strategy_on_results() -> None:
    env = build_environment("synth-bernoulli", n_max=6)
    sim = encode_pool(env.pool, env.strategy, env.contexts, 6, cache=False, adaptive=IDS)
    assert sim.exact.shape[3] == ArmLayout(6, IDS).width
    rng = np.random.default_rng(0)
    batch = [PullRequest(env.pool.prompts[i % 3], env.pool.queries[i], 4 + i % 3) for i in range(9)]
    got = sim.simulate(batch, "ustat", rng, adaptive=IDS)
    again = sim.simulate(batch, "ustat", np.random.default_rng(0), adaptive=IDS)
    np.testing.assert_array_equal(got, again)
    assert got.shape == (9, len(env.contexts), ArmLayout(6, IDS).width)
    # fixed columns: those of a simulator without adaptive arms, from the same draws
    plain = encode_pool(env.pool, env.strategy, env.contexts, 6, cache=False)
    fixed = plain.simulate(batch, "ustat", np.random.default_rng(0))
    np.testing.assert_array_equal(got[:, :, :6], fixed)


def test_arm_dicts_name_adaptive_arms_only() -> None:
    fixed = ArmChoice(Arm("p", 3), 0.5, 0.4, 0.6, 10, expected_samples=3.0)
    adaptive = ArmChoice(Arm("p", 3, "decided/b1"), 0.5, 0.4, 0.6, 10, expected_samples=2.25)
    assert "adaptive" not in fixed.to_dict() and "expected_samples" not in fixed.to_dict()
    assert adaptive.to_dict()["adaptive"] == "decided/b1"
    assert adaptive.to_dict()["expected_samples"] == 2.25
    assert "expected_samples" not in replace(adaptive, expected_samples=None).to_dict()
    assert "adaptive" not in ArmEstimate(Arm("p", 2), 0.1, 0.01, 3).to_dict()
    assert ArmEstimate(Arm("p", 2, "window:2/b1"), 0.1, 0.01, 3).to_dict()["adaptive"] == (
        "window:2/b1"
    )


# -- benchmark ---------------------------------------------------------------------------------
def test_bench_adaptive_twins_pair_with_unchanged_fixed_runs() -> None:
    kw = {"algorithms": ["psst_any", "ucb", "triple_n1"], "budgets": [2000], "runs": 2}
    plain = run_benchmark("synth-bernoulli", workers=1, n_max=8, **kw)  # type: ignore[arg-type]
    both = run_benchmark(
        "synth-bernoulli", workers=1, n_max=8, adaptive=["decided", "beta:0.9"], **kw
    )  # type: ignore[arg-type]
    labels = [a["label"] for a in both.data["algorithms"]]
    assert labels == ["psst_any", "ucb", "triple_n1", "psst_any+adaptive", "ucb+adaptive"]
    for r0, r1 in zip(plain.data["runs"], both.data["runs"], strict=True):
        for label in ("psst_any", "ucb", "triple_n1"):
            a, b = r0["results"][label]["2000"], r1["results"][label]["2000"]
            assert a["acr"] == b["acr"]  # ("found" is against the extended arm set's optimum)
            assert "samples" not in a and all(float(x).is_integer() for x in b["samples"])
        tw = r1["results"]["psst_any+adaptive"]["2000"]
        assert len(tw["samples"]) == len(both.data["protocol"]["cost_weights"])
    assert both.data["protocol"]["adaptive"] == ["decided/b1", "beta:0.9/b1"]
    for r in both.data["runs"]:
        assert np.isfinite(r["oracle_test"]) and np.isfinite(r["oracle_train"])
    assert "adaptive" not in plain.data["protocol"]


def test_bench_adaptive_refuses_best_of_n_and_bad_rules() -> None:
    from iapo.errors import ConfigError

    with pytest.raises(ConfigError, match="--adaptive"):
        run_benchmark("synth-bernoulli", runs=2, budgets=[2000], adaptive=["sometimes"])


def test_grid_of_every_rule_and_batch_runs_psst() -> None:
    for rules, b in itertools.product((["decided"], ["dirichlet:0.8", "window:3"]), (1, 3)):
        problem = suite_problem(adaptive=adaptive_ids(rules, b))
        algo = PSSTAny(problem, 2500, 0)
        policy = algo.run_offline(fake_puller(problem, 0))
        for arm in policy.values():
            problem.layout.column(arm)


def test_cli_bench_adaptive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from iapo.cli import main

    args = ["bench", "--env", "synth-bernoulli", "--n-max", "6", "--runs", "2", "--quiet"]
    args += ["--algorithms", "psst_any", "--budgets", "2000", "--no-plot", "--workers", "1"]
    args += ["--out", str(tmp_path)]
    assert main([*args, "--adaptive", "decided,window:2", "--adaptive-batch", "2"]) == 0
    assert "PSST (any budget) + adaptive arms" in capsys.readouterr().out
    (saved,) = tmp_path.glob("*.json")
    assert json.loads(saved.read_text())["protocol"]["adaptive"] == ["decided/b2", "window:2/b2"]
    assert main([*args, "--adaptive", "sometimes"]) == 2
    assert "--adaptive" in capsys.readouterr().err
