"""The task queue of :class:`~iapo.bank.MemoryBank`: dicts behind one lock (one process only)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from iapo.bank._tasks import MAX_ATTEMPTS, TASK_STATES, TASK_TTL, Task, TaskQueue, TaskSpec
from iapo.fmt import strict_json

__all__ = ["MemoryQueue"]


class MemoryQueue(TaskQueue):
    """:class:`TaskQueue` in memory; call :meth:`_init_queue` from ``__init__``."""

    def _init_queue(self) -> None:
        self._qlock = threading.Lock()
        self._tasks: dict[int, Task] = {}
        self._retry: dict[int, tuple[str, float]] = {}  # id -> (worker that failed it, until)
        self._beats: dict[str, tuple[float, str]] = {}
        self._inputs: dict[str, str] = {}
        self._next = 1

    def publish(
        self, run_id: str, tasks: Sequence[TaskSpec], *, max_attempts: int = MAX_ATTEMPTS
    ) -> list[int]:
        made = [
            (dist, prompt, query, tuple(int(i) for i in idx)) for dist, prompt, query, idx in tasks
        ]
        with self._qlock:
            ids = []
            for dist, prompt, query, idx in made:
                tid, self._next = self._next, self._next + 1
                self._tasks[tid] = Task(
                    tid, run_id, dist, prompt, query, idx, max_attempts=max(1, max_attempts)
                )
                ids.append(tid)
            return ids

    def _free(self, t: Task, worker: str, now: float) -> bool:
        if t.status == "leased" and (t.expires or 0.0) > now:
            return False
        if t.status not in ("queued", "leased"):
            return False
        held = self._retry.get(t.id)
        return held is None or held[0] != worker or held[1] <= now

    def take(
        self,
        worker: str,
        limit: int,
        ttl: float = TASK_TTL,
        *,
        run_id: str | None = None,
        exclude: Sequence[str] = (),
    ) -> list[Task]:
        now = time.time()
        skip = set(exclude)
        with self._qlock:
            out: list[Task] = []
            for tid in sorted(self._tasks):
                if len(out) >= limit:
                    break
                t = self._tasks[tid]
                if (run_id is not None and t.run_id != run_id) or t.run_id in skip:
                    continue
                if self._free(t, worker, now):
                    t = self._tasks[tid] = replace(
                        t, status="leased", worker=worker, expires=now + ttl
                    )
                    out.append(t)
            return out

    def _held(self, ids: Sequence[int], worker: str) -> list[int]:
        return [
            i
            for i in dict.fromkeys(ids)
            if (t := self._tasks.get(i)) is not None and t.status == "leased" and t.worker == worker
        ]

    def renew_tasks(self, ids: Sequence[int], worker: str, ttl: float = TASK_TTL) -> list[int]:
        now = time.time()
        with self._qlock:
            held = self._held(ids, worker)
            for i in held:
                self._tasks[i] = replace(self._tasks[i], expires=now + ttl)
            return held

    def finish_tasks(self, ids: Sequence[int], worker: str) -> list[int]:
        with self._qlock:
            held = self._held(ids, worker)
            for i in held:
                self._tasks[i] = replace(self._tasks[i], status="done", expires=None)
            return held

    def release_tasks(self, ids: Sequence[int], worker: str) -> list[int]:
        with self._qlock:
            held = self._held(ids, worker)
            for i in held:
                self._tasks[i] = replace(self._tasks[i], status="queued", worker=None, expires=None)
            return held

    def fail_task(
        self, task_id: int, worker: str, error: str, *, retry_after: float = 0.0
    ) -> str | None:
        with self._qlock:
            if not self._held([task_id], worker):
                return None
            t = self._tasks[task_id]
            attempts = t.attempts + 1
            status = "failed" if attempts >= t.max_attempts else "queued"
            self._tasks[task_id] = replace(
                t, status=status, attempts=attempts, worker=None, expires=None, error=error
            )
            self._retry[task_id] = (worker, time.time() + retry_after)
            return status

    def get_tasks(self, ids: Sequence[int]) -> dict[int, Task]:
        with self._qlock:
            return {i: self._tasks[i] for i in ids if i in self._tasks}

    def task_counts(self, run_id: str) -> dict[str, int]:
        now = time.time()
        counts = dict.fromkeys(TASK_STATES, 0)
        with self._qlock:
            for t in self._tasks.values():
                if t.run_id == run_id:
                    lapsed = t.status == "leased" and (t.expires or 0.0) <= now
                    counts["queued" if lapsed else t.status] += 1
        return counts

    def cancel_tasks(self, run_id: str) -> int:
        with self._qlock:
            gone = [i for i, t in self._tasks.items() if t.run_id == run_id and t.status != "done"]
            for i in gone:
                del self._tasks[i]
                self._retry.pop(i, None)
            return len(gone)

    def beat(self, worker: str, info: dict[str, Any]) -> None:
        text = strict_json(info)
        with self._qlock:
            self._beats[worker] = (time.time(), text)

    def worker_records(self) -> list[dict[str, Any]]:
        with self._qlock:
            beats = sorted(self._beats.items(), key=lambda kv: -kv[1][0])
        return [{**json.loads(text), "worker": w, "seen": seen} for w, (seen, text) in beats]

    def put_run_inputs(self, run_id: str, inputs: dict[str, Any]) -> None:
        text = strict_json(inputs)
        with self._qlock:
            self._inputs[run_id] = text

    def run_inputs(self, run_id: str) -> dict[str, Any] | None:
        with self._qlock:
            text = self._inputs.get(run_id)
        return None if text is None else dict(json.loads(text))
