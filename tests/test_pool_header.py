"""A pool file without a header line is read with what its cells imply, and says so: one warning
line on stderr naming the file and what was inferred, the same words in the pool's description
(and so in ``iapo bench``'s environment description). A malformed header stays an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iapo.cli import main
from iapo.pools import load_pool


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _write(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def _compact(p: str, q: str) -> dict[str, object]:
    return {"prompt": p, "query": q, "gold": "A", "answer_counts": {"A": 3, "B": 2}, "cost": 2}


def _full(p: str, q: str) -> dict[str, object]:
    sample = {"answer": "A", "scores": {"helpful": 0.5}, "cost": 1}
    return {"prompt": p, "query": q, "gold": "A", "samples": [sample, sample]}


def _grid(cell: object, n_queries: int = 10) -> list[object]:
    assert callable(cell)
    return [cell(p, f"q{j}") for p in ("p0", "p1") for j in range(n_queries)]


@pytest.mark.parametrize(
    ("cells", "inferred"),
    [
        (_grid(_compact), "objectives ['accuracy'], cost unit 'unit', compact form"),
        (_grid(_full), "objectives ['helpful'], cost unit 'unit', full form"),
        (
            [_full("p0", "q0"), _compact("p1", "q0")],
            "objectives ['helpful'], cost unit 'unit', full and compact forms",
        ),
    ],
)
def test_no_header_warns_once_and_describes_what_was_inferred(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cells: list[object], inferred: str
) -> None:
    path = _write(tmp_path / "bare.jsonl", cells)
    rc, out, err = cli(capsys, "pool", "validate", str(path))
    assert rc == 0 and "ok" in out
    assert err.count("\n") == 1
    assert err.startswith(f"iapo: warning: {path}: no header line: inferred {inferred}; ")
    assert '"iapo_pool": 1' in err  # the fix: the header line to add
    pool = load_pool(path, quiet=True)
    assert pool.meta["description"] == f"no header line: inferred {inferred}"
    assert capsys.readouterr().err == ""  # quiet: the description only


def test_a_header_line_means_no_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = {"iapo_pool": 1, "cost_unit": "calls", "meta": {"description": "mine"}}
    path = _write(tmp_path / "headed.jsonl", [header, *_grid(_compact)])
    rc, _, err = cli(capsys, "pool", "validate", str(path))
    assert rc == 0 and err == ""
    assert dict(load_pool(path).meta) == {"description": "mine"}


def test_bench_describes_a_pool_without_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: the environment was described as "pool file bare.jsonl: " and nothing more."""
    path = _write(tmp_path / "bare.jsonl", _grid(_compact))
    args = ["bench", "--env", str(path), "--runs", "2", "--budgets", "200", "--algorithms"]
    args += ["psst", "--workers", "1", "--quiet", "--no-plot", "--out", str(tmp_path)]
    rc, _, err = cli(capsys, *args)
    assert rc == 0, err
    assert err.count("no header line") == 1 and "bare.jsonl" in err
    env = json.loads((tmp_path / "bare.json").read_text())["env"]
    assert env["description"] == (
        "pool file bare.jsonl: no header line: inferred objectives ['accuracy'], "
        "cost unit 'unit', compact form"
    )


@pytest.mark.parametrize(
    ("first", "needle"),
    [
        ({"iapo_pool": 1, "objectives": "helpful"}, "objectives"),
        ({"iapo_pool": 1, "cost_units": "calls"}, "cost_units"),
        ('{"iapo_pool": 1, "cost_unit": ', "bare.jsonl:1"),  # not JSON: line 1 named
    ],
)
def test_a_malformed_header_stays_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], first: object, needle: str
) -> None:
    path = _write(tmp_path / "bare.jsonl", [first, *_grid(_compact)])
    rc, _, err = cli(capsys, "pool", "validate", str(path))
    assert rc == 2
    assert needle in err and "bare.jsonl" in err
    assert err.count("\n") == 1 and "warning" not in err
