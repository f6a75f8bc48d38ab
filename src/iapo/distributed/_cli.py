"""The ``iapo worker`` command."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from iapo.aio import run as run_loop
from iapo.bank import TASK_TTL, open_bank
from iapo.config import load_worker_config
from iapo.distributed._worker import Worker, WorkerOptions
from iapo.errors import ConfigError, InputError
from iapo.locations import check_storage

__all__ = ["register_cli"]


def _say(line: str) -> None:
    print(f"iapo worker: {line}", file=sys.stderr, flush=True)


def _cmd_worker(args: argparse.Namespace) -> int:
    backend, own = load_worker_config(Path(args.config))
    if args.storage == "memory:":
        raise ConfigError(
            "a worker shares the run's bank: give its sqlite:/// path (or a database URL)",
            source="--storage",
            field="storage",
        )
    check_storage(args.storage, "--storage")
    try:
        bank = open_bank(args.storage)
    except InputError as exc:
        raise exc.within("--storage") from None
    opts = WorkerOptions(
        limit=args.limit,
        ttl=args.ttl,
        poll=args.poll,
        idle_exit=args.idle_exit,
        once=args.once,
        run_id=args.run,
        retry_after=args.retry_after,
    )
    worker = Worker(
        bank,
        backend,
        options=opts,
        name=args.name,
        own=own,
        base=Path(args.config).resolve().parent,
        say=_say,
    )

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        _say(f"{worker.name} drawing from {backend.kind}({backend.model}) for {bank.url}")
        return await worker.run()

    with bank:
        done = run_loop(main())
    b = worker.books
    _say(f"{worker.name}: {done} tasks done, {b.drawn} completions drawn, {b.failed} failed")
    return 0


def register_cli(sub: Any) -> None:
    """Add ``iapo worker`` to the ``iapo`` argument parser's subparsers."""
    p = sub.add_parser(
        "worker",
        help="draw the completions of distributed runs (execution: {mode: distributed})",
        description="Take the tasks that distributed runs publish in the bank, draw them from "
        "this worker's endpoint, store them. Stops cleanly on SIGTERM/Ctrl-C (its tasks go "
        "back to the queue).",
    )
    p.add_argument(
        "config",
        help="YAML with a 'backend' section: this worker's endpoint, model and params (the "
        "run's model and params); a whole run config also gives the queries",
    )
    p.add_argument("--storage", required=True, help="the runs' sample bank URL")
    p.add_argument("--run", help="serve this run id only (default: any run)")
    p.add_argument("--limit", type=int, help="tasks at once (default: backend.concurrency)")
    p.add_argument("--ttl", type=float, default=TASK_TTL, help="task lease seconds")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between looks when idle")
    p.add_argument("--idle-exit", type=float, help="exit after this many seconds without a task")
    p.add_argument("--once", action="store_true", help="exit when the first tasks are done")
    p.add_argument(
        "--retry-after",
        type=float,
        default=30.0,
        help="seconds before this worker retries a task it failed (others may at once)",
    )
    p.add_argument("--name", help="this worker's name (default: host/pid/random)")
    p.set_defaults(func=_cmd_worker)
