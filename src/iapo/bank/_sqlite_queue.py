"""The task queue of :class:`~iapo.bank.SQLiteBank` (tables ``tasks``, ``workers``,
``run_inputs`` of :mod:`iapo.bank._sqlite_schema`).

Every change runs in one ``BEGIN IMMEDIATE`` transaction (the bank's write lock), so
:meth:`SQLiteQueue.take` selecting the oldest available tasks and leasing them is atomic across
processes: a task is never held by two live leases. Times are each process's ``time.time()``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from iapo.bank._tasks import MAX_ATTEMPTS, TASK_STATES, TASK_TTL, Task, TaskQueue, TaskSpec
from iapo.fmt import strict_json

__all__ = ["SQLiteQueue"]

T = TypeVar("T")

_COLUMNS = (
    "id, run_id, dist, prompt, query, indices, status, attempts, max_attempts, worker, "
    "expires, error"
)
#: A task ``worker`` may take at ``now`` (parameters: now, worker, now).
_AVAILABLE = (
    "(status = 'queued' OR (status = 'leased' AND expires <= ?)) "
    "AND NOT (failed_by IS NOT NULL AND failed_by = ? AND retry_at > ?)"
)


def _task(row: Sequence[Any]) -> Task:
    return Task(
        id=row[0],
        run_id=row[1],
        dist=row[2],
        prompt=row[3],
        query=row[4],
        indices=tuple(json.loads(row[5])),
        status=row[6],
        attempts=row[7],
        max_attempts=row[8],
        worker=row[9],
        expires=row[10],
        error=row[11],
    )


def _marks(n: int) -> str:
    return ",".join("?" * n)


class SQLiteQueue(TaskQueue):
    """:class:`TaskQueue` on the bank's SQLite connection (mixed into ``SQLiteBank``)."""

    _db: sqlite3.Connection

    def _retry(self, work: Callable[[], T], *, write: bool) -> T:  # pragma: no cover
        raise NotImplementedError

    def publish(
        self, run_id: str, tasks: Sequence[TaskSpec], *, max_attempts: int = MAX_ATTEMPTS
    ) -> list[int]:
        now = time.time()
        rows = [
            (run_id, dist, prompt, query, json.dumps([int(i) for i in idx]), max(1, max_attempts))
            for dist, prompt, query, idx in tasks
        ]

        def work() -> list[int]:
            ids = []
            for row in rows:  # one by one: the ids, in order
                cur = self._db.execute(
                    "INSERT INTO tasks (run_id, dist, prompt, query, indices, status, "
                    "max_attempts, created) VALUES (?,?,?,?,?,'queued',?,?)",
                    (*row, now),
                )
                ids.append(int(cur.lastrowid or 0))
            return ids

        return self._retry(work, write=True) if rows else []

    def take(
        self,
        worker: str,
        limit: int,
        ttl: float = TASK_TTL,
        *,
        run_id: str | None = None,
        exclude: Sequence[str] = (),
    ) -> list[Task]:
        if limit < 1:
            return []
        where, args = _AVAILABLE, [0.0, worker, 0.0]
        if run_id is not None:
            where += " AND run_id = ?"
            args.append(run_id)
        if exclude:
            where += f" AND run_id NOT IN ({_marks(len(exclude))})"
            args += list(exclude)

        def work() -> list[Task]:
            now = time.time()
            args[0] = args[2] = now
            ids = [
                r[0]
                for r in self._db.execute(
                    f"SELECT id FROM tasks WHERE {where} ORDER BY id LIMIT ?", (*args, limit)
                )
            ]
            if not ids:
                return []
            self._db.execute(
                f"UPDATE tasks SET status = 'leased', worker = ?, expires = ? "
                f"WHERE id IN ({_marks(len(ids))})",
                (worker, now + ttl, *ids),
            )
            return self._fetch(ids)

        return self._retry(work, write=True)

    def _fetch(self, ids: Sequence[int]) -> list[Task]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM tasks WHERE id IN ({_marks(len(ids))}) ORDER BY id",
            tuple(ids),
        ).fetchall()
        return [_task(r) for r in rows]

    def _held(self, ids: Sequence[int], worker: str) -> list[int]:
        """Of ``ids``, those leased to ``worker`` (inside the caller's transaction)."""
        ids = list(dict.fromkeys(int(i) for i in ids))
        if not ids:
            return []
        rows = self._db.execute(
            f"SELECT id FROM tasks WHERE id IN ({_marks(len(ids))}) "
            "AND status = 'leased' AND worker = ?",
            (*ids, worker),
        )
        held = {r[0] for r in rows}
        return [i for i in ids if i in held]

    def _change(
        self, ids: Sequence[int], worker: str, sets: str, args: tuple[Any, ...]
    ) -> list[int]:
        def work() -> list[int]:
            held = self._held(ids, worker)
            if held:
                self._db.execute(
                    f"UPDATE tasks SET {sets} WHERE id IN ({_marks(len(held))})", (*args, *held)
                )
            return held

        return self._retry(work, write=True) if ids else []

    def renew_tasks(self, ids: Sequence[int], worker: str, ttl: float = TASK_TTL) -> list[int]:
        return self._change(ids, worker, "expires = ?", (time.time() + ttl,))

    def finish_tasks(self, ids: Sequence[int], worker: str) -> list[int]:
        return self._change(ids, worker, "status = 'done', expires = NULL", ())

    def release_tasks(self, ids: Sequence[int], worker: str) -> list[int]:
        return self._change(ids, worker, "status = 'queued', worker = NULL, expires = NULL", ())

    def fail_task(
        self, task_id: int, worker: str, error: str, *, retry_after: float = 0.0
    ) -> str | None:
        def work() -> str | None:
            if not self._held([task_id], worker):
                return None
            self._db.execute(
                "UPDATE tasks SET attempts = attempts + 1, worker = NULL, expires = NULL, "
                "error = ?, failed_by = ?, retry_at = ?, status = CASE WHEN attempts + 1 >= "
                "max_attempts THEN 'failed' ELSE 'queued' END WHERE id = ?",
                (error, worker, time.time() + retry_after, task_id),
            )
            row = self._db.execute("SELECT status FROM tasks WHERE id = ?", (task_id,)).fetchone()
            return str(row[0])

        return self._retry(work, write=True)

    def get_tasks(self, ids: Sequence[int]) -> dict[int, Task]:
        ids = list(dict.fromkeys(int(i) for i in ids))
        out: dict[int, Task] = {}
        for at in range(0, len(ids), 500):  # under SQLite's bound-parameter limit
            chunk = ids[at : at + 500]
            out.update((t.id, t) for t in self._retry(partial(self._fetch, chunk), write=False))
        return out

    def task_counts(self, run_id: str) -> dict[str, int]:
        rows = self._retry(
            lambda: self._db.execute(
                "SELECT CASE WHEN status = 'leased' AND expires <= ? THEN 'queued' ELSE status "
                "END AS state, COUNT(*) FROM tasks WHERE run_id = ? GROUP BY state",
                (time.time(), run_id),
            ).fetchall(),
            write=False,
        )
        counts = dict.fromkeys(TASK_STATES, 0)
        counts.update({r[0]: r[1] for r in rows})
        return counts

    def cancel_tasks(self, run_id: str) -> int:
        return self._retry(
            lambda: (
                self._db.execute(
                    "DELETE FROM tasks WHERE run_id = ? AND status != 'done'", (run_id,)
                ).rowcount
            ),
            write=True,
        )

    def beat(self, worker: str, info: dict[str, Any]) -> None:
        text = strict_json(info)
        self._retry(
            lambda: self._db.execute(
                "INSERT OR REPLACE INTO workers (worker, seen, info) VALUES (?,?,?)",
                (worker, time.time(), text),
            ),
            write=True,
        )

    def worker_records(self) -> list[dict[str, Any]]:
        rows = self._retry(
            lambda: self._db.execute(
                "SELECT worker, seen, info FROM workers ORDER BY seen DESC"
            ).fetchall(),
            write=False,
        )
        return [{**json.loads(info), "worker": w, "seen": seen} for w, seen, info in rows]

    def put_run_inputs(self, run_id: str, inputs: dict[str, Any]) -> None:
        text = strict_json(inputs)
        self._retry(
            lambda: self._db.execute(
                "INSERT OR REPLACE INTO run_inputs (run_id, inputs) VALUES (?,?)", (run_id, text)
            ),
            write=True,
        )

    def run_inputs(self, run_id: str) -> dict[str, Any] | None:
        row = self._retry(
            lambda: self._db.execute(
                "SELECT inputs FROM run_inputs WHERE run_id = ?", (run_id,)
            ).fetchone(),
            write=False,
        )
        return None if row is None else dict(json.loads(row[0]))
