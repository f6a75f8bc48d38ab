"""CLI paper cuts (issue #10, items 17-21): one line instead of a traceback, a true cost bound in
``iapo estimate``, every config problem at once, readable output, and help for every argument.

The commands run in-process through ``iapo.cli.main`` on real files; ``serve`` binds a real
socket."""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
from pathlib import Path

import pytest
from conftest import MCQA, REPO
from live_helpers import script, write_config

import iapo
from iapo.cli import build_parser, main, walk_parsers
from iapo.setups import setup
from iapo.testing.fake_openai import FakeOpenAIServer

WRITING = REPO / "examples" / "writing-bon.yaml"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``iapo ARGS`` in-process: exit code, stdout, stderr."""
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc: int, err: str) -> str:
    """The stderr of a refused command: exactly one line, exit code 2; returns that line."""
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("iapo: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def mcqa_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished (small) run of the embedded MCQA config: its run folder."""
    run_dir = tmp_path_factory.mktemp("mcqa-run")
    assert main(["run", str(MCQA), "--budget", "1500", "--run-dir", str(run_dir), "--quiet",
                 "--no-report"]) == 0  # fmt: skip
    return run_dir


# -- item 17: one line instead of a traceback ----------------------------------------------------


def test_openai_extra_missing_is_refused_at_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # `import openai` fails as if not installed
    monkeypatch.setenv("IAPO_TEST_KEY", "local")
    cfg = write_config(tmp_path, "http://127.0.0.1:9/v1")
    with pytest.raises(Exception) as caught:
        setup(cfg)  # before any run record or backend exists
    assert "pip install 'iapo[openai]'" in str(caught.value)
    for command in ("run", "estimate"):
        line = one_line_error(*cli(capsys, command, str(cfg))[::2])
        assert str(cfg) in line and "backend.kind" in line and "iapo[openai]" in line
    assert not (tmp_path / "run").exists()  # no run directory, no bank, no interrupted run


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "no such file"),
        ('{"policy": {"c": ', "not valid JSON"),  # truncated
        ("[1, 2]", "not an iapo run result"),  # valid JSON, wrong shape
        ('{"policy": {}}', "not an iapo run result"),  # missing keys
    ],
)
@pytest.mark.parametrize("command", ["ask", "serve"])
def test_ask_and_serve_on_a_bad_result_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, content: str | None,
    needle: str,
) -> None:  # fmt: skip
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if content is not None:
        (run_dir / "result.json").write_text(content)
    args = ["ask", str(run_dir), "hi", "--context", "c"] if command == "ask" else ["serve",
            str(run_dir), "--port", "0"]  # fmt: skip
    line = one_line_error(*cli(capsys, *args)[::2])
    assert needle in line and "result.json" in line


def test_ask_on_a_result_with_malformed_entries(
    mcqa_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads((mcqa_run / "result.json").read_text())
    data["contexts"] = [{"nom": "x"}]
    (tmp_path / "result.json").write_text(json.dumps(data))
    line = one_line_error(*cli(capsys, "ask", str(tmp_path), "hi", "--context", "c")[::2])
    assert "malformed run result" in line and str(tmp_path / "result.json") in line


def test_serve_on_a_port_in_use(mcqa_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_line_error(*cli(capsys, "serve", str(mcqa_run), "--port", str(port))[::2])
    assert "--port" in line and "in use" in line


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--host", "no-such-host.invalid"], "--host"),
        (["--host", "8.8.8.8"], "--host"),  # not an address of this machine
        (["--port", "70000"], "--port"),
    ],
)
def test_serve_on_a_bad_host_or_port(
    mcqa_run: Path, capsys: pytest.CaptureFixture[str], args: list[str], field: str
) -> None:
    line = one_line_error(*cli(capsys, "serve", str(mcqa_run), *args)[::2])
    assert field in line


# -- item 18: "at most" is a true bound, "expected" an estimate -----------------------------------


