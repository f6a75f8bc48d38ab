"""The driver side of a distributed run: a study's sampler that publishes pulls as tasks.

:class:`DistributedSampler` takes the place of :class:`~iapo.sampling.CachedSampler` in a
:class:`~iapo.study.Study`. A pull reads the bank; the indices it does not find become one task
(the pulls of a round are published together, in one transaction); the sampler waits, polling
the bank's task queue off the event loop, until a worker finished the task, then reads the
samples as the local sampler would. The algorithm sees the same samples, in the same order, as
in a one-process run with the same seed, so it reaches the same policy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from iapo.backends import Backend
from iapo.bank import MAX_ATTEMPTS, SampleBank, Task, TaskSpec
from iapo.errors import PermanentBackendError
from iapo.types import Query, Sample

__all__ = [
    "BEAT_FRESH",
    "DistributedSampler",
    "Monitor",
    "format_status",
    "live_workers",
    "query_inputs",
]

#: A worker whose last heartbeat is older than this (seconds) is not shown as live.
BEAT_FRESH = 15.0

#: ``monitor(task_counts, live_worker_records)``: the driver's view of its run, now and then.
Monitor = Callable[[Mapping[str, int], Sequence[Mapping[str, Any]]], None]


def query_inputs(queries: Mapping[str, Query]) -> dict[str, Any]:
    """A run's queries as the JSON its workers read back (``run_inputs``)."""
    return {
        "queries": [
            {"id": q.id, "text": q.text, "gold": q.gold, "fields": dict(q.fields)}
            for q in queries.values()
        ]
    }


def live_workers(records: Sequence[Mapping[str, Any]], now: float) -> list[Mapping[str, Any]]:
    """The heartbeats of workers seen lately and not stopped."""
    return [
        r for r in records if now - float(r["seen"]) <= BEAT_FRESH and r.get("status") != "stopped"
    ]


def format_status(counts: Mapping[str, int], workers: Sequence[Mapping[str, Any]]) -> str:
    """One line: the run's tasks by state, then each live worker with its rate."""
    tasks = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("queued", "leased", "done", "failed"))
    shown = []
    for w in workers:
        rate = float(w.get("rate") or 0.0)
        shown.append(
            f"{w['worker']} {w.get('backend', '?')} {rate:.1f}/s ({w.get('drawn', 0)} drawn)"
        )
    total = sum(float(w.get("rate") or 0.0) for w in workers)
    who = "; ".join(shown) if shown else "none yet: start `iapo worker --storage URL CONFIG`"
    return f"tasks: {tasks} | workers ({len(workers)}, {total:.1f}/s): {who}"


class DistributedSampler:
    """Completions drawn by ``iapo worker`` processes for run ``run_id`` through ``bank``.

    ``backend`` is the run's own (it names each distribution, re-costs and restores samples;
    it draws nothing). ``poll``: seconds between looks at the queue; ``monitor`` is called about
    every ``monitor_every`` seconds while the sampler waits. A task that failed on every attempt
    raises :class:`~iapo.errors.PermanentBackendError` (the study stops); a task that vanished
    (cancelled) is published again.
    """

    def __init__(
        self,
        backend: Backend,
        bank: SampleBank,
        run_id: str,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        poll: float = 0.2,
        monitor: Monitor | None = None,
        monitor_every: float = 2.0,
    ) -> None:
        self.backend = backend
        self.bank = bank
        self.run_id = run_id
        self.max_attempts = max_attempts
        self.poll = poll
        self.monitor = monitor
        self.monitor_every = monitor_every
        #: Tasks this sampler published (for tests and the report).
        self.published = 0
        self._outbox: list[tuple[TaskSpec, asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[Task | None]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._shown = 0.0

    async def draw(
        self, prompt: str, query: str, indices: Sequence[int]
    ) -> tuple[list[Sample], int]:
        """Completions ``indices`` of (prompt, query), in order, and how many the workers drew
        for this pull (those not already in the bank)."""
        backend = self.backend
        dist = backend.cache_key(prompt, query)
        stored = await asyncio.to_thread(self.bank.get, dist, indices)
        missing = [i for i in indices if i not in stored]
        fresh = len(missing)
        while missing:
            task_id = await self._publish((dist, prompt, query, missing))
            await self._wait(task_id)
            stored.update(await asyncio.to_thread(self.bank.get, dist, missing))
            missing = [i for i in indices if i not in stored]
        out = [backend.restore(prompt, query, i, stored[i]) for i in indices]
        return [backend.recost(s) for s in out], fresh

    # -- publishing: the pulls waiting together go in one transaction ------------------------
    def _publish(self, spec: TaskSpec) -> asyncio.Future[int]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._outbox.append((spec, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return fut

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the other pulls of the round join
        while self._outbox:
            batch, self._outbox = self._outbox, []
            try:
                publish = partial(self.bank.publish, max_attempts=self.max_attempts)
                ids = await asyncio.to_thread(publish, self.run_id, [spec for spec, _ in batch])
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.published += len(ids)
            for (_, fut), task_id in zip(batch, ids, strict=True):
                if not fut.done():
                    fut.set_result(task_id)

    # -- waiting: one poller for every task in flight ----------------------------------------
    async def _wait(self, task_id: int) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Task | None] = loop.create_future()
        self._waiting[task_id] = fut
        if self._poller is None or self._poller.done():
            self._poller = loop.create_task(self._poll())
        try:
            task = await fut
        finally:
            self._waiting.pop(task_id, None)
        if task is not None and task.status == "failed":
            raise PermanentBackendError(
                f"task {task.id} of run {self.run_id} (prompt {task.prompt!r}, query "
                f"{task.query!r}, {len(task.indices)} samples) failed {task.attempts} times on "
                f"the workers, last: {task.error}: fix the workers' endpoint, then run the same "
                "command again to resume"
            )

    async def _poll(self) -> None:
        while self._waiting:
            await asyncio.sleep(self.poll)
            ids = list(self._waiting)
            if not ids:
                break
            tasks = await asyncio.to_thread(self.bank.get_tasks, ids)
            for task_id in ids:
                fut = self._waiting.get(task_id)
                task = tasks.get(task_id)
                if fut is None or fut.done():
                    continue
                if task is None or task.status in ("done", "failed"):
                    fut.set_result(task)
            await self._show()

    async def _show(self) -> None:
        now = time.monotonic()
        if self.monitor is None or now - self._shown < self.monitor_every:
            return
        self._shown = now
        counts = await asyncio.to_thread(self.bank.task_counts, self.run_id)
        records = await asyncio.to_thread(self.bank.worker_records)
        self.monitor(counts, live_workers(records, time.time()))
