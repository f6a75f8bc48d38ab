"""``iapo bench``: the simulator against the strategies, and the protocol itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import bernoulli_pool

from iapo import algorithms
from iapo.bench import (
    EncodedPool,
    Environment,
    _protocol,
    _report,
    bernoulli_contexts,
    build_environment,
    categorical_contexts,
    encode_pool,
    run_benchmark,
    synth_bernoulli,
    synth_categorical,
)
from iapo.cli import main
from iapo.contexts import context_grid
from iapo.pools import Cell, Pool
from iapo.problem import Problem
from iapo.strategies import BestOfN, MajorityVote, exact_cell_utilities
from iapo.types import PullRequest, PullResult, Sample

# ------------------------------------------------------------------------------------------
# small environments
# ------------------------------------------------------------------------------------------


def mv_pool(n_prompts: int = 3, n_queries: int = 10, seed: int = 0) -> Pool:
    """Majority vote with several wrong answers, abstentions and per-cell costs."""
    rng = np.random.default_rng(seed)
    prompts = tuple(f"p{i}" for i in range(n_prompts))
    queries = tuple(f"q{j}" for j in range(n_queries))
    cells = {}
    for p in prompts:
        for q in queries:
            answers = ["A", "B", "C", None]
            w = rng.dirichlet(np.ones(4)) * 10
            cost = float(rng.uniform(0.1, 1.0))
            outs = tuple(Sample(a, {}, cost) for a in answers)
            cells[(p, q)] = Cell(p, q, "A" if rng.random() < 0.8 else "Z", outs, w)
    return Pool(("accuracy",), prompts, queries, cells, "unit", {"name": "mv"})


def mv_env(n_prompts: int = 3, n_queries: int = 10, n_max: int = 4) -> Environment:
    pool = mv_pool(n_prompts, n_queries)
    ctx = tuple(context_grid({"accuracy": [1.0]}, [0.0, 0.3]))
    return Environment("mv-test", pool, MajorityVote(), ctx, n_max, "test pool")


def bon_env(n_max: int = 4) -> Environment:
    pool = synth_categorical(n_prompts=3, n_queries=10, seed=1)
    ctx = tuple(categorical_contexts()[:4])
    return Environment("bon-test", pool, BestOfN(("helpful", "harmless")), ctx, n_max, "test")


def results_from(
    sim: EncodedPool, env: Environment, batch: list[PullRequest], outcomes: list[np.ndarray]
) -> list[PullResult]:
    """PullResults carrying exactly the drawn outcomes (as the pool's own Sample objects)."""
    out = []
    for r, idx in zip(batch, outcomes, strict=True):
        cell = env.pool.cell(r.prompt, r.query)
        reps = _representatives(cell, env)
        out.append(PullResult(r, tuple(reps[int(i)] for i in idx), cell.gold))
    return out


def _representatives(cell: Cell, env: Environment) -> list[Sample]:
    """The encoder's merged outcome order: first occurrence of each distinct outcome."""
    seen: dict[tuple[Any, ...], Sample] = {}
    for o, w in zip(cell.outcomes, cell.weights, strict=True):
        if w <= 0:
            continue
        if isinstance(env.strategy, MajorityVote):
            key: tuple[Any, ...] = (o.answer, o.cost)
        else:
            key = (tuple(o.scores[k] for k in env.strategy.objectives), o.cost)
        seen.setdefault(key, o)
    return list(seen.values())


# ------------------------------------------------------------------------------------------
# the simulator gives strategy.estimate's numbers
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [mv_env, bon_env])
@pytest.mark.parametrize("method", ["ustat", "blocks"])
def test_simulator_estimates_equal_strategy_estimate(make: Any, method: str) -> None:
    env = make()
    sim = encode_pool(env.pool, env.strategy, env.contexts, env.n_max)
    rng = np.random.default_rng(3)
    sizes = [1, 2, 3, 4, 6]  # 6 > n_max: estimates stop at n_max
    batch = [
        PullRequest(env.pool.prompts[i % 3], env.pool.queries[(5 * i) % 10], sizes[i % 5])
        for i in range(40)
    ]
    prompt, query, n = sim.pull_arrays(batch)
    drawn: list[np.ndarray] = [np.empty(0)] * len(batch)
    got = np.full((len(batch), len(env.contexts), env.n_max), np.nan)
    for size in np.unique(n):
        sel = np.flatnonzero(n == size)
        oc = sim.draw(prompt[sel], query[sel], int(size), rng)
        got[sel] = sim.estimates_for(prompt[sel], query[sel], oc, method)  # type: ignore[arg-type]
        for j, s in enumerate(sel):
            drawn[s] = oc[j]
    want = env.strategy.estimate(
        results_from(sim, env, batch, drawn),
        env.contexts,
        env.n_max,
        method,  # type: ignore[arg-type]
    )
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.isnan(got).sum() == np.isnan(want).sum() > 0