@pytest.mark.parametrize("config", [MCQA, WRITING], ids=["mcqa", "writing-bon"])
def test_a_run_never_spends_more_than_estimate_says_at_most(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    rc, out, err = cli(capsys, "estimate", str(config), "--json")
    assert rc == 0, err
    pf = json.loads(out)
    rc, out, err = cli(capsys, "run", str(config), "--run-dir", str(tmp_path), "--json",
                       "--no-report")  # fmt: skip
    assert rc == 0, err
    spent = json.loads(out)["account"]["cost"]
    assert spent <= pf["max_cost"]
    assert pf["expected_cost"] <= pf["max_cost"]
    rc, text, err = cli(capsys, "estimate", str(config))
    assert "expected cost: " in text and "(an estimate" in text
    at_most = next(line for line in text.splitlines() if line.startswith("at most: "))
    assert float(at_most.split()[2].replace(",", "")) >= spent


def test_a_live_run_never_spends_more_than_estimate_says_at_most(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], secret: str
) -> None:
    with FakeOpenAIServer(script, api_key=secret) as srv:
        cfg = write_config(tmp_path, srv.base_url)
        rc, out, err = cli(capsys, "estimate", str(cfg), "--json")
        assert rc == 0, err
        pf = json.loads(out)
        assert pf["expected_cost"] is None and pf["max_cost"] is not None
        result = iapo.run(cfg)
    assert 0 < result.account["cost"] <= pf["max_cost"]
    assert pf["max_cost_per_completion"] >= 64  # max_tokens: 64 completion tokens


# -- item 19: every problem of a config at once; near misses named --------------------------------

SEVERAL = """
name: several
strategy: majority_vote
pool: builtin:mcqa-gpt35-comprehensive
n_maxx: 4
contexts:
  grid:
    cost_weigth: [0.0]
budget: -5
algorithm: {name: psst, estimatr: ustat}
"""


def test_a_config_with_several_problems_shows_each_on_its_own_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "several.yaml"
    cfg.write_text(SEVERAL)
    rc, out, err = cli(capsys, "run", str(cfg))
    assert rc == 2 and out == "" and "Traceback" not in err
    first, *rest = err.strip().splitlines()
    assert first.startswith(f"iapo: error: {cfg}: ") and "did you mean" in first
    lines = [first.removeprefix("iapo: error: "), *(r.strip() for r in rest)]
    assert all(line.startswith(f"{cfg}: ") for line in lines), err
    assert f"{cfg}: n_maxx: unknown key: did you mean n_max?" in lines
    assert f"{cfg}: contexts.grid.cost_weigth: unknown key: did you mean cost_weight?" in lines
    assert f"{cfg}: algorithm.estimatr: unknown key: did you mean estimator?" in lines
    assert any(line.startswith(f"{cfg}: budget: ") for line in lines)
    assert any(line.startswith(f"{cfg}: n_max: required") for line in lines)
    assert len(lines) == 5
    assert not (tmp_path / "runs").exists()


def test_a_misspelt_backend_key_is_named_and_a_far_one_is_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "b.yaml"
    base = SEVERAL.replace("n_maxx", "n_max").replace("cost_weigth", "cost_weight")
    base = base.replace("budget: -5", "budget: 500").replace("estimatr", "estimator")
    cfg.write_text(base + "splitt: {seed: 1}\n")
    line = one_line_error(*cli(capsys, "run", str(cfg))[::2])
    assert line.endswith(f"{cfg}: splitt: unknown key: did you mean split?")
    cfg.write_text(base + "zzzz: 1\n")
    line = one_line_error(*cli(capsys, "run", str(cfg))[::2])
    assert line.endswith("zzzz: unknown key: remove it or check its spelling")
    live = base.replace(
        "pool: builtin:mcqa-gpt35-comprehensive",
        "backend: {kind: openai, base_url: 'http://127.0.0.1:9/v1', model: m, modle: m}\n"
        "queries: q.jsonl\nprompts: [{id: a, system: s}]",
    )
    cfg.write_text(live)
    line = one_line_error(*cli(capsys, "run", str(cfg))[::2])
    assert line.endswith("backend.modle: unknown key for kind: openai: did you mean model?")


# -- item 20: readable output ----------------------------------------------------------------------

SCIENTIFIC = re.compile(r"\d[eE][+-]?\d")


def test_a_run_says_when_its_report_is_skipped_for_the_missing_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # the `report` extra is not installed
    rc, out, err = cli(capsys, "run", str(MCQA), "--budget", "1500", "--run-dir", str(tmp_path),
                       "--quiet")  # fmt: skip
    assert rc == 0, err
    assert "report: skipped" in err and "pip install 'iapo[report]'" in err
    assert f"iapo report {tmp_path}" in err
    assert not (tmp_path / "report").exists() and "report:" not in out
    rc, out, err = cli(capsys, "run", str(MCQA), "--budget", "1500", "--run-dir", str(tmp_path),
                       "--quiet", "--no-report")  # fmt: skip
    assert rc == 0 and "skipped" not in err  # asked for no report: nothing to say


