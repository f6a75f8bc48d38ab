"""Benchmark environments with large arm sets (issue #11 item 3): the paper-scale synthetic
environments with planted deceiving prompts, and the Renze temperature study as one arm set."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from iapo.bench import (
    ENVIRONMENTS,
    build_environment,
    encode_pool,
    synth_bernoulli,
)
from iapo.cli import main
from iapo.errors import PoolError
from iapo.evaluation import Evaluation
from iapo.pools import import_renze, import_renze_configs

RENZE = Path("data/pools/renze-mcqa/temperature_pool.jsonl")


def _strict_psst_minimum(prompts: int, n_max: int) -> int:
    """Strict PSST's minimum budget: ⌈log2(|P|·N_max)⌉ · |P| · N_max (issue #11)."""
    arms = prompts * n_max
    return math.ceil(math.log2(arms)) * arms


# ------------------------------------------------------------------------------------------
# synthetic environments of the paper's shape
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "prompts", "n_max", "seed"),
    [("synth-48x32", 48, 32, 0), ("synth-48x32", 48, 32, 9), ("synth-200x64", 200, 64, 0)],
)
def test_large_synthetic_environment_has_its_shape_and_deceiving_prompts(
    name: str, prompts: int, n_max: int, seed: int
) -> None:
    e = build_environment(name, seed=seed)
    assert (len(e.pool.prompts), len(e.pool.queries), e.n_max) == (prompts, 100, n_max)
    assert e.strategy.name == "majority_vote" and len(e.contexts) == 3
    sim = encode_pool(e.pool, e.strategy, e.contexts, e.n_max)
    assert sim.exact.shape == (prompts, 100, 3, n_max)
    ev = Evaluation(e.contexts, e.pool.prompts, sim.q_table(range(100)), "all")
    deceiving = ev.deceiving()
    assert deceiving, f"{name} seed {seed}: no deceiving prompt"
    # by construction: the planted decoy leads at N = 1, the planted champion is the optimal
    # arm's prompt (at a large N) in the cost-blind context
    planted = e.meta["planted"]
    blind = next(d for d in deceiving if d["context"] == e.contexts[0].name)
    assert blind["deceiving_prompt"] == planted["decoy"]
    assert blind["optimal_prompt"] == planted["champion"] and blind["optimal_n"] >= n_max // 2
    assert blind["at_optimal_n"]["optimal"] > blind["at_optimal_n"]["deceiving"] + 0.1
    assert e.describe()["planted"] == e.meta["planted"]


def test_large_synthetic_environments_are_seeded() -> None:
    a, b = build_environment("synth-48x32", seed=3), build_environment("synth-48x32", seed=3)
    c = build_environment("synth-48x32", seed=4)
    cell = ("p05", "q007")
    assert np.array_equal(a.pool.cell(*cell).weights, b.pool.cell(*cell).weights)
    assert not np.array_equal(a.pool.cell(*cell).weights, c.pool.cell(*cell).weights)


def test_planting_a_decoy_changes_only_the_two_planted_prompts() -> None:
    plain = synth_bernoulli(n_prompts=48, seed=2)
    planted = synth_bernoulli(n_prompts=48, seed=2, plant_decoy=True)
    assert "planted" not in plain.meta
    moved = set(planted.meta["planted"].values())
    assert len(moved) == 2
    for p in plain.prompts:
        if p in moved:
            continue
        for q in plain.queries[:10]:
            assert np.array_equal(plain.cell(p, q).weights, planted.cell(p, q).weights)
    assert planted.meta["name"] != plain.meta["name"]  # not mistaken for one another


def test_synth_bernoulli_default_is_unchanged() -> None:
    """The existing synth-bernoulli environment (and every benchmark run on it) is unchanged:
    success probabilities recorded from the generator before ``plant_decoy`` existed."""
    pool = build_environment("synth-bernoulli").pool
    got = [float(pool.cell(p, q).weights[0]) for p, q in (("p00", "q000"), ("p17", "q042"))]
    assert got == [0.37260172601669944, 0.5223976110984254]
    assert float(pool.cell("p31", "q099").weights[0]) == 0.3278275688918261


def test_n_max_override_keeps_the_environment_metadata() -> None:
    e = build_environment("synth-48x32", n_max=8)
    assert e.n_max == 8 and "planted" in e.meta


# ------------------------------------------------------------------------------------------
# the Renze temperature study as one environment
# ------------------------------------------------------------------------------------------


def test_renze_all_configs_environment_builds(shared: Path) -> None:
    e = build_environment("renze-temperature-all", shared=shared)
    assert (len(e.pool.prompts), len(e.pool.queries), e.n_max) == (149, 100, 10)
    assert e.strategy.name == "majority_vote" and len(e.contexts) == 3
    assert e.pool.max_cost() == pytest.approx(1.0)
    d = e.describe()
    assert "BSD-2-Clause" in d["license"] and "BSD-2-Clause" in d["description"]
    assert d["cost"] == "output_tokens"
    assert _strict_psst_minimum(149, 10) == 16390  # the number issue #11 quotes
    models = {p.split("/")[0] for p in e.pool.prompts}
    assert len(models) == 9 and "gpt-4o" not in models
    assert "gpt-35-turbo/chain_of_thought/T1.6" in e.pool.prompts


