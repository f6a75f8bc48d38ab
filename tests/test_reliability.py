"""Reliability: crash-resume, faults, cost caps, concurrent banks, secrets (issue: reliability)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MCQA, bernoulli_pool
from hypothesis import given, settings
from hypothesis import strategies as st
from live_helpers import script, write_config

import iapo
from iapo import algorithms
from iapo.backends import ReplayBackend
from iapo.cli import main
from iapo.contexts import context_grid
from iapo.errors import BudgetError
from iapo.problem import Problem
from iapo.strategies import MajorityVote
from iapo.study import Study
from iapo.testing.fake_openai import FAULT_KINDS, FakeOpenAIServer, FaultPlan

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-reliability-0123456789abcdef"
SEEDED = "  seed_per_sample: true\n  backoff: 0.01\n  max_backoff: 0.05"


def cli(*args: str, cwd: Path, **kw: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "IAPO_TEST_KEY": KEY}
    return subprocess.Popen(
        [sys.executable, "-m", "iapo.cli", *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,  # type: ignore[call-overload]
    )


def bank_count(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_gives_same_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IAPO_TEST_KEY", KEY)
    rng = random.Random(7)
    with FakeOpenAIServer(script, api_key=KEY) as srv:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        clean = iapo.run(write_config(tmp_path / "a", srv.base_url, backend_extra=SEEDED))
        total = srv.completions_served
        assert total == clean.account["completions"]

        srv.latency = 0.01  # slow enough for the kills to land mid-run
        cfg = write_config(tmp_path / "b", srv.base_url, backend_extra=SEEDED)
        bank = tmp_path / "b" / "run" / "bank.sqlite"
        kills = 0
        for _ in range(3):
            target = srv.completions_served + rng.randint(5, max(6, total // 4))
            proc = cli("run", str(cfg), "--json", "--no-report", cwd=tmp_path / "b")
            while srv.completions_served < target and proc.poll() is None:
                time.sleep(0.002)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate(timeout=30)
        assert kills >= 2
        stored = bank_count(bank)
        assert 0 < stored < total
        srv.latency = 0.0
        while srv.in_flight:  # the killed runs' last requests still finish on the server
            time.sleep(0.002)
        before = srv.completions_served
        proc = cli("run", str(cfg), "--json", "--no-report", cwd=tmp_path / "b")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        resumed = json.loads(out)
        # exactly the missing completions were requested: nothing stored was asked for again
        assert srv.completions_served - before == total - stored
        assert resumed["policy"] == clean.policy
        assert resumed["account"]["completions"] == clean.account["completions"]


def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IAPO_TEST_KEY", KEY)
    with FakeOpenAIServer(script, api_key=KEY, latency=0.05) as srv:
        cfg = write_config(tmp_path, srv.base_url, backend_extra=SEEDED)
        proc = cli("run", str(cfg), "--no-report", cwd=tmp_path)
        while srv.completions_served < 10 and proc.poll() is None:
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130
        assert "run the same command again to resume" in err
        assert "Traceback" not in err
        bank = tmp_path / "run" / "bank.sqlite"
        with sqlite3.connect(bank) as db:
            assert db.execute("SELECT status FROM runs").fetchone()[0] == "interrupted"
        stored = bank_count(bank)
        assert stored > 0
        srv.latency = 0.0  # it only had to let the interrupt land mid-run
        while srv.in_flight:  # the interrupted run's last requests still finish on the server
            time.sleep(0.002)
        before = srv.completions_served
        resumed = iapo.run(cfg)
        # every stored completion is re-used, only the missing ones are requested
        assert resumed.account["cache_hits"] == stored
        assert srv.completions_served - before == resumed.account["drawn"]
        assert resumed.account["drawn"] + stored == resumed.account["completions"]
        with sqlite3.connect(bank) as db:
            assert db.execute("SELECT status FROM runs").fetchone()[0] == "done"


def test_faults_at_20_percent_run_completes_and_books_balance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IAPO_TEST_KEY", KEY)
    plan = FaultPlan(rate=0.2, kinds=list(FAULT_KINDS), seed=11, hang=1.0)
    with FakeOpenAIServer(script, api_key=KEY, faults=plan) as srv:
        cfg = write_config(
            tmp_path,
            srv.base_url,
            backend_extra="  backoff: 0.01\n  max_backoff: 0.05\n  timeout: 0.5\n"
            "  max_attempts: 20",
        )
        result = iapo.run(cfg)
        acc = result.account
        assert acc["completions"] == acc["drawn"] <= 240
        assert srv.completions_served == acc["drawn"]
        assert srv.prompt_tokens_served == acc["prompt_tokens"]
        assert srv.completion_tokens_served == acc["completion_tokens"]
        assert sum(srv.faults_injected.values()) > 0
        assert set(result.policy) == {"accuracy=1,cost=0", "accuracy=1,cost=0.5"}


@pytest.mark.parametrize("status", ["400", "401", "404"])
def test_permanent_errors_stop_at_once_with_one_line(
    tmp_path: Path, status: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IAPO_TEST_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    with FakeOpenAIServer(script, permanent=status) as srv:
        cfg = write_config(tmp_path, srv.base_url)
        rc = main(["run", str(cfg), "--no-report"])
        err = capsys.readouterr().err
        assert rc == 2
        assert err.strip().count("\n") == 0 and status in err and "Traceback" not in err
        assert KEY not in err
        assert srv.requests <= 4  # the first concurrent requests, no retries
        assert bank_count(tmp_path / "run" / "bank.sqlite") == 0


def test_cost_cap_is_never_crossed_counting_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IAPO_TEST_KEY", KEY)
    with FakeOpenAIServer(script, api_key=KEY) as srv:
        cap = 3000.0  # completion tokens; max_tokens is 64 per completion
        cfg = write_config(tmp_path, srv.base_url, extra=f"cost: {{cap: {cap}}}")
        result = iapo.run(cfg)
        assert result.account["cost"] <= cap
        assert srv.completion_tokens_served <= cap
        assert result.extra["stopped"] and "cost cap" in result.extra["stopped"]
        tiny = write_config(tmp_path, srv.base_url, extra="cost: {cap: 10}", run_dir="tiny")
        with pytest.raises(BudgetError, match="cost cap"):
            iapo.run(tiny)


def test_two_runs_share_one_sqlite_bank_at_once(tmp_path: Path) -> None:
    bank = tmp_path / "shared.sqlite"
    procs = [
        cli(
            "run",
            str(MCQA),
            "--seed",
            str(seed),
            "--storage",
            f"sqlite:///{bank}",
            "--run-dir",
            str(tmp_path / f"r{seed}"),
            "--no-report",
            cwd=tmp_path,
        )
        for seed in (1, 2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    db = sqlite3.connect(bank)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT COUNT(*) FROM runs WHERE status = 'done'").fetchone()[0] == 2
    results = [json.loads((tmp_path / f"r{s}" / "result.json").read_text()) for s in (1, 2)]
    drawn = sum(r["account"]["drawn"] for r in results)
    assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == drawn


def test_bank_of_another_schema_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bank = tmp_path / "old.sqlite"
    db = sqlite3.connect(bank)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('schema', '99')")
    db.commit()
    db.close()
    before = bank.read_bytes()
    monkeypatch.chdir(tmp_path)
    rc = main(["run", str(MCQA), "--storage", f"sqlite:///{bank}", "--no-report"])
    err = capsys.readouterr().err
    assert rc == 2 and "schema version 99" in err and err.count("\n") == 1
    assert bank.read_bytes() == before


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(sorted(algorithms.registry())),
    n_prompts=st.integers(1, 4),
    n_max=st.integers(1, 4),
    extra=st.integers(0, 2000),
    cap=st.floats(0.5, 400.0),
    seed=st.integers(0, 5),
)
def test_property_cost_cap_holds_for_every_algorithm_driven_by_a_study(
    name: str, n_prompts: int, n_max: int, extra: int, cap: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    costs = list(rng.uniform(0.1, 3.0, n_prompts))
    pool = bernoulli_pool(rng.uniform(0, 1, size=(n_prompts, 5)), costs=costs)
    contexts = tuple(context_grid({"accuracy": [1.0]}, [0.0, 0.3]))
    problem = Problem(pool.prompts, pool.queries, n_max, contexts, MajorityVote())
    budget = algorithms.get(name).min_budget(problem) + extra
    algo = algorithms.create(name, problem, budget, seed)
    study = Study(algo, ReplayBackend(pool, seed), None, cost_cap=cap)
    try:
        outcome = study.run()
    except BudgetError:  # the cap stopped it before every context had data: said, not crossed
        assert study.account.cost <= cap
        return
    # the budget, or for an algorithm that may overspend (psst_paper) its own bound; the
    # account says what was spent either way
    most = type(algo).max_spend(problem, budget, **algo.params())
    assert study.account.completions == algo.spent <= most
    assert study.account.cost <= cap + 1e-9
    assert set(outcome.policy) == {c.name for c in contexts}
