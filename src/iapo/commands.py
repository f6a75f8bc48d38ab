"""The core commands: ``run``, ``estimate``, ``evaluate``, ``pool``, ``ask`` and ``serve``.

They only parse arguments and format what the library returns.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from iapo import pools
from iapo.bank import mask_url
from iapo.config import parse_config
from iapo.distributed import format_status
from iapo.evaluation import Evaluation
from iapo.fmt import amount, count, num, strict_json, table
from iapo.result import RunResult
from iapo.runner import evaluate, preflight, run
from iapo.setups import setup
from iapo.study import DataChangedWarning

__all__ = ["format_evaluation", "format_preflight", "format_result", "register_cli"]


def _rule(arm: dict[str, Any]) -> str:
    """`` ~RULE/bB`` for an adaptive arm's entry (issue #15), nothing for a fixed one."""
    return f" ~{arm['adaptive']}" if arm.get("adaptive") else ""


def format_result(result: RunResult) -> str:
    rows = []
    for ctx, ch in result.policy.items():
        lo, hi = ch["ci95"]
        ru = ch.get("runner_up")
        rows.append(
            [
                ctx,
                f"{ch['prompt']} @ N={ch['n']}{_rule(ch)}",
                num(ch["q"]),
                f"[{num(lo)}, {num(hi)}]",
                f"{ru['prompt']} @ N={ru['n']}{_rule(ru)} ({num(ru['q'])})" if ru else "—",
            ]
        )
    acc = result.account
    ties = " (tie_credit: half)" if result.config.get("tie_credit") == "half" else ""
    lines = [
        f"run {result.run_id} ({result.name}): {result.algorithm} / {result.strategy}{ties}, "
        f"seed {result.seed}",
        table(["context", "chosen arm", "Q est.", "95% CI", "runner-up"], rows),
        "",
        f"completions: {amount(acc['completions'])} of budget {amount(acc['budget'])} "
        f"({amount(acc['drawn'])} drawn new, {amount(acc['cache_hits'])} from the bank); "
        f"cost {amount(acc['cost'])} {result.extra.get('cost_unit', '')}".rstrip(),
    ]
    over = int(acc["completions"]) - int(acc["budget"])
    if over > 0:
        lines.append(
            f"overspent: {amount(over)} completions more than the budget "
            f"({acc['completions'] / max(int(acc['budget']), 1):.1f}× the budget; "
            f"{result.algorithm} may overspend)"
        )
    ev = result.evaluation
    if ev:
        lines.append(
            f"exact ACR on {count(int(result.extra.get('test_queries') or 0), 'held-out query')}: "
            f"{ev['acr_test']:.4f} (oracle {ev['oracle_acr_test']:.4f})"
        )
    for note in ("stopped", "data_changed"):
        if result.extra.get(note):
            lines.append(f"note: {result.extra[note]}")
    if acc.get("anomalies"):
        seen = ", ".join(f"{k} {v}" for k, v in sorted(acc["anomalies"].items()))
        lines.append(
            f"warning: the endpoint misbehaved ({seen}); its reported usage is counted, "
            "unusable usage is costed at the worst case"
        )
    lines.append(f"result: {Path(result.run_dir) / 'result.json'}")
    return "\n".join(lines)


def format_evaluation(ev: Evaluation) -> str:
    out = [f"exact Q on {ev.queries}; rows: prompt, columns: N"]
    lay = ev.layout  # adaptive arms (issue #15): columns N=k~RULE/bB after the fixed ones
    cols = [k for k in range(ev.q.shape[2]) if lay.valid[k]]
    heads = [
        f"N={lay.sizes[k]}" + (f"~{a}" if (a := lay.arm("", k).adaptive) else "") for k in cols
    ]
    opt = ev.optimal()
    for ci, c in enumerate(ev.contexts):
        best = opt[c.name]
        extra = f" ~{best.adaptive}" if best.adaptive else ""
        out.append(f"\ncontext {c.name}  (optimal: {best.prompt} @ N={best.n}{extra})")
        rows = []
        for pi, p in enumerate(ev.prompts):
            cells = []
            for k in cols:
                mark = "*" if lay.arm(p, k) == best else ""
                cells.append(f"{ev.q[ci, pi, k]:.4f}{mark}")
            rows.append([p, *cells])
        out.append(table(["prompt", *heads], rows))
    dec = ev.deceiving()
    out.append("")
    if not dec:
        out.append(
            "deceiving prompts: none (the best prompt at N=1 is the optimal prompt "
            "in every context)"
        )
    else:
        out.append("deceiving prompts (best at N=1, not optimal at the context's optimal N):")
        for d in dec:
            out.append(
                f"  {d['context']}: {d['deceiving_prompt']} leads at N=1 "
                f"({d['n1']['deceiving']:.4f} vs {d['n1']['optimal']:.4f} for "
                f"{d['optimal_prompt']}), but at N={d['optimal_n']} it scores "
                f"{d['at_optimal_n']['deceiving']:.4f} vs {d['at_optimal_n']['optimal']:.4f}; "
                f"its own best is {d['deceiving_best']['q']:.4f} at N={d['deceiving_best']['n']}"
            )
    return "\n".join(out)


