"""``tie_credit`` through the config and the CLI: ``iapo evaluate`` (exact Q), ``iapo run``
(recorded, in the summary, in the run id only when not the default), ``iapo estimate``,
``iapo bench --tie-credit``; a bad value is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iapo.cli import main

CTX = "accuracy=1,cost=0"
HEADER = {"iapo_pool": 1, "cost_unit": "calls"}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _pool(path: Path, n_queries: int = 4) -> Path:
    """Gold A. p0: A, B, C equally likely; p1: A 1/2, B 1/4, C 1/4."""
    lines: list[dict[str, object]] = [HEADER]
    for q in range(n_queries):
        for p, counts in (("p0", {"A": 1, "B": 1, "C": 1}), ("p1", {"A": 2, "B": 1, "C": 1})):
            lines.append(
                {"prompt": p, "query": f"q{q}", "gold": "A", "answer_counts": counts, "cost": 1}
            )
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _config(path: Path, extra: str = "", strategy: str = "majority_vote") -> Path:
    _pool(path.parent / "pool.jsonl")
    path.write_text(
        f"name: ties\nstrategy: {strategy}\n{extra}pool: pool.jsonl\nn_max: 3\n"
        "contexts: {grid: {cost_weight: [0.0]}}\nbudget: 300\n"
        "split: {test_fraction: 0.5, seed: 0}\n"
    )
    return path


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_evaluate_exact_q_under_each_rule(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """By hand, N = 3. p0: all three answers differ with 6/27, gold at least twice with 7/27.
    p1: A, B, C once each with 3!·(1/2)(1/4)(1/4) = 6/32, A at least twice with 1/2.
    N = 2 ties only pairs (0.5 under both rules); N = 1 has no ties."""
    want = {
        "fractional": {"p0": [1 / 3, 1 / 3, 7 / 27 + 2 / 27], "p1": [0.5, 0.5, 0.5 + 2 / 32]},
        "half": {"p0": [1 / 3, 1 / 3, 7 / 27 + 3 / 27], "p1": [0.5, 0.5, 0.5 + 3 / 32]},
    }
    for rule, extra in (("fractional", ""), ("half", "tie_credit: half\n")):
        cfg = _config(in_tmp / f"{rule}.yaml", extra)
        rc, out, err = cli(capsys, "evaluate", str(cfg), "--split", "all", "--json")
        assert rc == 0, err
        q = json.loads(out)["q"][CTX]
        for p in ("p0", "p1"):
            assert q[p] == pytest.approx(want[rule][p], abs=1e-12), (rule, p)


def test_run_records_the_rule_and_keeps_old_run_ids(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = {}
    for label, extra in (
        ("default", ""),
        ("fractional", "tie_credit: fractional\n"),
        ("half", "tie_credit: half\n"),
    ):
        cfg = _config(in_tmp / f"{label}.yaml", extra)
        rc, out, err = cli(capsys, "run", str(cfg), "--no-report", "--run-dir", f"r-{label}")
        assert rc == 0, err
        assert ("(tie_credit: half)" in out.splitlines()[0]) == (label == "half")
        result = json.loads((in_tmp / f"r-{label}" / "result.json").read_text())
        assert result["config"]["tie_credit"] == ("half" if label == "half" else "fractional")
        ids[label] = result["run_id"]
        rc, out, err = cli(capsys, "estimate", str(cfg), "--json")
        assert rc == 0, err
    # the default rule, said or not, is the run of before the option; half is another run
    assert ids["default"] == ids["fractional"] != ids["half"]


@pytest.mark.parametrize(
    ("extra", "strategy", "needle"),
    [
        ("tie_credit: halves\n", "majority_vote", "tie_credit: must be 'fractional' or 'half'"),
        ("tie_credit: half\n", "best_of_n", "tie_credit: applies to majority_vote only"),
    ],
)
def test_a_bad_tie_credit_is_one_line_exit_2(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], extra: str, strategy: str, needle: str
) -> None:
    cfg = _config(in_tmp / "bad.yaml", extra, strategy)
    for command in ("run", "evaluate", "estimate"):
        rc, _, err = cli(capsys, command, str(cfg))
        assert rc == 2
        assert needle in err and "bad.yaml" in err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (in_tmp / "runs").exists()


def _bench(tmp: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, object]:
    pool = _pool(tmp / "ties.jsonl", n_queries=10)
    args = ["bench", "--env", str(pool), "--runs", "2", "--budgets", "300"]
    args += ["--algorithms", "psst,uniform", "--workers", "1", "--quiet", "--no-plot"]
    args += ["--cost-weights", "0"]  # one context, accuracy only
    rc, _, err = cli(capsys, *args, "--out", str(tmp), *extra)
    assert rc == 0, err
    data: dict[str, object] = json.loads((tmp / "ties.json").read_text())
    return data


def test_bench_tie_credit_half_is_recorded_and_changes_the_ground_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frac = _bench(tmp_path, capsys)
    half = _bench(tmp_path, capsys, "--tie-credit", "half")
    assert frac["protocol"]["tie_credit"] == "fractional"  # type: ignore[index]
    assert half["protocol"]["tie_credit"] == "half"  # type: ignore[index]
    assert "tie_credit='half'" in str(half["command"])
    assert "ties credited 0.5 (tie_credit half" in half["env"]["description"]  # type: ignore[index]
    assert "tie_credit" not in frac["env"]["description"]  # type: ignore[index]
    # every query is alike: the oracle is p1 @ N=3, 0.5 + 2/32 (fractional) or 0.5 + 3/32 (half)
    oracle = {r: d["summary"]["oracle_test"]["mean"] for r, d in (("f", frac), ("h", half))}  # type: ignore[index]
    assert oracle["f"] == pytest.approx(0.5 + 2 / 32, abs=1e-12)
    assert oracle["h"] == pytest.approx(0.5 + 3 / 32, abs=1e-12)


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        (None, "halves", "--tie-credit: 'halves' is not fractional or half"),
        ("synth-categorical", "half", "--tie-credit applies to majority-vote environments"),
    ],
)
def test_bench_bad_tie_credit_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], env: str | None, value: str, needle: str
) -> None:
    where = env or str(_pool(tmp_path / "ties.jsonl"))
    args = ["bench", "--env", where, "--runs", "2", "--quiet", "--out", str(tmp_path)]
    rc, _, err = cli(capsys, *args, "--tie-credit", value)
    assert rc == 2
    assert needle in err and err.count("\n") == 1
    assert not list(tmp_path.glob("*.json"))
