"""The bad-input corpus: every broken config or pool gets one line naming the file, the field and
the fix, exit code 2, no traceback, and nothing written to an existing bank.

The cases run in-process through ``iapo.cli.main`` (what a shell sees of the exit code and of
stderr is checked once, in test_cli.py's subprocess tests)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MCQA

from iapo.cli import main

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = [
    (*parts, parts[0])[:4]
    for parts in (
        line.split("\t")
        for line in (CORPUS / "cases.tsv").read_text().splitlines()
        if line and not line.startswith("#")
    )
]


def test_corpus_is_large_and_complete() -> None:
    assert len(CASES) >= 100
    for case in CASES:
        assert (CORPUS / case[0]).exists(), case


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the corpus plus an existing bank with samples in it."""
    work = tmp_path_factory.mktemp("bad")
    shutil.copytree(CORPUS, work, dirs_exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        args = ["--storage", "sqlite:///existing.sqlite", "--run-dir", "ok-run"]
        assert main(["run", str(MCQA), *args, "--no-report", "--quiet", "--json"]) == 0
    assert (work / "existing.sqlite").stat().st_size > 0
    yield work


@pytest.mark.parametrize(("name", "command", "expected", "names"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(
    workdir: Path,
    name: str,
    command: str,
    expected: str,
    names: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(workdir)
    bank = workdir / "existing.sqlite"
    before = bank.read_bytes()
    if command == "run":
        args = ["run", name, "--no-report"]
        if b"storage" not in (workdir / name).read_bytes():
            args += ["--storage", "sqlite:///existing.sqlite"]
    else:
        args = ["pool", "validate", name] + (
            ["--require-gold"] if command == "validate-gold" else []
        )
    capsys.readouterr()
    rc = main(args)
    out, err = capsys.readouterr()
    assert rc == 2, (rc, err)
    assert out == ""
    assert err.startswith("iapo: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert expected in err, err
    assert names in err, err
    assert bank.read_bytes() == before
    assert not list(workdir.glob("runs/bad*/result.json"))