def format_preflight(pf: dict[str, Any]) -> str:
    """The ``iapo estimate`` text: the dry run's schedule, its expected cost (an estimate), and
    the true upper bound on what the run can spend ("at most")."""
    unit = pf.get("cost_unit") or ""

    def cost(x: float | None) -> str:
        return "?" if x is None else amount(x)

    def sizes(r: dict[str, Any]) -> str:
        lo, hi = r["n_min"], r["n_max"]
        return str(hi) if lo == hi else f"{lo}-{hi}"

    rows = [
        [
            str(r["round"]),
            amount(r["prompts"]),
            sizes(r),
            amount(r["queries"]),
            amount(r["pulls"]),
            amount(r["completions"]),
            cost(r["expected_cost"]),
        ]
        for r in pf["rounds"]
    ]
    left = pf["budget"] - pf["completions"]
    spare = (
        f"{amount(left)} of the budget left unspent"
        if left >= 0
        else f"{amount(-left)} over the budget: {pf['algorithm']} may overspend"
    )
    lines = [
        f"{pf['algorithm']}: {pf['arms']} arms × {count(pf['contexts'], 'context')}, "
        f"budget {amount(pf['budget'])} completions (smallest that works: "
        f"{amount(pf['min_budget'])})",
        *([f"schedule: {pf['schedule']}"] if pf.get("schedule") else []),
        table(
            [
                "round",
                "prompts",
                "pull size",
                "queries",
                "pulls",
                "completions",
                f"expected cost ({unit})",
            ],
            rows,
        ),
        f"total (dry run): {amount(pf['completions'])} completions ({spare}; later rounds "
        "depend on which arms survive)",
    ]
    if pf.get("expected_cost") is not None:
        lines.append(
            f"expected cost: {amount(pf['expected_cost'])} {unit} (an estimate: the dry run "
            "at the pool's mean costs)"
        )
    else:
        lines.append("expected cost: unknown before the endpoint answers (a live backend)")
    bound, worst, cap = pf.get("max_cost"), pf.get("max_cost_per_completion"), pf.get("cost_cap")
    most = pf.get("max_completions", pf["budget"])
    if bound is None:
        lines.append("at most: unbounded (set backend.params.max_tokens to bound the cost)")
    elif cap is not None and (worst is None or bound < most * worst):
        lines.append(f"at most: {amount(math.ceil(bound))} {unit} (cost.cap)")
    else:
        lines.append(
            f"at most: {amount(math.ceil(bound))} {unit} ("
            + ("the budget" if most == pf["budget"] else f"{amount(most)} completions")
            + f" × the costliest completion, {amount(worst)})"
        )
    return "\n".join(lines)


