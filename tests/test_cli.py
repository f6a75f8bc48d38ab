"""The command line end to end on the embedded default, and its one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iapo.cli import main

REPO = Path(__file__).resolve().parents[1]
MCQA = REPO / "examples" / "mcqa.yaml"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-m", "iapo.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_twice_same_policy_second_draws_nothing(tmp_path: Path) -> None:
    first = run_cli("run", str(MCQA), "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    a = json.loads(first.stdout)
    second = run_cli("run", str(MCQA), "--json", cwd=tmp_path)
    b = json.loads(second.stdout)
    assert a["policy"] == b["policy"]
    assert a["account"]["drawn"] == a["account"]["completions"] > 0
    assert b["account"]["drawn"] == 0
    assert b["account"]["cache_hits"] == a["account"]["completions"]
    assert a["account"]["completions"] <= a["account"]["budget"]
    stored = json.loads((tmp_path / "runs" / "mcqa" / "result.json").read_text())
    assert stored["policy"] == a["policy"]
    assert set(stored) >= {"policy", "estimates", "account", "seed", "versions", "trace"}


def test_run_prints_policy_table(tmp_path: Path) -> None:
    out = run_cli("run", str(MCQA), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for ctx in ("accuracy=1,cost=0 ", "accuracy=1,cost=0.2", "accuracy=1,cost=1"):
        assert ctx in out.stdout
    assert "runner-up" in out.stdout and "95% CI" in out.stdout
    assert "of budget 6000" in out.stdout


def test_evaluate_lists_every_arm_and_deceiving_section(tmp_path: Path) -> None:
    out = run_cli("evaluate", str(MCQA), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    ev = json.loads(out.stdout)
    assert len(ev["q"]) == 3
    for table in ev["q"].values():
        assert len(table) == 5 and all(len(row) == 10 for row in table.values())
    assert "deceiving" in ev


def test_estimate_schedule(tmp_path: Path) -> None:
    out = run_cli("estimate", str(MCQA), "--json", cwd=tmp_path)
    pf = json.loads(out.stdout)
    assert pf["min_budget"] == 6 * 50
    assert pf["rounds"][0]["completions"] == (6000 // 6 // 50) * 50
    assert pf["completions"] <= 6000


BASE = """
name: bad
strategy: majority_vote
pool: builtin:mcqa-gpt35-comprehensive
n_max: 4
contexts:
  grid:
    cost_weight: [0.0]
budget: 500
"""


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: [unclosed\n", "malformed YAML"),
        (BASE.replace("n_max: 4", "n_max: 0"), "n_max"),
        (BASE.replace("majority_vote", "best_of_three"), "strategy"),
        (BASE + "prompts: []\n", "prompt set is empty"),
        (BASE.replace("cost_weight: [0.0]", "weights: {helpfulness: [1.0]}"), "helpfulness"),
        (BASE.replace("budget: 500", "budget: 5"), "smallest budget that works is"),
        (BASE + "bogus_key: 1\n", "bogus_key"),
        (BASE.replace("builtin:mcqa-gpt35-comprehensive", "nope.jsonl"), "pool"),
    ],
)
def test_bad_config_one_line_exit_2(tmp_path: Path, text: str, needle: str, capsys) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    os.chdir(tmp_path)
    rc = main(["run", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "bad.yaml" in err
    assert not (tmp_path / "runs").exists()


def test_pool_line_missing_field(tmp_path: Path, capsys) -> None:
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"prompt": "a", "query": "q1", "gold": "A"}\n')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(BASE.replace("builtin:mcqa-gpt35-comprehensive", "pool.jsonl"))
    rc = main(["run", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 2 and "pool.jsonl" in err and err.count("\n") == 1


def test_bad_input_leaves_existing_bank_intact(tmp_path: Path) -> None:
    ok = run_cli("run", str(MCQA), cwd=tmp_path)
    assert ok.returncode == 0
    bank = tmp_path / "runs" / "mcqa" / "bank.sqlite"
    before = bank.read_bytes()
    bad = tmp_path / "mcqa.yaml"
    shutil.copy(MCQA, bad)
    bad.write_text(bad.read_text().replace("budget: 6000", "budget: 3"))
    out = run_cli("run", str(bad), cwd=tmp_path)
    assert out.returncode == 2
    assert bank.read_bytes() == before