def test_renze_configs_agree_with_the_single_config_importer(shared: Path) -> None:
    path = shared / RENZE
    every = import_renze_configs(path, exam="comprehensive-100")
    one = import_renze(path, model="gpt-4", exam="comprehensive-100", temperature=0.3)
    for q in one.queries:
        a, b = one.cell("chain_of_thought", q), every.cell("gpt-4/chain_of_thought/T0.3", q)
        assert a.gold == b.gold
        assert [(o.answer, o.cost) for o in a.outcomes] == [(o.answer, o.cost) for o in b.outcomes]
        assert np.array_equal(a.weights, b.weights)


def _row(problem: int, gold: str = "A", **kw: object) -> str:
    r: dict[str, object] = {
        "study": "temperature",
        "model": "m",
        "prompt": "p",
        "exam": "e-100",
        "temperature": 0.5,
        "problem_id": problem,
        "answers": ["A", "B", ""],
        "gold": gold,
        "output_tokens": 30,
    }
    r.update(kw)
    return json.dumps(r)


def test_renze_configs_importer_builds_a_small_file(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    rows = [_row(1), _row(2, "B"), _row(1, temperature=1.0), _row(2, "B", temperature=1.0)]
    f.write_text("\n".join([*rows, _row(3, temperature=1.0)]) + "\n")
    pool = import_renze_configs(f, exam="e-100")
    assert pool.prompts == ("m/p/T0.5", "m/p/T1.0")
    assert pool.queries == ("e-100-1", "e-100-2")  # question 3 is missing under T0.5
    c = pool.cell("m/p/T1.0", "e-100-2")
    assert c.gold == "B" and c.outcomes[0].cost == pytest.approx(10.0)
    assert "BSD-2-Clause" in pool.meta["license"]


@pytest.mark.parametrize(
    ("lines", "exam", "field", "words"),
    [
        ([_row(1)], "nope", "exam", "available exams: e-100"),
        ([_row(1), _row(1)], "e-100", "problem_id", "duplicate row"),
        ([_row(1), _row(1, "C", temperature=1.0)], "e-100", "gold", "differs"),
        ([_row(1), _row(2, temperature=1.0)], "e-100", "exam", "share no question"),
        ([_row(1, study="concise_cot")], "e-100", "study", "no rows for study"),
    ],
)
def test_renze_configs_importer_rejects_bad_files_naming_the_field(
    tmp_path: Path, lines: list[str], exam: str, field: str, words: str
) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(PoolError, match=words) as info:
        import_renze_configs(f, exam=exam)
    assert info.value.field == field
    assert f.read_text() == "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------
# iapo bench --quick on each, at strict PSST's minimum budget
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "prompts", "n_max"),
    [("synth-48x32", 48, 32), ("synth-200x64", 200, 64), ("renze-temperature-all", 149, 10)],
)
def test_cli_bench_quick_runs_psst_and_uniform_on_large_environments(
    env: str, prompts: int, n_max: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    extra = ["--shared", str(request.getfixturevalue("shared"))] if env.startswith("renze") else []
    budget = _strict_psst_minimum(prompts, n_max)
    args = ["bench", "--env", env, "--quick", "--runs", "2", "--budgets", str(budget)]
    args += ["--algorithms", "psst,uniform", "--workers", "1", "--quiet", "--no-plot"]
    assert main([*args, "--out", str(tmp_path), *extra]) == 0
    data = json.loads((tmp_path / f"{env}.json").read_text())
    assert len(data["env"]["prompts"]) == prompts and data["env"]["n_max"] == n_max
    for run in data["runs"]:
        for algo in ("psst", "uniform"):
            assert 0.0 <= run["results"][algo][str(budget)]["acr"] <= 1.0
    assert all(e in ENVIRONMENTS for e in ("synth-48x32", "synth-200x64", "renze-temperature-all"))


def test_renze_all_without_shared_data_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from iapo.bench import _envs

    monkeypatch.setattr(_envs, "find_shared", lambda shared=None: None)
    assert main(["bench", "--env", "renze-temperature-all", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "needs the shared data" in err and "--shared" in err and err.count("\n") == 1


def test_renze_all_on_a_bad_shared_file_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "data" / "pools" / "renze-mcqa"
    d.mkdir(parents=True)
    bad = d / "temperature_pool.jsonl"
    bad.write_text(_row(1, exam="comprehensive-100") + "\n{not json\n")
    before = bad.read_bytes()
    assert main(["bench", "--env", "renze-temperature-all", "--shared", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2" in err and err.count("\n") == 1
    assert bad.read_bytes() == before
