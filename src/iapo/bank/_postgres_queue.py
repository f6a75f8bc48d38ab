"""The task queue of :class:`~iapo.bank.PostgresBank` (tables ``iapo.tasks``, ``iapo.workers``,
``iapo.run_inputs``: schema version 4, :data:`iapo.bank._postgres_schema.V4`).

:meth:`PostgresQueue.take` leases with ``SELECT … FOR UPDATE SKIP LOCKED`` inside an ``UPDATE``:
workers taking at the same moment each lock different rows and none waits for another, and a row
is leased by one transaction at a time, so a task is never held by two live leases. Every other
change locks the rows it checks (``FOR UPDATE``) in the same transaction. Times are the server's
clock (:data:`~iapo.bank._postgres.NOW`), the one clock every worker and driver shares.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg

from iapo.bank._postgres_schema import NOW
from iapo.bank._tasks import MAX_ATTEMPTS, TASK_STATES, TASK_TTL, Task, TaskQueue, TaskSpec
from iapo.fmt import strict_json

__all__ = ["PostgresQueue"]

T = TypeVar("T")

_COLUMNS = (
    "id, run_id, dist, prompt, query, indices, status, attempts, max_attempts, worker, "
    "expires, error"
)
#: A task %(worker)s may take now.
_AVAILABLE = (
    f"(status = 'queued' OR (status = 'leased' AND expires <= {NOW})) "
    f"AND NOT (failed_by IS NOT NULL AND failed_by = %(worker)s AND retry_at > {NOW})"
)

Conn = psycopg.Connection[Any]


def _task(row: Sequence[Any]) -> Task:
    return Task(
        id=int(row[0]),
        run_id=row[1],
        dist=row[2],
        prompt=row[3],
        query=row[4],
        indices=tuple(int(i) for i in row[5]),
        status=row[6],
        attempts=int(row[7]),
        max_attempts=int(row[8]),
        worker=row[9],
        expires=row[10],
        error=row[11],
    )


def _ids(ids: Sequence[int]) -> list[int]:
    return list(dict.fromkeys(int(i) for i in ids))


class PostgresQueue(TaskQueue):
    """:class:`TaskQueue` in the bank's database (mixed into ``PostgresBank``, whose
    ``transaction`` runs each operation in one transaction, retried on a lost connection: every
    operation here is safe to run again)."""

    def transaction(self, work: Callable[[Conn], T]) -> T:  # pragma: no cover
        raise NotImplementedError

    def publish(
        self, run_id: str, tasks: Sequence[TaskSpec], *, max_attempts: int = MAX_ATTEMPTS
    ) -> list[int]:
        if not tasks:
            return []
        cols: list[list[Any]] = [[], [], [], []]
        for dist, prompt, query, idx in tasks:
            for col, value in zip(
                cols, (dist, prompt, query, strict_json([int(i) for i in idx])), strict=True
            ):
                col.append(value)

        def work(conn: Conn) -> list[int]:
            rows = conn.execute(
                "INSERT INTO iapo.tasks (run_id, dist, prompt, query, indices, status, "
                f"max_attempts, created) SELECT %s, u.dist, u.prompt, u.query, "
                f"ARRAY(SELECT json_array_elements_text(u.idx::json)::bigint), 'queued', %s, {NOW} "
                "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) WITH ORDINALITY "
                "AS u(dist, prompt, query, idx, ord) ORDER BY u.ord RETURNING id",
                (run_id, max(1, max_attempts), *cols),
            ).fetchall()
            return sorted(int(r[0]) for r in rows)

        return self.transaction(work)

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
        where = _AVAILABLE
        args: dict[str, Any] = {"worker": worker, "limit": int(limit), "ttl": float(ttl)}
        if run_id is not None:
            where += " AND run_id = %(run)s"
            args["run"] = run_id
        if exclude:
            where += " AND run_id <> ALL(%(exclude)s::text[])"
            args["exclude"] = list(exclude)

        def work(conn: Conn) -> list[Task]:
            rows = conn.execute(
                f"WITH picked AS (SELECT id FROM iapo.tasks WHERE {where} ORDER BY id "
                "LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
                f"UPDATE iapo.tasks t SET status = 'leased', worker = %(worker)s, "
                f"expires = {NOW} + %(ttl)s FROM picked WHERE t.id = picked.id "
                f"RETURNING {', '.join('t.' + c.strip() for c in _COLUMNS.split(','))}",
                args,
            ).fetchall()
            return sorted((_task(r) for r in rows), key=lambda t: t.id)

        return self.transaction(work)

    def _change(
        self, ids: Sequence[int], worker: str, sets: str, args: tuple[Any, ...]
    ) -> list[int]:
        wanted = _ids(ids)
        if not wanted:
            return []

        def work(conn: Conn) -> list[int]:
            rows = conn.execute(
                f"UPDATE iapo.tasks SET {sets} WHERE id = ANY(%s::bigint[]) "
                "AND status = 'leased' AND worker = %s RETURNING id",
                (*args, wanted, worker),
            ).fetchall()
            held = {int(r[0]) for r in rows}
            return [i for i in wanted if i in held]

        return self.transaction(work)

    def renew_tasks(self, ids: Sequence[int], worker: str, ttl: float = TASK_TTL) -> list[int]:
        return self._change(ids, worker, f"expires = {NOW} + %s", (float(ttl),))

    def finish_tasks(self, ids: Sequence[int], worker: str) -> list[int]:
        return self._change(ids, worker, "status = 'done', expires = NULL", ())

    def release_tasks(self, ids: Sequence[int], worker: str) -> list[int]:
        return self._change(ids, worker, "status = 'queued', worker = NULL, expires = NULL", ())

    def fail_task(
        self, task_id: int, worker: str, error: str, *, retry_after: float = 0.0
    ) -> str | None:
        def work(conn: Conn) -> str | None:
            row = conn.execute(
                "UPDATE iapo.tasks SET attempts = attempts + 1, worker = NULL, expires = NULL, "
                f"error = %s, failed_by = %s, retry_at = {NOW} + %s, status = CASE WHEN "
                "attempts + 1 >= max_attempts THEN 'failed' ELSE 'queued' END "
                "WHERE id = %s AND status = 'leased' AND worker = %s RETURNING status",
                (error, worker, float(retry_after), int(task_id), worker),
            ).fetchone()
            return None if row is None else str(row[0])

        return self.transaction(work)

    def get_tasks(self, ids: Sequence[int]) -> dict[int, Task]:
        wanted = _ids(ids)
        if not wanted:
            return {}
        rows = self.transaction(
            lambda conn: conn.execute(
                f"SELECT {_COLUMNS} FROM iapo.tasks WHERE id = ANY(%s::bigint[]) ORDER BY id",
                (wanted,),
            ).fetchall()
        )
        return {int(r[0]): _task(r) for r in rows}

    def task_counts(self, run_id: str) -> dict[str, int]:
        rows = self.transaction(
            lambda conn: conn.execute(
                f"SELECT CASE WHEN status = 'leased' AND expires <= {NOW} THEN 'queued' "
                "ELSE status END AS state, count(*) FROM iapo.tasks WHERE run_id = %s "
                "GROUP BY state",
                (run_id,),
            ).fetchall()
        )
        counts = dict.fromkeys(TASK_STATES, 0)
        counts.update({str(r[0]): int(r[1]) for r in rows})
        return counts

    def cancel_tasks(self, run_id: str) -> int:
        return self.transaction(
            lambda conn: (
                conn.execute(
                    "DELETE FROM iapo.tasks WHERE run_id = %s AND status <> 'done'", (run_id,)
                ).rowcount
            )
        )

    def beat(self, worker: str, info: dict[str, Any]) -> None:
        text = strict_json(info)
        self.transaction(
            lambda conn: conn.execute(
                f"INSERT INTO iapo.workers (worker, seen, info) VALUES (%s, {NOW}, %s) "
                "ON CONFLICT (worker) DO UPDATE SET seen = excluded.seen, info = excluded.info",
                (worker, text),
            )
        )

    def worker_records(self) -> list[dict[str, Any]]:
        rows = self.transaction(
            lambda conn: conn.execute(
                "SELECT worker, seen, info FROM iapo.workers ORDER BY seen DESC"
            ).fetchall()
        )
        return [{**json.loads(info), "worker": w, "seen": seen} for w, seen, info in rows]

    def put_run_inputs(self, run_id: str, inputs: dict[str, Any]) -> None:
        text = strict_json(inputs)
        self.transaction(
            lambda conn: conn.execute(
                "INSERT INTO iapo.run_inputs (run_id, inputs) VALUES (%s, %s) "
                "ON CONFLICT (run_id) DO UPDATE SET inputs = excluded.inputs",
                (run_id, text),
            )
        )

    def run_inputs(self, run_id: str) -> dict[str, Any] | None:
        row = self.transaction(
            lambda conn: conn.execute(
                "SELECT inputs FROM iapo.run_inputs WHERE run_id = %s", (run_id,)
            ).fetchone()
        )
        return None if row is None else dict(json.loads(row[0]))
