"""The ``report`` command: a finished run's HTML report, figures and tables."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from iapo.bank import RUN_HELP, STORAGE_HELP, find_run, finished_result
from iapo.errors import InputError
from iapo.fmt import strict_json
from iapo.locations import default_run_dir

__all__ = ["PIP_REPORT", "register_cli", "report_available"]

#: The install line of the ``report`` extra.
PIP_REPORT = "pip install 'iapo[report]'"


def _cmd_report(args: argparse.Namespace) -> int:
    rec = find_run(args.run, args.storage)
    res = finished_result(rec)
    if args.out:
        out = Path(args.out)
    elif rec.get("source"):
        out = Path(rec["source"]).parent / "report"
    else:
        out = Path(res.get("run_dir") or default_run_dir(rec["name"])) / "report"
    if not report_available():
        raise InputError(f"the HTML report needs matplotlib and jinja2: {PIP_REPORT}")
    from iapo.report._html import write_report

    page = write_report(res, out)
    if args.json:
        files = sorted(p.name for p in page.parent.iterdir() if p.suffix in (".png", ".csv"))
        print(strict_json({"run_id": rec["id"], "html": str(page), "files": files}, indent=2))
    else:
        print(f"wrote {page}")
    return 0


def report_available() -> bool:
    """Whether the ``report`` extra (matplotlib, jinja2) is installed."""
    from importlib.util import find_spec

    return find_spec("matplotlib") is not None and find_spec("jinja2") is not None


def register_cli(sub: Any) -> None:
    """Add ``report`` to the ``iapo`` parser's subparsers."""
    p = sub.add_parser(
        "report",
        help="write a run's HTML report (figures embedded), PNG figures and CSV tables",
        description="Write report.html, the figures (PNG) and the tables (CSV) of a finished "
        "run into RUN/report (or --out).",
    )
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument("--out", help="folder for the report (default: the run folder's report/)")
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_report)
