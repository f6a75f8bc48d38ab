"""The ``report``, ``runs`` and ``show`` commands, and finding runs in sample banks."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from iapo.errors import InputError
from iapo.report._data import as_result_dict

__all__ = [
    "DEFAULT_BANKS",
    "best_arms",
    "find_run",
    "format_runs",
    "format_show",
    "list_runs",
    "register_cli",
]

#: Where ``iapo runs`` and ``iapo show`` look without ``--storage`` (each run's default bank).
DEFAULT_BANKS = "runs/*/bank.sqlite"


# -- finding runs ---------------------------------------------------------------------------------
def _bank_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    if "://" in url:
        return None  # open_bank names the unsupported scheme
    return Path(url)


def bank_urls(storage: str | None) -> list[str]:
    """``storage`` (which must exist: listing never creates a bank), or every default bank."""
    if storage:
        path = _bank_path(storage)
        if path is not None and not path.is_file():
            raise InputError(
                f"no sample bank at {path}: give the storage URL the run used "
                "(e.g. sqlite:///runs/NAME/bank.sqlite)",
                field="--storage",
            )
        return [storage]
    return [f"sqlite:///{p}" for p in sorted(Path().glob(DEFAULT_BANKS))]


def list_runs(storage: str | None = None) -> list[dict[str, Any]]:
    """Every run recorded in the bank at ``storage`` (default: every ``runs/*/bank.sqlite``),
    oldest first, each with the bank it is in under ``storage``."""
    from iapo.bank import open_bank

    out: list[dict[str, Any]] = []
    for url in bank_urls(storage):
        try:
            bank = open_bank(url)
        except InputError as exc:
            if storage:
                raise
            print(f"iapo: skipping {url}: {exc}", file=sys.stderr)
            continue
        try:
            for rec in bank.runs():
                out.append({**rec, "storage": url})
        finally:
            bank.close()
    out.sort(key=lambda r: r.get("created") or 0.0)
    return out


def _quiet_runs() -> list[dict[str, Any]]:
    """The default banks' runs, or none when they can't be read."""
    try:
        return list_runs(None)
    except InputError:
        return []


def _record_from_result(d: Mapping[str, Any], source: str) -> dict[str, Any]:
    acc = d.get("account", {})
    return {
        "id": d.get("run_id"),
        "name": d.get("name"),
        "status": "done",
        "created": None,
        "updated": None,
        "budget": acc.get("budget"),
        "spent": acc.get("completions"),
        "config": d.get("config"),
        "result": dict(d),
        "storage": d.get("storage"),
        "source": source,
    }


def _load_result_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read it ({exc.strerror})", source=str(path)) from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"not valid JSON (line {exc.lineno}): point at a run's result.json", source=str(path)
        ) from None
    return as_result_dict(data, source=str(path))


def find_run(ref: str, storage: str | None = None) -> dict[str, Any]:
    """A run record (``id, name, status, budget, spent, result, storage``) for ``ref``: a run
    folder or its ``result.json``; else a run id, a unique id prefix, or a run name (the most
    recently updated run of that name) in the bank(s)."""
    path = Path(ref)
    folder_without_result = False
    if path.exists():
        file = path / "result.json" if path.is_dir() else path
        if file.is_file():
            return _record_from_result(_load_result_file(file), str(file))
        folder_without_result = True
    runs = list_runs(storage) if storage or not folder_without_result else _quiet_runs()
    where = storage or f"the banks {DEFAULT_BANKS}"
    matches = [r for r in runs if r["id"] == ref]
    if not matches:
        matches = [r for r in runs if str(r["id"]).startswith(ref)]
        ids = sorted({str(r["id"]) for r in matches})
        if len(ids) > 1:
            raise InputError(f"run id prefix {ref!r} matches {', '.join(ids)}: give more of the id")
    if not matches:
        matches = [r for r in runs if r["name"] == ref]
    if not matches and folder_without_result:
        raise InputError(
            "no result.json in this folder: finish the run with `iapo run CONFIG`, "
            "or give a run id from `iapo runs`",
            source=str(path),
        )
    if not matches:
        hint = "list them with `iapo runs`" if runs else "no runs recorded there"
        raise InputError(
            f"no run {ref!r} in {where} and no such folder: give a run folder, id or name ({hint})"
        )
    return max(matches, key=lambda r: r.get("updated") or 0.0)


# -- formatting -----------------------------------------------------------------------------------
def _fmt(x: Any, digits: int = 4) -> str:
    return "—" if x is None else f"{float(x):.{digits}f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(out)


def best_arms(policy: Mapping[str, Mapping[str, Any]] | None, limit: int = 3) -> str:
    """The chosen arms, most frequent first: ``p01@8 ×5, p00@3 ×4, +2 more``."""
    if not policy:
        return "—"
    counts = Counter(f"{ch['prompt']}@{ch['n']}" for ch in policy.values())
    items = counts.most_common()
    parts = [a if c == 1 else f"{a} ×{c}" for a, c in items[:limit]]
    if len(items) > limit:
        parts.append(f"+{len(items) - limit} more")
    return ", ".join(parts)


def _when(t: float | None) -> str:
    return "—" if not t else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _used(rec: Mapping[str, Any]) -> str:
    spent, budget = rec.get("spent"), rec.get("budget")
    if spent is None or not budget:
        return "—"
    return f"{spent}/{budget} ({spent / budget:.0%})"


def format_runs(runs: Sequence[Mapping[str, Any]]) -> str:
    banks = {r["storage"] for r in runs}
    headers = ["id", "name", "status", "updated", "budget used", "best arms"]
    if len(banks) > 1:
        headers.append("bank")
    rows = []
    for r in runs:
        res = r.get("result") or {}
        row = [
            str(r["id"]),
            str(r["name"]),
            str(r["status"]),
            _when(r.get("updated")),
            _used(r),
            best_arms(res.get("policy")),
        ]
        if len(banks) > 1:
            row.append(str(r["storage"]))
        rows.append(row)
    return _table(headers, rows)


def policy_table(result: Mapping[str, Any]) -> str:
    ev = result.get("evaluation") or {}
    ev_ctx = ev.get("contexts") or {}
    headers = ["context", "chosen arm", "Q est.", "95% CI", "queries", "runner-up"]
    if ev_ctx:
        headers += ["Q held-out", "oracle arm"]
    rows = []
    for ctx, ch in result["policy"].items():
        lo, hi = (ch.get("ci95") or [None, None])[:2]
        ru = ch.get("runner_up")
        row = [
            ctx,
            f"{ch['prompt']} @ N={ch['n']}",
            _fmt(ch.get("q")),
            f"[{_fmt(lo)}, {_fmt(hi)}]",
            str(ch.get("observations", "—")),
            f"{ru['prompt']} @ N={ru['n']} ({_fmt(ru.get('q'))})" if ru else "—",
        ]
        if ev_ctx:
            e = ev_ctx.get(ctx) or {}
            o = e.get("oracle") or {}
            row += [
                _fmt(e.get("q_test")),
                f"{o['prompt']} @ N={o['n']} ({_fmt(o.get('q_test'))})" if o else "—",
            ]
        rows.append(row)
    return _table(headers, rows)


def format_show(rec: Mapping[str, Any]) -> str:
    res = rec["result"]
    acc = res.get("account", {})
    unit = (res.get("extra") or {}).get("cost_unit") or ""
    lines = [
        f"run {rec['id']} ({rec['name']}): {rec['status']} · {res.get('algorithm', '—')} / "
        f"{res.get('strategy', '—')} · seed {res.get('seed', '—')}",
        f"completions {acc.get('completions', '—')} of budget {acc.get('budget', '—')} "
        f"({acc.get('drawn', '—')} drawn new, {acc.get('cache_hits', '—')} from the bank); "
        f"cost {float(acc.get('cost', 0.0)):.6g} {unit}".rstrip(),
        "",
        policy_table(res),
    ]
    ev = res.get("evaluation")
    if ev:
        lines += [
            "",
            f"held-out ACR {ev['acr_test']:.4f} (oracle {ev['oracle_acr_test']:.4f})",
        ]
    return "\n".join(lines)


# -- commands -------------------------------------------------------------------------------------
def _cmd_report(args: argparse.Namespace) -> int:
    rec = find_run(args.run, args.storage)
    res = rec["result"]
    if not res:
        raise InputError(
            f"run {rec['id']} ({rec['name']}) is {rec['status']} and has no result yet: "
            "run its config again to finish it"
        )
    if args.out:
        out = Path(args.out)
    elif rec.get("source"):
        out = Path(rec["source"]).parent / "report"
    else:
        out = Path(res.get("run_dir") or f"runs/{rec['name']}") / "report"
    if not report_available():
        raise InputError("the HTML report needs matplotlib and jinja2: pip install 'iapo[report]'")
    from iapo.report._html import write_report

    page = write_report(res, out)
    if args.json:
        files = sorted(p.name for p in page.parent.iterdir() if p.suffix in (".png", ".csv"))
        print(json.dumps({"run_id": rec["id"], "html": str(page), "files": files}, indent=2))
    else:
        print(f"wrote {page}")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    runs = list_runs(args.storage)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": r["id"],
                        "name": r["name"],
                        "status": r["status"],
                        "created": r.get("created"),
                        "updated": r.get("updated"),
                        "budget": r.get("budget"),
                        "spent": r.get("spent"),
                        "storage": r["storage"],
                        "best_arms": {
                            c: {"prompt": ch["prompt"], "n": ch["n"]}
                            for c, ch in ((r.get("result") or {}).get("policy") or {}).items()
                        },
                    }
                    for r in runs
                ],
                indent=2,
            )
        )
    elif not runs:
        where = args.storage or f"{DEFAULT_BANKS} (give --storage URL for another bank)"
        print(f"no runs in {where}")
    else:
        print(format_runs(runs))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    rec = find_run(args.run, args.storage)
    if not rec.get("result"):
        raise InputError(
            f"run {rec['id']} ({rec['name']}) is {rec['status']} and has no result yet: "
            "run its config again to finish it"
        )
    if args.json:
        res = rec["result"]
        print(
            json.dumps(
                {
                    "id": rec["id"],
                    "name": rec["name"],
                    "status": rec["status"],
                    "budget": rec.get("budget"),
                    "spent": rec.get("spent"),
                    "storage": rec.get("storage"),
                    "policy": res["policy"],
                    "account": res.get("account"),
                    "evaluation": res.get("evaluation"),
                },
                indent=2,
            )
        )
    else:
        print(format_show(rec))
    return 0


def report_available() -> bool:
    """Whether the ``report`` extra (matplotlib, jinja2) is installed."""
    from importlib.util import find_spec

    return find_spec("matplotlib") is not None and find_spec("jinja2") is not None


def register_cli(sub: Any) -> None:
    """Add ``report``, ``runs`` and ``show`` to the ``iapo`` parser's subparsers."""
    storage_help = f"sample bank URL, e.g. sqlite:///bank.sqlite (default: every {DEFAULT_BANKS})"
    run_help = "a run folder (or its result.json), a run id or id prefix, or a run name"

    p = sub.add_parser(
        "report",
        help="write a run's HTML report (figures embedded), PNG figures and CSV tables",
        description="Write report.html, the figures (PNG) and the tables (CSV) of a finished "
        "run into RUN/report (or --out).",
    )
    p.add_argument("run", metavar="RUN", help=run_help)
    p.add_argument("--out", help="folder for the report (default: the run folder's report/)")
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("runs", help="list the runs in a sample bank: status, budget, best arms")
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_runs)

    p = sub.add_parser("show", help="print one run's policy table")
    p.add_argument("run", metavar="RUN", help=run_help)
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_show)
