"""The progress bar: drawn on a terminal, silent when piped or quiet."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from iapo.progress import make_progress
from iapo.study import Account

REPO = Path(__file__).resolve().parents[1]


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _spend(update: object, rounds: int = 3, per_round: int = 200) -> Account:
    acc = Account(budget=1000)
    for r in range(1, rounds + 1):
        acc.completions += per_round
        acc.cost += 12.5
        update(acc, r)  # type: ignore[operator]
    return acc


def test_silent_when_stderr_is_not_a_terminal(capfd: pytest.CaptureFixture[str]) -> None:
    assert not sys.stderr.isatty()
    with make_progress(1000, quiet=False) as update:
        _spend(update)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_quiet_is_silent_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    with make_progress(1000, quiet=True) as update:
        _spend(update)
    assert tty.getvalue() == ""


def test_draws_round_completions_cost_and_eta_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setenv("COLUMNS", "140")
    with make_progress(1000, quiet=False, cost_unit="output_tokens") as update:
        _spend(update)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", tty.getvalue())  # drop colours, cursor moves
    assert "round 3" in text
    assert "600/1000 completions" in text
    assert "cost 37.5 output_tokens" in text
    assert "ETA" in text


def test_given_console_and_overspend_are_capped() -> None:
    buf = io.StringIO()
    con = Console(file=buf, force_terminal=True, width=140, color_system=None)
    with make_progress(500, console=con) as update:
        _spend(update, rounds=2, per_round=300)  # 600 > budget: shown as done, not past it
    text = buf.getvalue()
    assert "round 2" in text and "500/500 completions" in text
    assert "600/500" not in text


def test_piped_cli_run_prints_no_progress(tmp_path: Path) -> None:
    """A subprocess whose stderr is a pipe: the bar must stay out of it."""
    code = (
        "from iapo.progress import make_progress\n"
        "from iapo.study import Account\n"
        "a = Account(10)\n"
        "with make_progress(10, quiet=False) as up:\n"
        "    a.completions = 5\n"
        "    up(a, 1)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout == "" and out.stderr == ""
