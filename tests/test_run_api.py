"""``iapo.run`` takes an algorithm instance and a backend as well as a config, and a Study owns
its run record in the bank."""

from __future__ import annotations

from pathlib import Path

import pytest

import iapo
from iapo.algorithms import Uniform
from iapo.backends import MockBackend
from iapo.bank import MemoryBank
from iapo.errors import BudgetError
from iapo.study import RunInfo, Study
from iapo.types import Sample

REPO = Path(__file__).resolve().parents[1]
MCQA = REPO / "examples" / "mcqa.yaml"


def always_right(prompt: str, query: str, index: int) -> Sample:
    return Sample("A", {}, 1.0)


def test_run_takes_an_algorithm_instance_and_a_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = iapo.setup(MCQA, storage="memory:")
    algo = Uniform(s.problem, 500, seed=1)
    backend = MockBackend(always_right, gold={q: "A" for q in s.train})
    result = iapo.run(s, algorithm=algo, backend=backend, write=False)
    assert result.algorithm == "uniform"  # not the config's psst
    assert result.account["completions"] == algo.spent == 500 - 500 % (5 * s.config.n_max)
    assert backend.calls and not backend.closed  # a backend passed in is the caller's to close
    free = result.policy["accuracy=1,cost=0"]
    assert (free["n"], free["q"]) == (1, 1.0)  # always right: N = 1 already has Q = 1
    assert not (tmp_path / "runs").exists()  # write=False, memory bank: nothing on disk


def test_an_algorithm_instance_with_too_small_a_budget_is_refused_before_any_draw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = iapo.setup(MCQA, storage="memory:")
    backend = MockBackend(always_right)
    with pytest.raises(BudgetError, match="smallest budget that works is 50"):
        iapo.run(s, algorithm=Uniform(s.problem, 49), backend=backend, write=False)
    assert backend.calls == []


def test_a_study_keeps_its_run_record(tmp_path: Path) -> None:
    s = iapo.setup(MCQA, storage="memory:")
    bank = MemoryBank()
    backend = MockBackend(always_right, gold={q: "A" for q in s.train})
    study = Study(Uniform(s.problem, 100), backend, bank, run=RunInfo("r1", "demo", {"k": 1}))
    study.run()
    (rec,) = bank.runs()
    assert (rec["id"], rec["name"], rec["status"], rec["spent"]) == ("r1", "demo", "done", 100)
    assert rec["config"] == {"k": 1} and rec["result"] is None
    study.save_result({"policy": {}})
    assert bank.runs()[0]["result"] == {"policy": {}}


def test_an_interrupted_study_says_so_in_its_record() -> None:
    s = iapo.setup(MCQA, storage="memory:")

    def boom(prompt: str, query: str, index: int) -> Sample:
        raise RuntimeError("the endpoint went away")

    bank = MemoryBank()
    study = Study(Uniform(s.problem, 100), MockBackend(boom), bank, run=RunInfo("r2", "x", {}))
    with pytest.raises(RuntimeError, match="went away"):
        study.run()
    assert bank.runs()[0]["status"] == "interrupted"