@pytest.mark.parametrize("make", [mv_env, bon_env])
def test_single_pull_path_matches_batch_path(make: Any) -> None:
    env = make()
    sim = encode_pool(env.pool, env.strategy, env.contexts, env.n_max)
    for n in (1, 3, 4):
        req = [PullRequest(env.pool.prompts[1], env.pool.queries[2], n)]
        a = sim.simulate(req, "ustat", np.random.default_rng(7))
        prompt, query, _ = sim.pull_arrays(req)
        oc = sim.draw(prompt, query, n, np.random.default_rng(7))
        b = sim.estimates_for(prompt, query, oc, "ustat")
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
        narrow = sim.simulate(req, "ustat", np.random.default_rng(7), narrow=True)
        assert narrow.shape == (1, len(env.contexts), min(n, env.n_max))
        np.testing.assert_array_equal(narrow, a[:, :, : min(n, env.n_max)])


def test_simulator_draws_follow_cell_probabilities() -> None:
    pool = bernoulli_pool(np.array([[0.2, 0.9]]))
    ctx = tuple(context_grid({"accuracy": [1.0]}, [0.0]))
    sim = encode_pool(pool, MajorityVote(), ctx, 1)
    rng = np.random.default_rng(0)
    oc = sim.draw(np.array([0, 0]), np.array([0, 1]), 20_000, rng)
    gold_rate = (sim.codes[np.array([[0], [0]]), np.array([[0], [1]]), oc, 0] == 0).mean(axis=1)
    np.testing.assert_allclose(gold_rate, [0.2, 0.9], atol=0.01)


def test_exact_table_is_the_strategys_exact_utility() -> None:
    env = mv_env()
    sim = encode_pool(env.pool, env.strategy, env.contexts, env.n_max)
    qs = env.pool.queries[2:7]
    cells = exact_cell_utilities(env.pool, env.strategy, env.contexts, env.n_max, queries=qs)
    assert cells.shape == (3, 5, len(env.contexts), env.n_max)
    one = env.strategy.exact_utility([env.pool.cell("p1", qs[3])], env.contexts, env.n_max)
    np.testing.assert_array_equal(cells[1, 3], one[0])
    got = sim.q_table([sim.query_index[q] for q in qs])
    np.testing.assert_allclose(got, cells.mean(axis=1).transpose(1, 0, 2), rtol=1e-12)


# ------------------------------------------------------------------------------------------
# the protocol
# ------------------------------------------------------------------------------------------


def small_state(env: Environment, labels: list[str], budgets: tuple[int, ...]) -> _protocol._State:
    sim = encode_pool(env.pool, env.strategy, env.contexts, env.n_max)
    specs = [algorithms.get(a) for a in labels]
    ok, _ = _protocol.feasible_budgets(sim, specs, budgets)
    return _protocol._State(sim, tuple(specs), ok, seed=5)


