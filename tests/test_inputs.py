"""Inputs that the bad-input corpus cannot hold (FIFOs, CLI overrides, what a run writes where) and
the mechanisms behind the corpus: the safe YAML reader, declared algorithm parameters, the
secret scan, run-name slugs, CSV escaping and strict JSON.

Each test failed before its fix (see the hardening issue, items 11-16)."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import MCQA

import iapo
from iapo import algorithms
from iapo.cli import main
from iapo.config import MAX_BUDGET, load_config, parse_config
from iapo.errors import ConfigError, PoolError
from iapo.locations import default_run_dir, slug
from iapo.pools import load_pool
from iapo.queries import load_queries
from iapo.result import RunResult

REPO = Path(__file__).resolve().parents[1]
POOL_CONFIG = """name: {name}
strategy: majority_vote
pool: {pool}
n_max: 2
contexts: {{grid: {{cost_weight: [0.0, 0.5]}}}}
budget: {budget}
{extra}
"""


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line(err: str) -> str:
    assert err.startswith("iapo: error: ") and err.count("\n") == 1, err
    return err


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"not standard JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


# -- item 13: what is read ------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("what", ["config", "pool", "queries"])
def test_a_fifo_is_refused_without_opening_it_for_a_read(
    what: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A FIFO blocked the read forever (nobody writes to it); now it is refused at once. A writer
    thread unblocks the read after a while, so the unfixed code fails instead of hanging."""
    fifo = tmp_path / "input.fifo"
    os.mkfifo(fifo)
    if what == "config":
        args = ["run", str(fifo)]
    elif what == "pool":
        args = ["pool", "validate", str(fifo)]
    else:
        cfg = (REPO / "tests" / "bad_inputs" / "live-without-queries.yaml").read_text()
        path = tmp_path / "live.yaml"
        path.write_text(cfg + f"queries: {fifo}\n")
        args = ["run", str(path)]
    done = threading.Event()

    def unblock() -> None:  # only the unfixed code opens the FIFO for a blocking read
        if not done.wait(5.0):
            with open(fifo, "w") as fh:
                fh.write("")

    writer = threading.Thread(target=unblock, daemon=True)
    writer.start()
    try:
        rc, out, err = _run(args, capsys)
    finally:
        done.set()
        writer.join()
    assert rc == 2 and out == ""
    assert "named pipe (FIFO), not a file" in _one_line(err)


def test_device_and_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory, not a file"):
        load_config(tmp_path)
    with pytest.raises(PoolError, match="is a directory, not a file"):
        load_pool(tmp_path)
    if os.path.exists("/dev/zero"):  # reading it never ends: refused before reading
        with pytest.raises(ConfigError, match="character device"):
            load_queries("/dev/zero")


def test_yaml_duplicate_keys_are_errors_but_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    base = MCQA.read_text()
    path.write_text(base + "seed: 1\n")  # the example sets seed already
    with pytest.raises(ConfigError, match=r"c.yaml: seed: line \d+: duplicate key 'seed'"):
        load_config(path)
    # A merge key may be overridden by an explicit one: that is not a duplicate.
    path.write_text(
        base.replace("split:\n", "defaults: &d {test_fraction: 0.5, seed: 3}\nsplit:\n  <<: *d\n")
        .replace("budget: 6000", "budget: 600")
        .replace("defaults: &d", "x_defaults: &d")
    )
    with pytest.raises(ConfigError, match="x_defaults: unknown key"):
        load_config(path)  # read (merge + override fine); only the helper key is unknown


def test_every_shipped_config_still_loads() -> None:
    """The secret scan, bounds and YAML limits refuse none of the examples."""
    for path in sorted((REPO / "examples").glob("*.yaml")):
        load_config(path)


def test_non_utf8_names_the_encoding_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_bytes(b'{"id": "q1", "question": "ok"}\n{"id": "q2", "question": "caf\xe9"}\n')
    with pytest.raises(ConfigError, match=r"q.jsonl:2: queries: is not UTF-8 text.*LATIN1"):
        load_queries(path)
    path.write_text('{"id": "q1", "question": "ok"}\n', encoding="utf-16")
    with pytest.raises(ConfigError, match=r"looks like UTF-16.*iconv -f UTF-16 -t UTF-8"):
        load_queries(path)


# -- item 12: bounds ----------------------------------------------------------------------------
def test_cli_overrides_are_bounded_like_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    """``--budget`` and ``--seed`` bypassed the config's checks (a 10^18 budget hung)."""
    rc, _, err = _run(["run", str(MCQA), "--budget", str(10**18), "--storage", "memory:"], capsys)
    assert rc == 2 and f"{MAX_BUDGET:,}" in _one_line(err) and "budget" in err
    rc, _, err = _run(["estimate", str(MCQA), "--budget", str(10**18)], capsys)
    assert rc == 2 and "budget" in _one_line(err)
    rc, _, err = _run(["run", str(MCQA), "--seed", "-1", "--storage", "memory:"], capsys)
    assert rc == 2 and "--seed: seed: must be greater than or equal to 0" in _one_line(err)


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("epsilon_greedy", {"epsilon": 2.0}, "epsilon"),
        ("epsilon_greedy", {"epsilon": math.nan}, "epsilon"),
        ("ucb", {"c": math.inf}, "c"),
        ("ucb", {"c": -1.0}, "c"),
        ("psst_topk", {"rho": math.nan}, "rho"),
        ("psst_topk", {"rho": 1.0}, "rho"),
        ("psst_topk", {"k": 0}, "k"),
        ("psst_topk", {"k": 1.5}, "k"),
        ("triple", {"n": "all"}, "n"),
        ("uniform", {"c": 1.0}, "c"),
    ],
)
def test_algorithm_parameters_are_declared_and_checked(
    name: str, params: dict[str, Any], field: str
) -> None:
    problem = iapo.setup(MCQA).problem
    with pytest.raises(ValueError, match=rf"^params\.{field}: "):
        algorithms.create(name, problem, 6000, 0, **params)


