"""The command line end to end on the embedded default, and its one-line errors.

Most tests call ``iapo.cli.main`` in-process; the few at the end spawn a real process for what only
a process shows: the console script, the exit status a shell sees, a closed output pipe."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from math import comb
from pathlib import Path

import pytest
from conftest import MCQA, REPO

from iapo.cli import main
from iapo.version import __version__


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``iapo ARGS`` in-process: exit code, stdout, stderr."""
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh current directory (restored after the test)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_run_twice_same_policy_second_draws_nothing(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = cli(capsys, "run", str(MCQA), "--json", "--no-report")
    assert rc == 0, err
    a = json.loads(out)
    rc, out, err = cli(capsys, "run", str(MCQA), "--json", "--no-report")
    assert rc == 0, err
    b = json.loads(out)
    assert a["policy"] == b["policy"]
    assert a["account"]["drawn"] == a["account"]["completions"] > 0
    assert b["account"]["drawn"] == 0
    assert b["account"]["cache_hits"] == a["account"]["completions"]
    assert a["account"]["completions"] <= a["account"]["budget"]
    stored = json.loads((in_tmp / "runs" / "mcqa" / "result.json").read_text())
    assert stored == b  # --json prints what result.json holds
    assert set(stored) >= {"policy", "estimates", "account", "seed", "versions", "trace"}
    assert not (in_tmp / "runs" / "mcqa" / "report").exists()  # --no-report


def test_run_prints_policy_table(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = cli(capsys, "run", str(MCQA), "--no-report")
    assert rc == 0, err
    result = json.loads((in_tmp / "runs" / "mcqa" / "result.json").read_text())
    for ctx in ("accuracy=1,cost=0 ", "accuracy=1,cost=0.2", "accuracy=1,cost=1"):
        assert ctx in out
    for ctx, ch in result["policy"].items():
        (row,) = [ln for ln in out.splitlines() if ln.startswith(ctx + " ")]
        assert f"{ch['prompt']} @ N={ch['n']}" in row and f"{ch['q']:.4f}" in row
    assert "runner-up" in out and "95% CI" in out
    acc = result["account"]
    assert f"completions: {acc['completions']:,} of budget 6,000" in out
    assert "report:" not in out


def test_evaluate_lists_every_arm(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = cli(capsys, "evaluate", str(MCQA), "--json")
    assert rc == 0, err
    ev = json.loads(out)
    assert len(ev["q"]) == 3
    for table in ev["q"].values():
        assert len(table) == 5 and all(len(row) == 10 for row in table.values())
    for ctx, best in ev["optimal"].items():  # the optimal arm is the table's maximum
        top = max(q for row in ev["q"][ctx].values() for q in row)
        assert ev["q"][ctx][best["prompt"]][best["n"] - 1] == top


def _majority(p: float, n: int) -> float:
    """P(the gold answer wins a majority vote of n), two answer classes, ties a coin flip."""
    return sum(
        comb(n, k) * p**k * (1 - p) ** (n - k) * (1.0 if 2 * k > n else 0.5 if 2 * k == n else 0.0)
        for k in range(n + 1)
    )


def test_evaluate_finds_the_deceiving_prompt_of_the_design_notes(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DESIGN.md's example: 'steady' succeeds 62 % on both queries, 'erratic' 40 % and 90 %.
    Erratic leads at N=1 (.65 vs .62), steady wins at N=10 (.7738 vs .6328)."""
    success = {("erratic", "q1"): 40, ("erratic", "q2"): 90, ("steady", "q1"): 62}
    success[("steady", "q2")] = 62
    lines = [{"iapo_pool": 1, "cost_unit": "calls"}] + [
        {"prompt": p, "query": q, "gold": "A", "answer_counts": {"A": s, "B": 100 - s}, "cost": 1}
        for (p, q), s in success.items()
    ]
    (in_tmp / "pool.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (in_tmp / "deceiving.yaml").write_text(
        "strategy: majority_vote\npool: pool.jsonl\nn_max: 10\n"
        "contexts: {grid: {cost_weight: [0.0, 0.1]}}\nbudget: 10000\n"
        "split: {test_fraction: 0.5, seed: 0}\n"
    )
    rc, out, err = cli(capsys, "evaluate", "deceiving.yaml", "--split", "all", "--json")
    assert rc == 0, err
    ev = json.loads(out)
    free, costly = "accuracy=1,cost=0", "accuracy=1,cost=0.1"
    erratic = [(_majority(0.4, n) + _majority(0.9, n)) / 2 for n in range(1, 11)]
    steady = [_majority(0.62, n) for n in range(1, 11)]
    assert ev["q"][free]["erratic"] == pytest.approx(erratic, abs=1e-12)
    assert ev["q"][free]["steady"] == pytest.approx(steady, abs=1e-12)
    assert ev["q"][costly]["steady"] == pytest.approx(
        [q - 0.1 * n for n, q in enumerate(steady, 1)], abs=1e-12
    )
    assert (erratic[0], steady[0]) == pytest.approx((0.65, 0.62))
    assert (erratic[9], steady[9]) == pytest.approx((0.6328, 0.7738), abs=5e-5)

    # with cost, erratic @ N=1 is simply optimal: nothing deceives there
    assert ev["optimal"][costly] == {"prompt": "erratic", "n": 1}
    (d,) = ev["deceiving"]
    assert d["context"] == free
    assert (d["deceiving_prompt"], d["optimal_prompt"]) == ("erratic", "steady")
    assert d["optimal_n"] in (9, 10)  # with coin-flip ties an even N equals the odd N below it
    k = d["optimal_n"] - 1
    assert d["n1"] == pytest.approx({"deceiving": 0.65, "optimal": 0.62}, abs=1e-12)
    assert d["at_optimal_n"] == pytest.approx(
        {"deceiving": erratic[k], "optimal": steady[k]}, abs=1e-12
    )
    assert d["deceiving_best"]["n"] in (3, 4) and d["deceiving_best"]["q"] == pytest.approx(0.662)

    rc, out, _ = cli(capsys, "evaluate", "deceiving.yaml", "--split", "all")
    assert rc == 0
    assert f"  {free}: erratic leads at N=1 (0.6500 vs 0.6200 for steady)" in out
    assert f"it scores {erratic[k]:.4f} vs {steady[k]:.4f}" in out


def test_estimate_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = cli(capsys, "estimate", str(MCQA), "--json")
    assert rc == 0, err
    pf = json.loads(out)
    # the default, psst_any, runs from one completion per prompt; 6,000 funds strict PSST (300)
    assert pf["algorithm"] == "psst_any" and pf["min_budget"] == 5
    assert pf["schedule"].startswith("strict PSST (the budget reaches its minimum, 300)")
    first = pf["rounds"][0]
    assert first["completions"] == (6000 // 6 // 50) * 50
    assert first["prompts"] == 5 and first["n_min"] == first["n_max"] == 10
    assert first["pulls"] == 5 * first["queries"]  # paired: every prompt on the same queries
    assert pf["completions"] <= 6000
    assert pf["completions"] == sum(r["completions"] for r in pf["rounds"])


def test_estimate_schedule_below_strict_psst_minimum(capsys: pytest.CaptureFixture[str]) -> None:
    """At 150 < 300 the schedule says so, and the rounds show pulls capped below N_max."""
    rc, out, err = cli(capsys, "estimate", str(MCQA), "--budget", "150")
    assert rc == 0, err
    assert "schedule: below strict PSST's minimum (300): 6 rounds" in out
    rc, out, err = cli(capsys, "estimate", str(MCQA), "--budget", "150", "--json")
    pf = json.loads(out)
    assert pf["completions"] <= 150
    assert pf["rounds"][0] | {"expected_cost": None} == {
        "round": 1,
        "prompts": 5,
        "pulls": 5,
        "n_min": 5,  # B_1 = 150 // 6 = 25 funds a pull of 5 per prompt
        "n_max": 5,
        "queries": 5,  # 5 live prompts, 8 groups: one prompt per group, each its own query
        "completions": 25,
        "expected_cost": None,
    }


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
        (BASE.replace("budget: 500", "budget: 4"), "smallest budget that works is 5"),
        (BASE + "bogus_key: 1\n", "bogus_key"),
        (BASE.replace("builtin:mcqa-gpt35-comprehensive", "nope.jsonl"), "pool"),
    ],
)
def test_bad_config_one_line_exit_2(
    in_tmp: Path, text: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = in_tmp / "bad.yaml"
    cfg.write_text(text)
    rc, _, err = cli(capsys, "run", str(cfg))
    assert rc == 2
    assert needle in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "bad.yaml" in err
    assert not (in_tmp / "runs").exists()


def test_pool_line_missing_field(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pool = in_tmp / "pool.jsonl"
    pool.write_text('{"prompt": "a", "query": "q1", "gold": "A"}\n')
    cfg = in_tmp / "c.yaml"
    cfg.write_text(BASE.replace("builtin:mcqa-gpt35-comprehensive", "pool.jsonl"))
    rc, _, err = cli(capsys, "run", str(cfg))
    assert rc == 2 and "pool.jsonl" in err and err.count("\n") == 1
    assert not (in_tmp / "runs").exists()


def test_bad_input_leaves_existing_bank_intact(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "run", str(MCQA), "--no-report")[0] == 0
    bank = in_tmp / "runs" / "mcqa" / "bank.sqlite"
    before = bank.read_bytes()
    bad = in_tmp / "mcqa.yaml"
    shutil.copy(MCQA, bad)
    bad.write_text(bad.read_text().replace("budget: 6000", "budget: 3"))
    rc, _, err = cli(capsys, "run", str(bad), "--no-report")
    assert rc == 2 and "smallest budget that works" in err
    assert bank.read_bytes() == before


# -- real processes -------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src")}


def test_readme_command_through_the_console_script(tmp_path: Path) -> None:
    """The README's first command, as a shell runs it: the installed ``iapo`` script, the default
    output with the report, exit status 0."""
    script = Path(sys.executable).with_name("iapo")
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable}: iapo is not pip-installed")
    version = subprocess.run(
        [str(script), "--version"], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and version.stdout.strip() == f"iapo {__version__}"
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    out = subprocess.run(
        [str(script), "run", "examples/mcqa.yaml"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # stderr is a pipe: no progress bar
    assert out.stdout.splitlines()[-2:] == [
        "result: runs/mcqa/result.json",
        "report: runs/mcqa/report/report.html",
    ]
    assert (tmp_path / "runs" / "mcqa" / "report" / "report.html").stat().st_size > 20_000


def test_shell_sees_exit_status_2_and_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BASE.replace("n_max: 4", "n_max: 0"))
    out = subprocess.run(
        [sys.executable, "-m", "iapo.cli", "run", "bad.yaml"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.startswith("iapo: error: bad.yaml") and out.stderr.count("\n") == 1
    assert "n_max" in out.stderr


def test_output_into_a_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    """``iapo evaluate … | head -0``: the reader is gone before the first byte; no traceback."""
    read, write = os.pipe()
    os.close(read)
    proc = subprocess.Popen(
        [sys.executable, "-m", "iapo.cli", "evaluate", str(MCQA)],
        cwd=tmp_path,
        env=_env(),
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (0, "")