def test_split_never_leaks_test_queries_into_learning(monkeypatch: pytest.MonkeyPatch) -> None:
    env = mv_env(n_prompts=3, n_queries=20)
    labels = ["psst", "psst_k1", "uniform", "ucb", "epsilon_greedy", "triple_n1"]
    state = small_state(env, labels, (400, 900))
    asked: list[str] = []
    original = EncodedPool.simulate_lazy  # what the driver calls

    def spy(self: EncodedPool, batch: Any, *args: Any, **kw: Any) -> Any:
        asked.extend(r.query for r in batch)
        return original(self, batch, *args, **kw)

    monkeypatch.setattr(EncodedPool, "simulate_lazy", spy)
    for run in range(3):
        asked.clear()
        out = _protocol.run_single(run, state)
        test = {env.pool.queries[i] for i in out["test"]}
        assert len(test) == 4  # 20 % of 20
        assert asked, "nothing was pulled"
        assert not (set(asked) & test), "a test query was pulled while learning"
        # the training queries are all used (80 % of the pool)
        assert set(asked) == set(env.pool.queries) - test
    # different runs reshuffle the split
    splits = {tuple(_protocol.run_single(r, state)["test"]) for r in range(4)}
    assert len(splits) > 1


def test_oracle_policy_scores_the_oracle_acr() -> None:
    env = mv_env(n_prompts=3, n_queries=20)
    sim = encode_pool(env.pool, env.strategy, env.contexts, env.n_max)
    state = small_state(env, ["psst"], (400,))
    out = _protocol.run_single(2, state)
    test = out["test"]
    train = [i for i in range(20) if i not in test]
    q_test, q_train = sim.q_table(test), sim.q_table(train)
    # the oracle-test policy: the test table's best arm per context
    best = q_test.reshape(len(env.contexts), -1).max(axis=1)
    assert out["oracle_test"] == pytest.approx(best.mean())
    # the oracle-train policy, scored on test
    arms = q_train.reshape(len(env.contexts), -1).argmax(axis=1)
    assert out["oracle_train"] == pytest.approx(_protocol.arm_values(q_test, list(arms)).mean())
    assert out["oracle_train"] <= out["oracle_test"] + 1e-12
    # an algorithm whose policy is the oracle's scores exactly the oracle ACR
    res = out["results"]["psst"]["400"]
    acr = _protocol.arm_values(q_test, res["arms"]).mean()
    assert res["acr"] == pytest.approx(acr)
    found = [c == "1" for c in res["found"]]
    assert found == [a == b for a, b in zip(res["arms"], arms, strict=True)]


def test_learning_reaches_the_oracle_with_a_huge_budget() -> None:
    success = np.tile(np.array([[0.3], [0.85], [0.5]]), (1, 20))
    pool = bernoulli_pool(success, costs=[0.1, 0.5, 0.2])
    ctx = tuple(context_grid({"accuracy": [1.0]}, [0.0, 1.0]))
    env = Environment("clear", pool, MajorityVote(), ctx, 5, "clear optimum")
    state = small_state(env, ["psst", "uniform"], (60_000,))
    out = _protocol.run_single(0, state)
    for label in ("psst", "uniform"):
        assert out["results"][label]["60000"]["acr"] == pytest.approx(out["oracle_train"])
        assert out["results"][label]["60000"]["found"] == "11"


def test_results_do_not_depend_on_workers() -> None:
    env = mv_env(n_prompts=3, n_queries=20)
    kw: dict[str, Any] = {
        "algorithms": ["psst", "ucb", "triple_n1"],
        "budgets": [400, 800],
        "runs": 4,
        "seed": 11,
    }
    one = run_benchmark(env, workers=1, **kw)
    two = run_benchmark(env, workers=2, **kw)
    strip = [
        {k: v for k, v in r.items() if k != "results"}
        | {"acr": {a: {b: x["acr"] for b, x in d.items()} for a, d in r["results"].items()}}
        for r in one.data["runs"]
    ]
    strip2 = [
        {k: v for k, v in r.items() if k != "results"}
        | {"acr": {a: {b: x["acr"] for b, x in d.items()} for a, d in r["results"].items()}}
        for r in two.data["runs"]
    ]
    assert strip == strip2
    assert [r["run"] for r in two.data["runs"]] == [0, 1, 2, 3]


