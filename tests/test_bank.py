"""Opening sample banks by storage URL, and ``storage: memory:`` in a run."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path
from typing import Any

import pytest

from iapo.bank import MemoryBank, SQLiteBank, list_runs, open_bank, sqlite_path
from iapo.cli import main
from iapo.errors import BankError
from iapo.types import Sample

REPO = Path(__file__).resolve().parents[1]
MCQA = REPO / "examples" / "mcqa.yaml"


def test_sqlite_urls_and_plain_paths_open_one_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "bank.sqlite"
    with open_bank(f"sqlite:///{path}") as bank:
        assert isinstance(bank, SQLiteBank) and bank.url == f"sqlite:///{path}"
        bank.put("d", "p", "q", [(0, Sample(answer="A"))])
    assert path.is_file()
    with open_bank(str(path)) as same:
        assert same.url == f"sqlite:///{path}"
        assert same.get("d", [0]) == {0: Sample(answer="A")}
    assert sqlite_path("sqlite:///rel/bank.sqlite") == Path("rel/bank.sqlite")
    assert sqlite_path("sqlite:////abs/bank.sqlite") == Path("/abs/bank.sqlite")
    assert sqlite_path("bank.sqlite") == Path("bank.sqlite")
    assert sqlite_path("memory:") is None and sqlite_path("postgresql://h/db") is None


def test_memory_opens_a_new_empty_bank_each_time(tmp_path: Path) -> None:
    one, two = open_bank("memory:"), open_bank("memory:")
    assert isinstance(one, MemoryBank) and one.url == "memory:"
    one.put("d", "p", "q", [(0, Sample(answer="A"))])
    one.start_run("r", "r", 10, {})
    assert two.get("d", [0]) == {} and two.runs() == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "scheme"), [("mysql://localhost/iapo", "mysql"), ("memory://x", "memory")]
)
def test_unsupported_schemes_are_one_line_errors_naming_the_supported_ones(
    url: str, scheme: str
) -> None:
    with pytest.raises(BankError) as err:
        open_bank(url)
    msg = str(err.value)
    assert msg.startswith(f"storage: unsupported storage scheme {scheme!r}") and "\n" not in msg
    assert "sqlite:///" in msg and "memory:" in msg


def test_a_file_where_the_banks_folder_should_be_is_a_bank_error(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(BankError, match=r"file\.txt is a file"):
        open_bank(f"sqlite:///{tmp_path / 'file.txt' / 'bank.sqlite'}")


def test_a_run_with_memory_storage_draws_everything_and_writes_no_bank(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = []
    sqlite = f"sqlite:///{tmp_path / 'bank.sqlite'}"
    for name, storage in [("m1", "memory:"), ("m2", "memory:"), ("s", sqlite)]:
        run_dir = tmp_path / name
        args = ["run", str(MCQA), "--run-dir", str(run_dir), "--storage", storage, "--no-report"]
        assert main(args) == 0
        capsys.readouterr()
        assert [p.name for p in run_dir.iterdir()] == ["result.json"]
        results.append(json.loads((run_dir / "result.json").read_text()))
    m1, m2, s = results
    for res in (m1, m2):  # a memory bank starts empty every run
        assert res["account"]["cache_hits"] == 0
        assert res["account"]["drawn"] == res["account"]["completions"] > 0
    assert m1["policy"] == m2["policy"] == s["policy"]
    assert m1["account"] == s["account"]
    assert main(["runs", "--storage", "memory:"]) == 0
    assert capsys.readouterr().out == "no runs in memory:\n"
    assert list_runs("memory:") == []


def _open_and_close(path: str, barrier: Any, failures: Any) -> None:
    barrier.wait()
    try:
        open_bank(path).close()
    except BankError as exc:
        failures.put(str(exc))


def test_processes_opening_one_new_bank_at_once_all_succeed(tmp_path: Path) -> None:
    """Regression: SQLite answers SQLITE_BUSY at once (no busy handler) to a process that
    switches a new file to WAL while others do too; opening retries instead of failing with
    "database is locked" (it did in about 1 of 10 tries of 4 processes)."""
    ctx = mp.get_context("fork")
    failures = ctx.Queue()
    for trial in range(25):
        path = str(tmp_path / f"bank{trial}.sqlite")
        barrier = ctx.Barrier(4)
        procs = [
            ctx.Process(target=_open_and_close, args=(path, barrier, failures)) for _ in range(4)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert all(p.exitcode == 0 for p in procs)
    assert failures.empty(), failures.get()
