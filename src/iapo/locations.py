"""Where a run lives: its directory (always inside ``runs/`` unless told otherwise, its name made
a safe path component) and a storage URL it can resume from."""

from __future__ import annotations

import re
from pathlib import Path

from iapo.bank import sqlite_path
from iapo.errors import ConfigError

__all__ = ["check_storage", "default_run_dir", "slug"]


def slug(name: str) -> str:
    """``name`` as one safe path component: runs of anything but letters, digits, ``.``, ``_``
    and ``-`` become ``-``, leading dots and dashes go (no ``..``, no hidden files, no
    separators, no drive letters); "run" if nothing is left. ``"../../x"`` → ``"x"``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).lstrip(".-").rstrip("-")[:100]
    return safe or "run"


def default_run_dir(name: str) -> Path:
    """Where a run called ``name`` lives unless told otherwise: always inside ``runs/``."""
    return Path("runs") / slug(name)


def check_storage(url: str, source: str | None) -> None:
    """Refuse a storage URL that could never be resumed from: an in-memory SQLite database."""
    path = sqlite_path(url)
    if path is not None and str(path) in (":memory:", "", "."):
        raise ConfigError(
            f"{url!r} is an SQLite database in memory, gone when the run ends, so a run could "
            "never resume: use 'memory:' if that is what you want, or a file "
            "(sqlite:///bank.sqlite)",
            source=source,
            field="storage",
        )