@pytest.mark.parametrize("label", ["ucb", "epsilon_greedy"])
def test_nested_budgets_equal_fresh_runs(label: str) -> None:
    """One long UCB / ε-greedy trajectory serves the smaller budgets exactly."""
    env = mv_env(n_prompts=3, n_queries=20)
    sim = encode_pool(env.pool, env.strategy, env.contexts, env.n_max)
    problem = Problem(sim.prompts, sim.queries[:16], sim.n_max, sim.contexts, sim.strategy)
    spec = algorithms.get(label)
    nested = _protocol.run_algorithm(spec, problem, [150, 333, 700], sim, seed=9)
    for b in (150, 333, 700):
        fresh = _protocol.run_algorithm(spec, problem, [b], sim, seed=9)
        assert nested[b][0] == fresh[b][0]
        np.testing.assert_array_equal(nested[b][2].stats.total, fresh[b][2].stats.total)
        assert nested[b][2].spent == fresh[b][2].spent <= b


def test_triple_nrandom_shares_triple_exploration_exactly() -> None:
    env = mv_env(n_prompts=3, n_queries=20)
    shared = _protocol.run_single(1, small_state(env, ["triple_n1", "triple_nrandom"], (300, 600)))
    alone = _protocol.run_single(1, small_state(env, ["triple_nrandom"], (300, 600)))
    for b in ("300", "600"):
        got, want = shared["results"]["triple_nrandom"][b], alone["results"]["triple_nrandom"][b]
        assert got["arms"] == want["arms"] and got["acr"] == want["acr"]
    # the prompt is TRIPLE N=1's, the N is random
    n_max = env.n_max
    arms1 = shared["results"]["triple_n1"]["600"]["arms"]
    armsr = shared["results"]["triple_nrandom"]["600"]["arms"]
    assert [a // n_max for a in arms1] == [a // n_max for a in armsr]
    assert all(a % n_max == 0 for a in arms1)


def test_narrow_estimates_change_nothing() -> None:
    """The simulator's narrow arrays give every algorithm the statistics of full-width ones."""
    env = bon_env(n_max=6)
    sim = encode_pool(env.pool, env.strategy, env.contexts, env.n_max)
    problem = Problem(sim.prompts, sim.queries[:8], sim.n_max, sim.contexts, sim.strategy)
    for name in ("psst", "psst_topk", "uniform", "triple_n1", "ucb", "sequential_halving"):
        budget = max(2000, algorithms.get(name).min_budget(problem))
        runs = []
        for narrow in (False, True):
            algo = algorithms.create(name, problem, budget, 4)
            rng = np.random.default_rng(4)
            while batch := algo.ask():
                algo.tell_estimates(sim.simulate(batch, "ustat", rng, narrow=narrow))
            runs.append(algo)
        assert runs[0].policy() == runs[1].policy(), name
        np.testing.assert_array_equal(runs[0].stats.count, runs[1].stats.count)
        np.testing.assert_array_equal(runs[0].stats.total, runs[1].stats.total)


def test_infeasible_budgets_are_recorded_not_raised() -> None:
    env = mv_env(n_prompts=3, n_queries=20)
    res = run_benchmark(
        env, algorithms=["psst", "sequential_halving"], budgets=[40, 200], runs=2, workers=1
    )
    sh = res.summary["algorithms"]["sequential_halving"]
    need = algorithms.SequentialHalving.min_budget(
        Problem(env.pool.prompts, env.pool.queries, 4, env.contexts, env.strategy)
    )
    assert need > 200
    assert sh["200"] == {"status": "infeasible", "min_budget": need}
    assert res.summary["algorithms"]["psst"]["40"]["status"] == "infeasible"
    assert res.summary["algorithms"]["psst"]["200"]["status"] == "ok"
    assert "infeasible (min" in res.markdown()


# ------------------------------------------------------------------------------------------
# the statistics
# ------------------------------------------------------------------------------------------


def test_wilcoxon_gets_paired_arrays_in_run_order(monkeypatch: pytest.MonkeyPatch) -> None:
    import scipy.stats

    calls: list[tuple[np.ndarray, np.ndarray]] = []
    real = scipy.stats.wilcoxon

    def spy(x: Any, y: Any, **kw: Any) -> Any:
        calls.append((np.array(x), np.array(y)))
        assert kw.get("alternative") == "two-sided"
        return real(x, y, **kw)

    monkeypatch.setattr(scipy.stats, "wilcoxon", spy)
    # runs arrive out of order; psst misses run 3: the pairs are runs 0, 1, 2, 4 in order
    acr = {"psst": [0.5, 0.6, 0.7, None, 0.9], "uniform": [0.1, 0.2, 0.3, 0.35, 0.4]}
    runs = []
    for i in (4, 2, 0, 3, 1):
        res = {
            a: ({"1000": {"acr": v[i], "found": "1", "cpu_s": 0.0}} if v[i] is not None else {})
            for a, v in acr.items()
        }
        runs.append({"run": i, "results": res, "oracle_train": 1.0, "oracle_test": 1.0})
    runs.sort(key=lambda r: r["run"])
    s = _report.summarise(runs, ["psst", "uniform"], [1000], {}, ["c"])
    assert len(calls) == 1
    x, y = calls[0]
    np.testing.assert_array_equal(x, [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_array_equal(y, [0.5, 0.6, 0.7, 0.9])
    vs = s["algorithms"]["uniform"]["1000"]["vs_reference"]
    assert vs["pairs"] == 4 and vs["worse"] == 4 and not vs["identical"]


def test_wilcoxon_identical_runs_give_p_one() -> None:
    p, same = _report.paired_wilcoxon([0.3, 0.4, 0.5], [0.3, 0.4, 0.5])
    assert (p, same) == (1.0, True)
    p, same = _report.paired_wilcoxon(np.linspace(0, 1, 30), np.linspace(0, 1, 30) - 0.1)
    assert p < 1e-5 and not same
    with pytest.raises(ValueError):
        _report.paired_wilcoxon([1.0, 2.0], [1.0])


# ------------------------------------------------------------------------------------------
# environments, end to end
# ------------------------------------------------------------------------------------------


def test_synthetic_environments_have_deceiving_prompts() -> None:
    from iapo.evaluation import Evaluation

    for pool, strat, ctx in (
        (synth_bernoulli(seed=0), MajorityVote(), bernoulli_contexts()),
        (synth_categorical(seed=0), BestOfN(("helpful", "harmless")), categorical_contexts()),
    ):
        assert len(pool.prompts) == 32 and len(pool.queries) == 100
        sim = encode_pool(pool, strat, ctx, 32)
        ev = Evaluation(tuple(ctx), pool.prompts, sim.q_table(range(100)), "all")
        assert ev.deceiving(), pool.meta["name"]
    assert len(categorical_contexts()) == 27 and len(bernoulli_contexts()) == 3


def test_named_environments_build() -> None:
    e = build_environment("mcqa-gpt35")
    assert e.n_max == 10 and len(e.pool.prompts) == 5 and len(e.contexts) == 3
    assert e.pool.max_cost() == pytest.approx(1.0)  # costs normalised by the maximum
    e = build_environment("tot-writing")
    assert e.strategy.name == "best_of_n" and e.n_max == 10


def test_shared_environment_without_data_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from iapo.bench import _envs
    from iapo.errors import ConfigError

    monkeypatch.setattr(_envs, "find_shared", lambda shared=None: None)
    for name in ("ccot-aqua-rat", "tot-game24"):
        with pytest.raises(ConfigError, match="needs the shared data"):
            build_environment(name)


def test_shared_flag_must_point_at_the_data(tmp_path: Path) -> None:
    from iapo.errors import ConfigError

    with pytest.raises(ConfigError, match="no data/pools folder"):
        build_environment("ccot-aqua-rat", shared=tmp_path)


def test_shared_environments_build(shared: Path) -> None:
    e = build_environment("ccot-aqua-rat", shared=shared)
    assert len(e.pool.prompts) == 8 and e.n_max == 10
    assert {p.split("/")[0] for p in e.pool.prompts} == {"gpt35", "gpt4"}
    g = build_environment("tot-game24", shared=shared)
    assert g.n_max == 32 and len(g.pool.prompts) == 3


def test_cli_bench_quick_writes_json_markdown_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "bench",
            "--env",
            "tot-writing",
            "--runs",
            "3",
            "--budgets",
            "1k,2000",
            "--algorithms",
            "psst,uniform,triple_n1",
            "--workers",
            "1",
            "--quiet",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "| PSST (U-statistic) |" in out and "oracle-test" in out
    data = json.loads((tmp_path / "tot-writing.json").read_text())
    assert len(data["runs"]) == 3
    assert len(data["runs"][0]["results"]["psst"]) == 2
    assert (tmp_path / "tot-writing.png").stat().st_size > 1000
    assert "Command: `" in (tmp_path / "tot-writing.md").read_text()


def test_cli_bench_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--env", "no-such-env", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown environment" in err and err.count("\n") == 1
    assert main(["bench", "--env", "mcqa-gpt35", "--algorithms", "psst,nope"]) == 2
    assert "unknown algorithm" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# actual spend (an overspending baseline) and the user's own objective on pool files
# ------------------------------------------------------------------------------------------


def test_bench_records_actual_spend_and_marks_the_overspend(tmp_path: Path) -> None:
    env = mv_env(n_prompts=3, n_queries=20)  # R = 4, |P|·N_max = 12: strict PSST needs 48
    res = run_benchmark(
        env, algorithms=["psst", "psst_paper"], budgets=[20, 400], runs=2, workers=1
    )
    for run in res.data["runs"]:
        paper = run["results"]["psst_paper"]
        assert paper["20"]["spent"] > 20  # max(1, ·) pulls: more than the budget
        assert paper["400"]["spent"] <= 400
        assert run["results"]["psst"]["400"]["spent"] <= 400
    cell = res.summary["algorithms"]["psst_paper"]["20"]
    spent = [r["results"]["psst_paper"]["20"]["spent"] for r in res.data["runs"]]
    assert cell["overspent"] and cell["spent_mean"] == np.mean(spent)
    assert cell["spent_max"] == max(spent)
    assert not res.summary["algorithms"]["psst_paper"]["400"]["overspent"]
    md = res.markdown()
    assert "Completions actually spent per run" in md
    assert f"{cell['acr_mean']:.4f} ± {cell['acr_sem']:.4f} ✱" in md
    assert _report._x(cell, 20) == cell["spent_mean"]  # plotted at its actual spend
    assert _report._x(res.summary["algorithms"]["psst"]["400"], 400) == 400
    paths = res.save(tmp_path)
    assert paths["plot"].stat().st_size > 1000


def test_results_without_spend_still_render() -> None:
    """Stored results from before the spend was recorded (docs/bench/*.json) still summarise."""
    res = run_benchmark(mv_env(), algorithms=["psst"], budgets=[400], runs=2, workers=1)
    for run in res.data["runs"]:
        del run["results"]["psst"]["400"]["spent"]
    s = _report.summarise(res.data["runs"], ["psst"], [400], {"psst": 48}, ["a", "b"])
    assert "spent_mean" not in s["algorithms"]["psst"]["400"]
    assert "actually spent" not in _report.markdown_tables(s, {}, [400])


def _pool_file(path: Path) -> Path:
    with path.open("w") as f:
        f.write('{"iapo_pool": 1}\n')  # a header: no warning line before the errors tested
        for i in range(3):
            for j in range(10):
                cell = {
                    "prompt": f"p{i}",
                    "query": f"q{j}",
                    "gold": "A",
                    "answer_counts": {"A": 3 + i + j % 4, "B": 4},
                    "cost": 100 * (i + 1),
                }
                f.write(json.dumps(cell) + "\n")
    return path


def test_cli_bench_pool_file_with_the_users_objective(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pool = _pool_file(tmp_path / "mine.jsonl")
    out = {}
    for norm in ("none", "max"):
        args = ["bench", "--env", str(pool), "--runs", "2", "--budgets", "200"]
        args += ["--algorithms", "psst", "--workers", "1", "--quiet", "--no-plot"]
        args += ["--cost-weights", "0,0.001", "--cost-normalize", norm, "--out", str(tmp_path)]
        assert main(args) == 0
        out[norm] = json.loads((tmp_path / "mine.json").read_text())
    none, top = out["none"], out["max"]
    assert [c["cost_weight"] for c in none["env"]["contexts"]] == [0.0, 0.001]
    assert none["protocol"]["cost_weights"] == [0.0, 0.001]
    assert none["protocol"]["cost_normalize"] == "none" and none["env"]["cost_scale"] == 1.0
    assert top["protocol"]["cost_normalize"] == "max"
    assert top["env"]["cost_scale"] == pytest.approx(1 / 300)
    # the command (here run_benchmark's form: main() was not given sys.argv) names the options
    assert "cost_weights=[0.0, 0.001], cost_normalize='none'" in none["command"]
    assert "costs as recorded" in none["env"]["description"]
    # the objective changed: with recorded costs (100-300 per completion) cost dominates
    assert none["summary"]["oracle_test"]["mean"] < top["summary"]["oracle_test"]["mean"]
    capsys.readouterr()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--cost-normalize", "sum"], "--cost-normalize: 'sum' is not none or max"),
        (["--cost-weights", "0,x"], "--cost-weights: 'x' is not a number"),
        (["--cost-weights", "0,-1"], "--cost-weights: -1.0 must be a number from 0"),
        (["--cost-weights", "0,0"], "--cost-weights: a weight is listed twice"),
    ],
)
def test_cli_bench_cost_options_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    pool = _pool_file(tmp_path / "mine.jsonl")
    args = ["bench", "--env", str(pool), "--runs", "2", "--quiet", "--out", str(tmp_path), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "mine.json").exists()


def test_cli_bench_cost_options_refused_on_synthetic_environments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["bench", "--env", "synth-bernoulli", "--cost-weights", "0,1", "--quiet"]
    assert main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "apply to pool environments" in err and err.count("\n") == 1


def test_plot_names_its_reference_and_pairs_differences_at_the_nominal_budget() -> None:
    """The right panel is the paired difference to the summary's reference (not always PSST),
    drawn at the nominal budget where the pairs were made, even for an overspent cell."""
    res = run_benchmark(
        mv_env(n_prompts=3, n_queries=20),
        algorithms=["psst_any", "psst_paper"],
        budgets=[20, 400],
        runs=3,
        workers=1,
    )
    summary = _report.summarise(
        res.data["runs"],
        ["psst_any", "psst_paper"],
        [20, 400],
        {"psst_any": 3, "psst_paper": 1},
        ["a", "b"],
        reference="psst_any",
    )
    assert summary["algorithms"]["psst_paper"]["20"]["overspent"]
    fig = _report.figure(summary, res.titles, [20, 400], "toy")
    _, bx = fig.axes[:2]
    ref_title = res.titles["psst_any"]
    assert ref_title in bx.get_title() and "PSST (U-statistic)" not in bx.get_title()
    assert ref_title in bx.get_ylabel()
    paper = [ln for ln in bx.get_lines() if ln.get_label().startswith(res.titles["psst_paper"])]
    assert paper and list(paper[0].get_xdata()) == [20, 400]


def test_cli_bench_takes_its_wilcoxon_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--reference sets what the paired tests compare against (psst is not always benchmarked,
    nor feasible); an algorithm that is not benchmarked is one line and exit 2."""
    pool = _pool_file(tmp_path / "mine.jsonl")
    base = ["bench", "--env", str(pool), "--runs", "3", "--quiet", "--no-plot", "--json"]
    args = [*base, "--algorithms", "psst_any,uniform", "--budgets", "200", "--out", str(tmp_path)]
    assert main([*args, "--reference", "psst_any"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["reference"] == "psst_any" == data["protocol"]["reference"]
    cell = data["summary"]["algorithms"]["uniform"]["200"]
    assert "vs_reference" in cell  # uniform is tested against psst_any
    assert "vs_reference" not in data["summary"]["algorithms"]["psst_any"]["200"]
    assert main([*args, "--reference", "ucb"]) == 2
    err = capsys.readouterr().err
    assert "the reference 'ucb' is not benchmarked" in err and err.count("\n") == 1
