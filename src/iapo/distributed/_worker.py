"""``iapo worker``: take a distributed run's tasks from the bank, draw them, store them.

A :class:`Worker` loops: :meth:`~iapo.bank.TaskQueue.take` up to ``limit`` tasks (leased for
``ttl`` seconds, renewed every ``ttl / 3`` while they are drawn), draw each through a
:class:`~iapo.sampling.CachedSampler` on the bank (its claims make every (distribution, index)
paid once, even when a lapsed task is taken twice), finish it, and heartbeat. The run's prompts,
extractor and scorers come from its record in the bank, its queries from the run's inputs (or,
failing that, from the worker's own config when it is a whole run config); the endpoint, model
and parameters from the worker's config. A task whose distribution key differs from the one this
worker's backend gives (another model, other parameters) is refused: given back, and no more of
that run is taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iapo.answers import get_extractor
from iapo.backends import Backend, build_live_backend
from iapo.bank import TASK_TTL, SampleBank, Task
from iapo.config import BackendConfig, LiveSource, RunConfig, parse_config
from iapo.queries import load_queries
from iapo.sampling import CachedSampler
from iapo.scorers import build_scorers
from iapo.types import PromptSpec, Query

__all__ = ["Refused", "Worker", "WorkerOptions"]


class Refused(Exception):
    """This worker cannot serve a run (its tasks are given back for other workers)."""


@dataclass(frozen=True)
class WorkerOptions:
    """``limit``: tasks held at once (None: the backend's concurrency); ``ttl``: lease seconds;
    ``poll``: seconds between looks for tasks when idle; ``idle_exit``: stop after this many
    seconds without a task (None: never); ``once``: stop when the first batch of tasks is done;
    ``run_id``: serve this run only; ``retry_after``: seconds before this worker takes a task it
    failed again; ``beat``: seconds between heartbeats."""

    limit: int | None = None
    ttl: float = TASK_TTL
    poll: float = 0.5
    idle_exit: float | None = None
    once: bool = False
    run_id: str | None = None
    retry_after: float = 30.0
    beat: float = 1.0


@dataclass
class _Run:
    backend: Backend


@dataclass
class _Books:
    drawn: int = 0
    done: int = 0
    failed: int = 0
    rates: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:500]


class Worker:
    """Draws the tasks of distributed runs in ``bank`` from ``backend_config``'s endpoint.

    ``own`` is the worker's config when it is a whole run config (its queries are used for a
    run whose inputs the bank lacks; paths relative to ``base``). ``say`` reports refusals and
    failures (one line each)."""

    def __init__(
        self,
        bank: SampleBank,
        backend_config: BackendConfig,
        *,
        options: WorkerOptions | None = None,
        name: str | None = None,
        own: RunConfig | None = None,
        base: Path | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.bank = bank
        self.backend_config = backend_config
        self.options = options or WorkerOptions()
        self.name = name or f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"
        self.own = own
        self.base = base or Path.cwd()
        self.say = say or (lambda line: None)
        self.books = _Books()
        #: Runs this worker will not serve, with why.
        self.refused: dict[str, str] = {}
        self._runs: dict[str, _Run] = {}
        self._active: dict[int, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()
        self._status = "starting"

    def stop(self) -> None:
        """Stop taking tasks; the ones in flight are given back (e.g. on SIGTERM)."""
        self._stop.set()

    # -- the loop ---------------------------------------------------------------------------
    async def run(self) -> int:
        """Take, draw and finish tasks until stopped (or idle/once); the tasks finished."""
        opts = self.options
        limit = opts.limit or self.backend_config.concurrency
        last_task = last_renew = time.monotonic()
        last_beat = 0.0
        took_any = False
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                free = limit - len(self._active)
                if free > 0 and not (opts.once and took_any):
                    tasks = await asyncio.to_thread(
                        self.bank.take,
                        self.name,
                        free,
                        opts.ttl,
                        run_id=opts.run_id,
                        exclude=list(self.refused),
                    )
                    for t in tasks:
                        self._active[t.id] = asyncio.ensure_future(self._do(t))
                    took_any = took_any or bool(tasks)
                if self._active:
                    last_task = now
                    self._status = "drawing"
                elif opts.once and took_any:
                    break
                else:
                    self._status = "idle"
                    if opts.idle_exit is not None and now - last_task >= opts.idle_exit:
                        break
                if now - last_renew >= opts.ttl / 3 and self._active:
                    last_renew = now
                    await asyncio.to_thread(
                        self.bank.renew_tasks, list(self._active), self.name, opts.ttl
                    )
                if now - last_beat >= opts.beat:
                    last_beat = now
                    await self._beat()
                await self._pause(opts.poll if not self._active else min(opts.poll, opts.ttl / 6))
        finally:
            await self._give_back()
            self._status = "stopped"
            with contextlib.suppress(Exception):
                await self._beat()
        return self.books.done

    async def _pause(self, seconds: float) -> None:
        """Until a task ends, the worker is stopped, or ``seconds`` passed."""
        waits: list[asyncio.Future[Any]] = list(self._active.values())
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait([*waits, stop], timeout=seconds, return_when="FIRST_COMPLETED")
        finally:
            stop.cancel()

    async def _give_back(self) -> None:
        """Cancel the draws in flight (their claims are released) and give their tasks back."""
        active, self._active = dict(self._active), {}
        for job in active.values():
            job.cancel()
        for job in active.values():
            with contextlib.suppress(BaseException):
                await job
        if active:
            await asyncio.to_thread(self.bank.release_tasks, list(active), self.name)
        for run in self._runs.values():
            with contextlib.suppress(Exception):
                await run.backend.aclose()

    async def _beat(self) -> None:
        books, now = self.books, time.monotonic()
        books.rates.append((now, books.drawn))
        old = next((r for r in books.rates if now - r[0] <= 10.0), books.rates[0])
        rate = (books.drawn - old[1]) / (now - old[0]) if now > old[0] else 0.0
        cfg = self.backend_config
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "backend": f"{cfg.kind}({cfg.model})",
            "status": self._status,
            "drawn": books.drawn,
            "rate": round(rate, 3),
            "tasks_done": books.done,
            "tasks_failed": books.failed,
            "active": len(self._active),
            "refused": dict(self.refused),
        }
        await asyncio.to_thread(self.bank.beat, self.name, info)

    # -- one task -----------------------------------------------------------------------------
    async def _do(self, task: Task) -> None:
        try:
            run = await self._run_of(task.run_id)
            try:
                key = run.backend.cache_key(task.prompt, task.query)
            except (KeyError, ValueError) as exc:
                raise Refused(f"no prompt/query {task.prompt!r}/{task.query!r} ({exc})") from None
            if key != task.dist:
                raise Refused(
                    f"this worker's backend ({self.backend_config.model}, params "
                    f"{dict(self.backend_config.params)}) draws another distribution than the "
                    "run's: give the worker the same model, params, extractor and scorers"
                )
        except Refused as exc:
            if task.run_id not in self.refused:
                self.refused[task.run_id] = str(exc)
                self.say(f"refusing run {task.run_id}: {exc}")
            await asyncio.to_thread(self.bank.release_tasks, [task.id], self.name)
            self._active.pop(task.id, None)
            return
        # a sampler per task: its claims are its own, so two tasks naming one index (a restarted
        # driver's, or a lapsed task taken again) never draw it twice, even in one worker
        sampler = CachedSampler(run.backend, self.bank, claim_ttl=self.options.ttl)
        try:
            _, fresh = await sampler.draw(task.prompt, task.query, task.indices)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.books.failed += 1
            error = f"{self.name}: {_one_line(exc)}"
            status = await asyncio.to_thread(
                self.bank.fail_task,
                task.id,
                self.name,
                error,
                retry_after=self.options.retry_after,
            )
            self.say(f"task {task.id} failed ({status}): {error}")
        else:
            self.books.drawn += fresh
            if await asyncio.to_thread(self.bank.finish_tasks, [task.id], self.name):
                self.books.done += 1
        self._active.pop(task.id, None)

    async def _run_of(self, run_id: str) -> _Run:
        """The backend and sampler of ``run_id`` (built on first use), or :class:`Refused`."""
        if run_id in self._runs:
            return self._runs[run_id]
        recs = [r for r in await asyncio.to_thread(self.bank.runs) if r["id"] == run_id]
        if not recs:
            raise Refused(f"no run {run_id} recorded in {self.bank.url}")
        try:
            config = parse_config(recs[0]["config"], f"run {run_id} in {self.bank.url}")
        except Exception as exc:
            raise Refused(f"its recorded config is unusable here: {_one_line(exc)}") from None
        source = config.source
        if not isinstance(source, LiveSource):
            raise Refused("it replays a pool: nothing to draw")
        queries = await self._queries(run_id)
        extract = get_extractor(source.extract)
        scorers = build_scorers(source.scorers, extract=extract) if source.scorers else None
        specs = {p.id: PromptSpec(p.id, p.system, p.template) for p in source.prompts}
        backend = build_live_backend(self.backend_config, specs, queries, extract, scorers)
        self._runs[run_id] = run = _Run(backend)
        return run

    async def _queries(self, run_id: str) -> dict[str, Query]:
        inputs = await asyncio.to_thread(self.bank.run_inputs, run_id)
        if inputs is not None:
            return {
                str(q["id"]): Query(str(q["id"]), q["text"], q.get("gold"), q.get("fields") or {})
                for q in inputs.get("queries", [])
            }
        if self.own is not None and self.own.queries is not None:
            path = Path(self.own.queries)
            path = path if path.is_absolute() else self.base / path
            return {q.id: q for q in load_queries(path)}
        raise Refused(
            "the bank has no queries for it and this worker's config gives none: start the run "
            "with execution: {mode: distributed}, or give the worker the run's config"
        )