def test_every_builtin_algorithm_declares_its_parameters() -> None:
    for name, entry in algorithms.registry().items():
        assert "Params" in vars(entry.cls), name
        assert entry.cls.validate_params(entry.all_params) == dict(entry.all_params)


# -- item 14: names and CSV cells -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../escaped", "/tmp/absolute", "..", "a/../../b", "C:\\x"])
def test_a_run_name_never_leaves_runs(name: str) -> None:
    rdir = default_run_dir(name)
    assert rdir.parent == Path("runs") and rdir.name == slug(name)
    assert rdir.name not in ("", ".", "..") and "/" not in rdir.name and "\\" not in rdir.name


def test_a_run_named_dotdot_writes_inside_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    cfg = work / "c.yaml"
    cfg.write_text(
        MCQA.read_text()
        .replace("name: mcqa", 'name: "../../escaped"')
        .replace("budget: 6000", "budget: 600")
        .replace("n_max: 10", "n_max: 2")
    )
    rc, _, err = _run(["run", str(cfg), "--no-report", "--quiet"], capsys)
    assert rc == 0, err
    assert (work / "runs" / "escaped" / "result.json").is_file()
    assert not (tmp_path / "escaped").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_report_csv_cells_that_look_like_formulas_stay_text(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from iapo.report._data import Report
    from iapo.report._html import write_csvs

    evil = ['=HYPERLINK("http://x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)"]
    path = tmp_path / "pool.jsonl"
    with path.open("w") as fh:
        for i, prompt in enumerate(evil):
            for q in range(6):
                counts = {"=1+1": 9 - 2 * i, "-wrong": 1 + 2 * i}
                cell = {"prompt": prompt, "query": f"q{q}", "gold": "=1+1", "cost": i + 1.0}
                fh.write(json.dumps({**cell, "answer_counts": counts}) + "\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        POOL_CONFIG.format(name="evil", pool=path, budget=200, extra="split: {test_fraction: 0.0}")
    )
    result = iapo.run(cfg, storage="memory:", run_dir=tmp_path / "run")
    files = write_csvs(Report(result.to_dict()), tmp_path)
    seen = 0
    for f in files.values():
        with f.open(newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                for cell in row:
                    assert not cell.startswith(("=", "+", "@", "-", "\t", "\r")) or _number(cell)
                    seen += any(e in cell for e in evil)
    assert seen > 0


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


# -- item 15: secrets ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("backend.params.api_key", "sk-abcdefghijklmnopqrstuvwx"),
        ("backend.params.headers.Authorization", "Bearer abcdefghijklmnop"),
        ("backend.base_url", "http://user:sk-secret@localhost:1/v1"),
        ("backend.api_key_env", "sk-proj-abcdefghijklmnopqrstuvwx"),
        ("backend.api_key_env", "my key"),
        ("scorers.helpful.judge.api_key", "hunter2"),
        ("scorers.helpful.judge.base_url", "https://u:p@judge.example/v1"),
    ],
)
def test_a_secret_is_refused_wherever_it_is(where: str, value: str) -> None:
    data: dict[str, Any] = {
        "strategy": "best_of_n",
        "objectives": ["helpful"],
        "backend": {"model": "m", "params": {"max_tokens": 8}},
        "queries": "q.jsonl",
        "prompts": [{"id": "a"}],
        "n_max": 2,
        "contexts": {"grid": {"cost_weight": [0]}},
        "budget": 40,
        "scorers": {"helpful": {"judge": {"model": "j", "rubric": "Rate it."}}},
    }
    node = data
    *parents, last = where.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    with pytest.raises(ConfigError) as info:
        parse_config(data, "c.yaml")
    message = str(info.value)
    assert message.startswith(f"c.yaml: {where}: "), message
    assert value not in message.replace("(got", "")  # the message does not repeat the secret
    assert "api_key_env" in message


# -- item 16: strict JSON -----------------------------------------------------------------------
def test_result_json_with_nan_is_strict_json(tmp_path: Path) -> None:
    """A result holding NaN (a sem of one observation, an empty evaluation) was refused by
    ``to_json`` with a traceback; it now writes null."""
    result = iapo.run(MCQA, budget=600, storage="memory:", run_dir=tmp_path / "run", write=False)
    d = result.to_dict()
    d["estimates"] = {
        c: [{**e, "sem": math.nan, "q": math.inf} for e in es] for c, es in d["estimates"].items()
    }
    d["evaluation"] = {"acr_test": np.float64("nan"), "n": np.int64(3)}
    text = RunResult.from_dict(d).to_json()
    back = _strict_json(text)
    first = next(iter(back["estimates"].values()))[0]
    assert first["sem"] is None and first["q"] is None
    assert back["evaluation"] == {"acr_test": None, "n": 3}


def test_show_json_of_a_result_file_with_nan_is_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = iapo.run(MCQA, budget=600, storage="memory:", run_dir=tmp_path / "run")
    path = tmp_path / "run" / "result.json"
    d = json.loads(path.read_text())
    ctx = next(iter(d["policy"]))
    d["policy"][ctx]["q"] = math.nan  # as Python's json writes it (an older iapo, a script)
    path.write_text(json.dumps(d))
    assert "NaN" in path.read_text()
    rc, out, err = _run(["show", str(path), "--json"], capsys)
    assert rc == 0, err
    assert _strict_json(out)["policy"][ctx]["q"] is None
    assert result.run_id == _strict_json(out)["id"]


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip("POSIX file types")
