"""``benchmarks/check_reproducible.py``: a stored ``iapo bench`` result re-run on a slice, bit for
bit. The results are real ones, written by ``run_benchmark`` on a small pool file in tmp."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from iapo.bench import run_benchmark

REPO = Path(__file__).resolve().parents[1]
ALGOS = ["psst", "psst_paper", "uniform", "ucb", "epsilon_greedy", "triple_n1", "triple_nrandom"]
BUDGETS = [50, 200, 400, 800]
# Smallest feasible budget per algorithm (strict PSST needs 135 here; the others run at 50).
FIRST = {a: 200 if a == "psst" else 50 for a in ALGOS}


def _load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_reproducible", REPO / "benchmarks" / "check_reproducible.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_reproducible"] = module  # dataclasses and worker processes look it up
    spec.loader.exec_module(module)
    return module


checker = _load_checker()


def _pool_file(path: Path) -> Path:
    with path.open("w") as f:
        f.write('{"iapo_pool": 1}\n')  # a header: no warning line before the errors tested
        for i in range(3):
            for j in range(10):
                counts = {"A": 3 + i + j % 4, "B": 4 + (i * j) % 3, "C": 2}
                cell = {"prompt": f"p{i}", "query": f"q{j}", "gold": "A"}
                f.write(json.dumps(cell | {"answer_counts": counts, "cost": 100 * (i + 1)}) + "\n")
    return path


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two results on one pool file: the user's objective (recorded costs, cost weights 0 and
    0.001) and the default one; every algorithm together, every budget, 3 runs."""
    root = tmp_path_factory.mktemp("stored")
    pool = _pool_file(root / "mine.jsonl")
    out = {}
    for name, weights, normalize in (("custom", [0.0, 0.001], "none"), ("default", None, None)):
        res = run_benchmark(
            str(pool),
            algorithms=ALGOS,
            budgets=BUDGETS,
            runs=3,
            workers=1,
            cost_weights=weights,
            cost_normalize=normalize,
        )
        res.save(root / name, with_plot=False)
        out[name] = root / name / "mine.json"
    return out


def _copy(src: Path, dst: Path, change: Callable[[dict[str, Any]], None] | None = None) -> Path:
    data = json.loads(src.read_text())
    if change is not None:
        change(data)
    dst.write_text(json.dumps(data))
    return dst


