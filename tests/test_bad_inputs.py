"""The bad-input corpus: every broken config or pool gets one line naming the file, the field and
the fix, exit code 2, no traceback, and nothing written to an existing bank."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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
    assert len(CASES) >= 30
    for case in CASES:
        assert (CORPUS / case[0]).exists(), case


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the corpus plus an existing bank with samples in it."""
    work = tmp_path_factory.mktemp("bad")
    shutil.copytree(CORPUS, work, dirs_exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "iapo.cli",
            "run",
            str(REPO / "examples" / "mcqa.yaml"),
            "--storage",
            "sqlite:///existing.sqlite",
            "--run-dir",
            "ok-run",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    return work


@pytest.mark.parametrize(("name", "command", "expected", "names"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(workdir: Path, name: str, command: str, expected: str, names: str) -> None:
    bank = workdir / "existing.sqlite"
    before = bank.read_bytes()
    if command == "run":
        args = ["run", name]
        if "storage" not in (workdir / name).read_text():
            args += ["--storage", "sqlite:///existing.sqlite"]
    else:
        args = ["pool", "validate", name] + (
            ["--require-gold"] if command == "validate-gold" else []
        )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run(
        [sys.executable, "-m", "iapo.cli", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    err = out.stderr
    assert out.returncode == 2, (out.returncode, err)
    assert err.startswith("iapo: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert expected in err, err
    assert names in err, err
    assert bank.read_bytes() == before
    assert not list(workdir.glob("runs/bad*/result.json"))
