"""The task queue of a sample bank: what distributed sampling workers take, draw and finish.

A driver (``iapo run`` with ``execution: {mode: distributed}``) keeps the algorithm and
:meth:`TaskQueue.publish` es each pull's missing sample indices as a :class:`Task`; workers
(``iapo worker``) on any machine :meth:`TaskQueue.take` tasks under a lease, draw them from their
own endpoint into the bank (through the bank's claims, so each (distribution, index) is paid
once even when a lapsed task is taken twice) and :meth:`TaskQueue.finish_tasks` them. Workers
:meth:`TaskQueue.beat` so the driver can show who is drawing, and how fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_ATTEMPTS",
    "TASK_STATES",
    "TASK_TTL",
    "Task",
    "TaskQueue",
    "TaskSpec",
]

#: How long a worker's lease on a task lasts unless renewed (seconds).
TASK_TTL = 60.0
#: How many failed attempts a task gets before it is ``failed`` for good, by default.
MAX_ATTEMPTS = 3
#: The states :meth:`TaskQueue.task_counts` reports.
TASK_STATES = ("queued", "leased", "done", "failed")

#: A task to publish: ``(dist, prompt_id, query_id, indices)``.
TaskSpec = tuple[str, str, str, Sequence[int]]


@dataclass(frozen=True)
class Task:
    """One pull's missing samples: indices ``indices`` of distribution ``dist`` (the backend's
    ``cache_key(prompt, query)``) for run ``run_id``.

    ``status`` is ``queued``, ``leased`` (to ``worker`` until ``expires``, seconds since the
    epoch), ``done`` or ``failed``; ``attempts`` counts failed attempts, ``error`` is the last
    one's message."""

    id: int
    run_id: str
    dist: str
    prompt: str
    query: str
    indices: tuple[int, ...]
    status: str = "queued"
    attempts: int = 0
    max_attempts: int = MAX_ATTEMPTS
    worker: str | None = None
    expires: float | None = None
    error: str | None = None


class TaskQueue:
    """The task-queue part of the :class:`~iapo.bank.SampleBank` contract (checked by
    :class:`iapo.testing.QueueSuite`). A bank without a queue keeps these defaults, which raise
    ``NotImplementedError``.

    * :meth:`publish` adds tasks (``queued``); ids grow with publication order.
    * :meth:`take` leases to ``worker`` up to ``limit`` tasks that are queued or whose lease
      lapsed, oldest first, atomically across every bank object on the storage: a task is never
      held by two live leases. A task ``worker`` failed is not offered to it again before its
      ``retry_after`` delay is over (others may take it at once).
    * :meth:`renew_tasks`, :meth:`finish_tasks`, :meth:`release_tasks` and :meth:`fail_task`
      act only on tasks ``worker`` holds (status ``leased`` to it, even if the lease lapsed,
      as long as nobody took it since); anything else is left alone.
    * :meth:`fail_task` counts an attempt: the task is queued again, or ``failed`` with the
      error once it has had ``max_attempts``. :meth:`release_tasks` gives tasks back uncounted
      (a worker stopping, or refusing a run whose distribution it cannot serve).
    * :meth:`task_counts` counts a run's tasks by state (a lapsed lease counts as queued);
      :meth:`cancel_tasks` removes every task of a run that is not done.
    * :meth:`beat` records a worker's heartbeat (its latest ``info``, a JSON object, and the
      time); :meth:`worker_records` lists them.
    * :meth:`put_run_inputs` / :meth:`run_inputs` keep what a run's workers need beyond its
      recorded config (a JSON object: its queries).
    """

    def _no_queue(self) -> NotImplementedError:
        return NotImplementedError(f"{type(self).__name__} has no task queue")

    def publish(
        self, run_id: str, tasks: Sequence[TaskSpec], *, max_attempts: int = MAX_ATTEMPTS
    ) -> list[int]:
        """Queue ``tasks`` for ``run_id``; their ids, in order."""
        raise self._no_queue()

    def take(
        self,
        worker: str,
        limit: int,
        ttl: float = TASK_TTL,
        *,
        run_id: str | None = None,
        exclude: Sequence[str] = (),
    ) -> list[Task]:
        """Lease up to ``limit`` available tasks (of ``run_id`` only, if given; none of the runs
        in ``exclude``) to ``worker`` for ``ttl`` seconds, oldest first."""
        raise self._no_queue()

    def renew_tasks(self, ids: Sequence[int], worker: str, ttl: float = TASK_TTL) -> list[int]:
        """Extend ``worker``'s leases on ``ids`` by ``ttl`` from now; the ids it still holds."""
        raise self._no_queue()

    def finish_tasks(self, ids: Sequence[int], worker: str) -> list[int]:
        """Mark the tasks of ``ids`` that ``worker`` holds ``done``; those ids."""
        raise self._no_queue()

    def release_tasks(self, ids: Sequence[int], worker: str) -> list[int]:
        """Queue again, attempts unchanged, the tasks of ``ids`` that ``worker`` holds."""
        raise self._no_queue()

    def fail_task(
        self, task_id: int, worker: str, error: str, *, retry_after: float = 0.0
    ) -> str | None:
        """Count a failed attempt of a task ``worker`` holds: queued again (not offered to
        ``worker`` for ``retry_after`` seconds), or ``failed`` with ``error`` after its
        ``max_attempts``. The new status, or None if ``worker`` did not hold it."""
        raise self._no_queue()

    def get_tasks(self, ids: Sequence[int]) -> dict[int, Task]:
        """The tasks of ``ids`` that exist (cancelled ones are gone), by id."""
        raise self._no_queue()

    def task_counts(self, run_id: str) -> dict[str, int]:
        """``run_id``'s tasks per state of :data:`TASK_STATES` (every key present)."""
        raise self._no_queue()

    def cancel_tasks(self, run_id: str) -> int:
        """Remove every task of ``run_id`` that is not done; how many were removed."""
        raise self._no_queue()

    def beat(self, worker: str, info: dict[str, Any]) -> None:
        """Record ``worker``'s heartbeat: ``info`` (a JSON object) replaces the last one."""
        raise self._no_queue()

    def worker_records(self) -> list[dict[str, Any]]:
        """Every worker's last heartbeat: its ``info`` with ``worker`` and ``seen`` (seconds
        since the epoch) added, most recently seen first."""
        raise self._no_queue()

    def put_run_inputs(self, run_id: str, inputs: dict[str, Any]) -> None:
        """Keep ``inputs`` (a JSON object) for ``run_id``'s workers, replacing earlier ones."""
        raise self._no_queue()

    def run_inputs(self, run_id: str) -> dict[str, Any] | None:
        """What :meth:`put_run_inputs` kept for ``run_id`` (a fresh copy), or None."""
        raise self._no_queue()