def _cmd_run(args: argparse.Namespace) -> int:
    s = setup(Path(args.config), run_dir=args.run_dir, storage=args.storage)
    changes: dict[str, Any] = {}
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.distributed:
        changes["execution"] = {**s.config.execution.model_dump(), "mode": "distributed"}
    if changes:
        seeded = parse_config(
            {**s.config.model_dump(), **changes}, "--seed" if "seed" in changes else "--distributed"
        )
        s = setup(
            seeded,
            config_path=s.config_path,
            run_dir=args.run_dir,
            storage=args.storage,
        )
    from iapo.progress import make_progress
    from iapo.report import PIP_REPORT, report_available, write_report

    budget = args.budget if args.budget is not None else s.config.budget
    monitor = None
    if s.config.execution.mode == "distributed" and not (args.quiet or args.json):

        def monitor(counts: Mapping[str, int], workers: Sequence[Mapping[str, Any]]) -> None:
            print(f"distributed: {format_status(counts, workers)}", file=sys.stderr, flush=True)

    try:
        with (
            make_progress(budget, quiet=args.quiet or args.json, cost_unit=s.cost_unit) as bar,
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore", DataChangedWarning)  # said as a note with the result
            result = run(s, budget=args.budget, progress=bar, monitor=monitor)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: every completion drawn so far is in the bank ({mask_url(s.storage)}); "
            f"run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    page = None
    if not args.no_report and report_available():
        page = write_report(result, Path(result.run_dir) / "report")
    elif not args.no_report:
        print(
            f"report: skipped: the HTML report needs matplotlib and jinja2: {PIP_REPORT}, "
            f"then `iapo report {result.run_dir}`",
            file=sys.stderr,
        )
    if args.json:
        print(result.to_json())
    else:
        print(format_result(result))
        if page is not None:
            print(f"report: {page}")
    return 0


def _cmd_estimate(args: argparse.Namespace) -> int:
    pf = preflight(Path(args.config), budget=args.budget)
    print(strict_json(pf, indent=2) if args.json else format_preflight(pf))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    ev = evaluate(Path(args.config), split=args.split)
    print(strict_json(ev.to_dict(), indent=2) if args.json else format_evaluation(ev))
    return 0


def _cmd_pool_validate(args: argparse.Namespace) -> int:
    pool = pools.load_pool(args.file, require_gold=args.require_gold)
    print(
        f"{args.file}: ok: {len(pool.prompts)} prompts × {len(pool.queries)} queries, "
        f"objectives {list(pool.objectives)}, cost unit {pool.cost_unit}"
    )
    return 0


def _cmd_pool_import(args: argparse.Namespace) -> int:
    if args.source == "renze":
        pool = pools.import_renze(
            args.path,
            model=args.model,
            exam=args.exam,
            temperature=args.temperature,
            study=None,
            prompts=args.prompts or None,
        )
    elif args.source == "tot-text":
        pool = pools.import_tot_text(args.path)
    else:
        pool = pools.import_tot_game24(args.path)
    pools.dump_pool(pool, args.out)
    print(f"wrote {args.out}: {len(pool.prompts)} prompts × {len(pool.queries)} queries")
    return 0


def _cmd_ask(args: argparse.Namespace) -> int:
    from iapo.deploy import Policy

    policy = Policy.load(args.result)
    ans = policy.ask(args.question, args.context)
    if args.json:
        print(strict_json(ans.to_dict(), indent=2))
    else:
        print(ans.text or "")
        arm = f"{ans.arm.prompt} @ N={ans.arm.n}"
        if ans.arm.adaptive:  # an adaptive arm: up to N, stopped by its rule
            arm = (
                f"{ans.arm.prompt} @ N≤{ans.arm.n} ({ans.arm.adaptive}: {ans.samples_drawn} drawn)"
            )
        print(
            f"\n[{ans.context}: {arm}; answer {ans.answer!r}; cost {amount(ans.cost)}]",
            file=sys.stderr,
        )
    return 0


def register_cli(sub: Any) -> None:
    """Add the core commands to the ``iapo`` argument parser's subparsers."""

    def cfg(p: argparse.ArgumentParser) -> None:
        p.add_argument("config", help="run configuration (YAML)")
        p.add_argument("--budget", type=int, help="override the exploration budget (completions)")
        p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("run", help="learn the policy: the best (prompt, N) per context")
    cfg(p)
    p.add_argument("--seed", type=int, help="override the seed")
    p.add_argument("--run-dir", help="where result.json (and by default the bank) go")
    p.add_argument("--storage", help="sample bank URL, e.g. sqlite:///bank.sqlite")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument(
        "--distributed",
        action="store_true",
        help="publish the pulls for `iapo worker` processes to draw (execution.mode: "
        "distributed); the run waits for them and shows the workers",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("estimate", help="pre-flight: schedule, completions and expected cost")
    cfg(p)
    p.set_defaults(func=_cmd_estimate)

    p = sub.add_parser("evaluate", help="exact Q of every arm on the pool; deceiving prompts")
    p.add_argument("config", help="run configuration (YAML) that replays a pool")
    p.add_argument(
        "--split",
        choices=["test", "train", "all"],
        default="test",
        help="the queries to evaluate on: the held-out test split, the training split, or all",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_evaluate)

    pool = sub.add_parser("pool", help="pool files: validate, import").add_subparsers(
        dest="pool_command", required=True
    )
    p = pool.add_parser("validate", help="check a pool file")
    p.add_argument("file", help="a pool file (JSONL: a header line, then one line per cell)")
    p.add_argument(
        "--require-gold",
        action="store_true",
        help="every query must have a gold answer (what majority voting needs)",
    )
    p.set_defaults(func=_cmd_pool_validate)
    p = pool.add_parser("import", help="convert a shared real pool into iapo's pool format")
    p.add_argument(
        "source",
        choices=["renze", "tot-text", "tot-game24"],
        help="the format of the shared data: the Renze MCQA studies, or the Tree-of-Thoughts "
        "creative-writing or Game of 24 logs",
    )
    p.add_argument("path", help="renze: the study's .jsonl; tot-*: the tot-logs folder")
    p.add_argument("--out", required=True, help="the pool file to write (JSONL)")
    p.add_argument("--model", default="gpt-35-turbo", help="renze: keep this model's rows")
    p.add_argument("--exam", default="comprehensive-100", help="renze: keep this exam's rows")
    p.add_argument(
        "--temperature", type=float, help="renze: keep this temperature's rows (default: all)"
    )
    p.add_argument("--prompts", nargs="*", help="renze: keep these prompts (default: every prompt)")
    p.set_defaults(func=_cmd_pool_import)

    p = sub.add_parser("ask", help="answer a question with a learned policy")
    p.add_argument("result", help="a run directory or its result.json")
    p.add_argument("question", help="the question to answer (quote it)")
    p.add_argument(
        "--context", required=True, help="the context (user preference) to serve, by its name"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_ask)

    from iapo.serve import register_cli as register_serve  # its heavy parts load when run

    register_serve(sub)
