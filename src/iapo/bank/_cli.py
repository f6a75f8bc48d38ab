"""The ``runs`` and ``show`` commands: the runs recorded in sample banks, and one run's policy."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from iapo.bank._postgres_url import mask_url
from iapo.bank._runs import DEFAULT_BANKS, find_run, finished_result, list_runs
from iapo.fmt import amount, num, strict_json, table

__all__ = [
    "RUN_HELP",
    "STORAGE_HELP",
    "best_arms",
    "format_runs",
    "format_show",
    "policy_table",
    "register_cli",
]

#: ``--storage`` help of the commands that find runs.
STORAGE_HELP = (
    "sample bank URL, e.g. sqlite:///bank.sqlite or postgresql://user@host/db "
    f"(default: every {DEFAULT_BANKS})"
)
#: ``RUN`` help of the commands that take one run (see :func:`~iapo.bank.find_run`).
RUN_HELP = "a run folder (or its result.json), a run id or id prefix, or a run name"


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
    return f"{amount(spent)}/{amount(budget)} ({spent / budget:.0%})"


def format_runs(runs: Sequence[Mapping[str, Any]]) -> str:
    """The ``iapo runs`` table: one row per run (and a bank column when they are in several)."""
    banks = {r["storage"] for r in runs}
    headers = ["id", "name", "status", "updated", "budget used", "best arms"]
    if len(banks) > 1:
        headers.append("bank")
    rows = []
    for r in runs:
        res = r.get("result") or {}
        row = [
            r["id"],
            r["name"],
            r["status"],
            _when(r.get("updated")),
            _used(r),
            best_arms(res.get("policy")),
        ]
        if len(banks) > 1:
            row.append(r["storage"])
        rows.append(row)
    return table(headers, rows)


def policy_table(result: Mapping[str, Any]) -> str:
    """A run result's policy: per context the chosen arm, its estimate and the runner-up (and
    the held-out values when the result has an evaluation)."""
    ev = result.get("evaluation") or {}
    ev_ctx = ev.get("contexts") or {}
    headers = ["context", "chosen arm", "Q est.", "95% CI", "pulls", "runner-up"]
    if ev_ctx:
        headers += ["Q held-out", "oracle arm"]
    rows = []
    for ctx, ch in result["policy"].items():
        lo, hi = (ch.get("ci95") or [None, None])[:2]
        ru = ch.get("runner_up")
        row = [
            ctx,
            f"{ch['prompt']} @ N={ch['n']}",
            num(ch.get("q")),
            f"[{num(lo)}, {num(hi)}]",
            amount(ch.get("observations")),
            f"{ru['prompt']} @ N={ru['n']} ({num(ru.get('q'))})" if ru else "—",
        ]
        if ev_ctx:
            e = ev_ctx.get(ctx) or {}
            o = e.get("oracle") or {}
            row += [
                num(e.get("q_test")),
                f"{o['prompt']} @ N={o['n']} ({num(o.get('q_test'))})" if o else "—",
            ]
        rows.append(row)
    return table(headers, rows)


def format_show(rec: Mapping[str, Any]) -> str:
    """The ``iapo show`` text of a finished run record: a summary, then its policy table."""
    res = rec["result"]
    acc = res.get("account", {})
    unit = (res.get("extra") or {}).get("cost_unit") or ""
    lines = [
        f"run {rec['id']} ({rec['name']}): {rec['status']} · {res.get('algorithm', '—')} / "
        f"{res.get('strategy', '—')} · seed {res.get('seed', '—')}",
        f"completions {amount(acc.get('completions'))} of budget {amount(acc.get('budget'))} "
        f"({amount(acc.get('drawn'))} drawn new, {amount(acc.get('cache_hits'))} from the bank); "
        f"cost {amount(acc.get('cost', 0.0))} {unit}".rstrip(),
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


def _cmd_runs(args: argparse.Namespace) -> int:
    runs = list_runs(args.storage)
    if args.json:
        print(
            strict_json(
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
        where = mask_url(args.storage or "") or (
            f"{DEFAULT_BANKS} (give --storage URL for another bank)"
        )
        print(f"no runs in {where}")
    else:
        print(format_runs(runs))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    rec = find_run(args.run, args.storage)
    res = finished_result(rec)
    if args.json:
        print(
            strict_json(
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


def register_cli(sub: Any) -> None:
    """Add ``runs`` and ``show`` to the ``iapo`` parser's subparsers."""
    p = sub.add_parser("runs", help="list the runs in a sample bank: status, budget, best arms")
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_runs)

    p = sub.add_parser("show", help="print one run's policy table")
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_show)
