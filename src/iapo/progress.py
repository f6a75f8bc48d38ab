"""A progress bar for long runs: rounds, completions done / budget, cost so far, ETA.

It draws on stderr only when stderr is a terminal and ``quiet`` is off; otherwise the callback it
yields does nothing, so piped or scripted runs (``--json``) stay clean.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from iapo.fmt import amount

if TYPE_CHECKING:
    from rich.console import Console

    from iapo.study import Account

__all__ = ["ProgressCallback", "make_progress"]

#: Called after each round (batch) with the account so far and the round number.
ProgressCallback = Callable[["Account", int], None]


def _silent(account: Account, round_no: int) -> None:
    """The callback when there is nothing to draw on."""


def _stderr_is_tty() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # closed or detached stream
        return False


@contextmanager
def make_progress(
    budget: int,
    *,
    quiet: bool = False,
    cost_unit: str = "",
    console: Console | None = None,
) -> Iterator[ProgressCallback]:
    """A context manager yielding ``update(account, round_no)`` for :class:`~iapo.study.Study`'s
    ``progress`` hook. It shows the round, completions done out of ``budget``, the cost so far
    (in ``cost_unit``), elapsed time and the ETA.

    Silent (the callback does nothing, nothing is written) when ``quiet`` or when stderr is not a
    terminal. ``console`` draws on that rich console instead of stderr (tests, embedding).
    """
    if quiet or (console is None and not _stderr_is_tty()):
        yield _silent
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    con = console if console is not None else Console(stderr=True)
    unit = f" {cost_unit}" if cost_unit else ""
    bar = Progress(
        TextColumn("[bold]round {task.fields[round]}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("completions"),
        TextColumn("· cost {task.fields[cost]}" + unit.replace("[", r"\[")),
        TextColumn("·"),
        TimeElapsedColumn(),
        TextColumn("· ETA"),
        TimeRemainingColumn(),
        console=con,
        transient=False,
    )
    with bar:
        task = bar.add_task("run", total=max(budget, 1), round=0, cost="0")

        def update(account: Account, round_no: int) -> None:
            bar.update(
                task,
                completed=min(account.completions, max(budget, 1)),
                round=round_no,
                cost=amount(account.cost, sig=4),
            )

        yield update
