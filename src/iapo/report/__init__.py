"""Reports on runs: a self-contained HTML page with figures, PNGs and CSVs; the ``report``
command (``runs`` and ``show`` are :mod:`iapo.bank`'s).

Importing this package is cheap: matplotlib and jinja2 load only when a report is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iapo.errors import InputError
from iapo.report._cli import PIP_REPORT, register_cli, report_available

__all__ = ["PIP_REPORT", "register_cli", "report_available", "write_report"]


def write_report(result: Any, out_dir: str | Path) -> Path:
    """Write ``report.html`` (figures embedded), the figures as PNG and the tables as CSV for a
    run's result (a :class:`~iapo.RunResult` or its ``to_dict()``) into ``out_dir``.

    Returns the path of ``report.html``. Needs the ``report`` extra (matplotlib, jinja2): without
    it, raises :class:`~iapo.errors.InputError` (check :func:`report_available` first to skip).
    """
    if not report_available():
        raise InputError(f"the HTML report needs matplotlib and jinja2: {PIP_REPORT}")
    from iapo.report._html import write_report as _write

    return _write(result, out_dir)