def test_the_pulls_column_is_called_pulls(
    mcqa_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = cli(capsys, "show", str(mcqa_run))
    assert rc == 0, err
    header = next(line for line in out.splitlines() if line.startswith("context"))
    assert "pulls" in header.split() and "queries" not in header.split()
    template = (REPO / "src/iapo/report/templates/report.html.j2").read_text()
    assert '<th class="num">queries</th>' not in template and ">pulls</th>" in template


def test_show_lists_the_runs_that_share_a_name_and_takes_an_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    ids = []
    for budget in (1500, 1800):  # two configs, one name: two runs in runs/twin/bank.sqlite
        cfg = tmp_path / f"twin-{budget}.yaml"
        cfg.write_text(MCQA.read_text().replace("name: mcqa", "name: twin")
                       .replace("budget: 6000", f"budget: {budget}"))  # fmt: skip
        rc, out, err = cli(capsys, "run", str(cfg), "--json", "--no-report")
        assert rc == 0, err
        ids.append(json.loads(out)["run_id"])
    assert ids[0] != ids[1]
    for command in ("show", "report"):
        line = one_line_error(*cli(capsys, command, "twin")[::2])
        assert "2 runs are named 'twin'" in line and ids[0] in line and ids[1] in line
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", line) and "give its id" in line
    for run_id, budget in zip(ids, ("1,500", "1,800"), strict=True):
        rc, out, err = cli(capsys, "show", run_id)
        assert rc == 0, err
        assert f"run {run_id} (twin)" in out and f"of budget {budget} " in out


def test_people_read_numbers_without_scientific_notation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # writing-bon spends ~3.7 M tokens: once printed as 3.70305e+06
    rc, out, err = cli(capsys, "run", str(WRITING), "--run-dir", str(tmp_path), "--quiet",
                       "--no-report")  # fmt: skip
    assert rc == 0, err
    assert not SCIENTIFIC.search(out), out
    cost = re.search(r"cost ([\d,.]+) output_tokens", out)
    assert cost is not None and "," in cost.group(1)
    for args in (["show", str(tmp_path)], ["estimate", str(WRITING)], ["runs"]):
        rc, text, err = cli(capsys, *args)
        assert rc == 0, err
        assert not SCIENTIFIC.search(text), text


def test_one_held_out_query_is_singular(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "one.yaml"
    cfg.write_text(MCQA.read_text().replace("test_fraction: 0.2", "test_fraction: 0.01"))
    rc, out, err = cli(capsys, "run", str(cfg), "--budget", "1500", "--run-dir", str(tmp_path),
                       "--no-report")  # fmt: skip
    assert rc == 0, err
    assert "exact ACR on 1 held-out query: " in out
    rc, out, err = cli(capsys, "evaluate", str(cfg))
    assert rc == 0, err
    assert out.startswith("exact Q on test (1 query);")


# -- item 21: help for every argument, defaults shown ----------------------------------------------


def test_every_argument_of_every_command_has_help_and_shows_its_default() -> None:
    parser = build_parser()
    seen = 0
    for sub, action in walk_parsers(parser):
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        seen += 1
        name = f"{sub.prog} {'/'.join(action.option_strings) or action.dest}"
        assert action.help and action.help.strip() and action.help != argparse.SUPPRESS, name
        shown = sub.formatter_class(sub.prog)._get_help_string(action) % vars(action)
        assert " ".join(shown.split()[:2]) in " ".join(sub.format_help().split()), name
        if action.option_strings and action.default not in (None, False):
            assert re.search(rf"default:? {re.escape(str(action.default))}\b", shown), name
    assert seen > 60  # the walk reached every sub-command


def test_bench_quick_says_the_same_number_of_runs_everywhere() -> None:
    from iapo.bench._benchmark import QUICK_RUNS

    bench = next(sub for sub, a in walk_parsers(build_parser()) if sub.prog == "iapo bench")
    helps = {a.dest: a.help or "" for a in bench._actions}
    assert f"--quick: {QUICK_RUNS})" in helps["runs"]
    assert helps["quick"].startswith(f"{QUICK_RUNS} runs ")
    numbers = set(re.findall(r"(\d+) runs", " ".join(helps.values())))
    assert numbers <= {str(QUICK_RUNS)}, numbers