def test_a_fresh_result_reproduces_on_every_slice(
    stored: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The stored tables ran every algorithm together at every budget (TRIPLE N=random reusing
    TRIPLE N=1's exploration, UCB and ε-greedy forking one long run); the checker re-runs each
    algorithm alone at two budgets: the cells are the same bits, so a cell depends only on its
    (seed, run, algorithm, budget)."""
    path = stored["custom"]
    assert checker.main([str(path), "--workers", "1"]) == 0
    line = capsys.readouterr().out.strip()
    # run 0, each algorithm at its smallest feasible budget and 800
    assert line.endswith(" s") and ": ok, 14 cells bit-identical (run 0 at " in line
    assert "; acr, found, spent)" in line
    assert checker.main([str(path), "--runs", "3", "--workers", "1"]) == 0
    assert ": ok, 42 cells bit-identical (runs 0-2 at " in capsys.readouterr().out
    assert checker.main([str(path), "--all", "--workers", "1"]) == 0
    cells = sum(len([b for b in BUDGETS if b >= FIRST[a]]) for a in ALGOS) * 3
    assert f": ok, {cells} cells bit-identical (every run and budget;" in capsys.readouterr().out


def test_max_budget_caps_the_slice(
    stored: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-budget B: each algorithm at its smallest feasible budget and the largest one up to
    B; an algorithm feasible only above B at its smallest feasible budget (strict PSST here)."""
    path = str(stored["custom"])
    assert checker.main([path, "--max-budget", "400", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert ": ok, 14 cells bit-identical (run 0 at " in out and "budget up to 400;" in out
    # 100: every algorithm but psst at 50 only; psst (first feasible at 200) at 200 only
    assert checker.main([path, "--max-budget", "100", "--workers", "1"]) == 0
    assert ": ok, 7 cells bit-identical" in capsys.readouterr().out
    assert checker.main([path, "--max-budget", "0", "--workers", "1"]) == 2
    assert "--max-budget 0: give at least 1" in capsys.readouterr().err


def test_each_environment_is_rebuilt_with_its_objective(
    stored: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Two results on one pool with different cost options, checked by two worker processes:
    both reproduce (the checker rebuilt each objective), one line each in the given order."""
    paths = [str(stored["default"]), str(stored["custom"])]
    assert checker.main([*paths, "--workers", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert all(ln.startswith(p + ": ok, 14 cells") for ln, p in zip(lines, paths, strict=True))
    custom = json.loads(stored["custom"].read_text())
    default = json.loads(stored["default"].read_text())
    assert custom["runs"][0]["oracle_test"] != default["runs"][0]["oracle_test"]


def _nudge_acr(data: dict[str, Any]) -> None:
    cell = data["runs"][0]["results"]["ucb"]["800"]
    cell["acr"] = float(np.nextafter(cell["acr"], np.inf))  # one unit in the last place


def test_one_ulp_in_a_stored_acr_is_a_mismatch(
    stored: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = json.loads(stored["custom"].read_text())["runs"][0]["results"]["ucb"]["800"]["acr"]
    path = _copy(stored["custom"], tmp_path / "mine.json", _nudge_acr)
    after = json.loads(path.read_text())["runs"][0]["results"]["ucb"]["800"]["acr"]
    assert after != before and abs(after - before) < 1e-15
    text = path.read_text()
    assert checker.main([str(path), "--workers", "1"]) == 1
    line = capsys.readouterr().out.strip()
    seconds = line.split(") in ")[1].split(" s; ")[0]
    assert line == (
        f"{path}: 1 of 14 cells mismatch (run 0 at each algorithm's smallest and largest "
        f"feasible budget; ucb 1/2) in {seconds} s; first: ucb, budget 800, run 0: acr stored "
        f"{after!r} now {before!r}"
    )
    assert path.read_text() == text  # the stored file is left as it was


@pytest.mark.parametrize(
    ("where", "field", "change"),
    [
        ("psst, budget 200, run 1", "spent", lambda d: _bump(d, 1, "psst", "200", "spent")),
        ("uniform, budget 50, run 1", "found", lambda d: _flip(d, 1, "uniform", "50")),
        ("(split), run 1", "test", lambda d: d["runs"][1]["test"].reverse()),
        ("triple_nrandom, budget 800, run 2", "cell", lambda d: _drop(d, 2)),
        ("uniform_v0", "label", lambda d: _rename(d, "uniform", "uniform_v0")),
    ],
)
def test_each_stored_field_is_compared(
    stored: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    where: str,
    field: str,
    change: Callable[[dict[str, Any]], None],
) -> None:
    path = _copy(stored["custom"], tmp_path / "mine.json", change)
    assert checker.main([str(path), "--runs", "3", "--workers", "1"]) == 1
    line = capsys.readouterr().out.strip()
    assert f"; first: {where}: {field} stored " in line, line
    # the default slice (run 0) does not see a change in runs 1-2: the CI slice is a sample
    if "run 0" not in where and field != "label":
        assert checker.main([str(path), "--workers", "1"]) == 0
        capsys.readouterr()


def _bump(data: dict[str, Any], run: int, label: str, budget: str, key: str) -> None:
    data["runs"][run]["results"][label][budget][key] += 1


def _flip(data: dict[str, Any], run: int, label: str, budget: str) -> None:
    cell = data["runs"][run]["results"][label][budget]
    cell["found"] = ("1" if cell["found"][0] == "0" else "0") + cell["found"][1:]


def _drop(data: dict[str, Any], run: int) -> None:
    del data["runs"][run]["results"]["triple_nrandom"]["800"]


def _rename(data: dict[str, Any], old: str, new: str) -> None:
    for algo in data["algorithms"]:
        if algo["label"] == old:
            algo["label"] = new
    for run in data["runs"]:
        run["results"][new] = run["results"].pop(old)


def test_an_environment_without_its_shared_data_is_skipped(
    stored: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shared folder without the pools the environment needs: a skip line, exit 0."""
    (tmp_path / "shared" / "data" / "pools").mkdir(parents=True)

    def on_game24(data: dict[str, Any]) -> None:
        data["env"]["name"] = "tot-game24"

    path = _copy(stored["custom"], tmp_path / "tot-game24.json", on_game24)
    args = [str(path), "--shared", str(tmp_path / "shared"), "--workers", "1"]
    assert checker.main(args) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{path}: skipped: environment 'tot-game24' needs the shared data")
    assert "--shared" in line and "\n" not in line


def test_other_json_files_in_the_folder_are_skipped_with_a_line(
    stored: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Named: one line, exit 2. Found by the folder's glob (the default): a skip line."""
    other = tmp_path / "engine.json"
    other.write_text(json.dumps({"environment": "x"}))
    assert checker.main([str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"check_reproducible: {other}: not an iapo bench result")
    assert "\n" not in err
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(other, docs / "engine.json")
    shutil.copy(stored["custom"], docs / "mine.json")
    monkeypatch.setattr(checker, "DOCS", docs)  # the folder read when no file is named
    assert checker.main(["--workers", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{docs / 'engine.json'}: skipped: not an iapo bench result")
    assert lines[1].startswith(f"{docs / 'mine.json'}: ok, 14 cells")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["missing.json"], "missing.json: not found: name a JSON file written by iapo bench"),
        (["bad.json"], "bad.json: cannot be read as JSON"),
        (["cut.json"], "cut.json: an incomplete iapo bench result (KeyError: 'run'): write it"),
        (["mine.json", "--runs", "0"], "--runs: 0 runs: give at least 1 (or --all)"),
        (["mine.json", "--envs", "tot-game24"], "--envs: no stored result on 'tot-game24': use"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    stored: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    says: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    shutil.copy(stored["custom"], tmp_path / "mine.json")
    _copy(stored["custom"], tmp_path / "cut.json", lambda d: d["runs"][0].pop("run"))
    text = {p.name: p.read_text() for p in tmp_path.glob("*.json")}
    assert checker.main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("check_reproducible: " + says), captured.err
    assert captured.err.count("\n") == 1
    assert {p.name: p.read_text() for p in tmp_path.glob("*.json")} == text  # left intact
