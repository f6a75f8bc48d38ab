"""The sample bank interface: what every bank (SQLite, in-memory, a database server) promises."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, Self

from iapo.bank._tasks import TaskQueue
from iapo.types import Sample

__all__ = [
    "BANK_SCHEMA",
    "CLAIM_TTL",
    "RUN_FIELDS",
    "WRITE_BATCH",
    "BankWriter",
    "PutGroup",
    "RunRecord",
    "SampleBank",
]

#: Version of the stored layout; a bank written with a newer version is refused (``BankError``).
#: Version 2 added claims and each run's data identity; version 3 stores each distribution's
#: prompt and query once; version 4 adds the task queue of distributed sampling (tasks, worker
#: heartbeats, run inputs). Older SQLite banks are upgraded in place when opened.
BANK_SCHEMA = 4

#: Rows a :class:`BankWriter` collects before it writes them, by default: a replay run's rows
#: land in many places of the bank, so a transaction costs about the same from ~4,000 rows on.
WRITE_BATCH = 4000

#: One distribution's samples for :meth:`SampleBank.put_many`:
#: ``(dist, prompt, query, [(index, sample), ...])``.
PutGroup = tuple[str, str, str, Sequence[tuple[int, Sample]]]

#: How long a claim on a sample lasts unless renewed (seconds): a claimant that died frees its
#: indices for others after at most this long.
CLAIM_TTL = 60.0

#: A run record: a plain dict with exactly the keys of :data:`RUN_FIELDS`.
RunRecord = dict[str, Any]

#: The keys of every :data:`RunRecord` that :meth:`SampleBank.runs` returns.
RUN_FIELDS = (
    "id",
    "name",
    "status",
    "created",
    "updated",
    "budget",
    "spent",
    "config",
    "result",
    "data",
)


class SampleBank(TaskQueue, ABC):
    """Every completion drawn, keyed by (distribution key, sample index), and the runs' records.

    Contract (checked by :class:`iapo.testing.BankSuite`):

    * **Samples.** A distribution key (a backend's ``cache_key``) names one sampling distribution;
      sample ``i`` of it is stored once. :meth:`put` is idempotent: an index already stored keeps
      its first value, whoever writes it again (other threads, other bank objects on the same
      storage). :meth:`get` returns only stored samples, every :class:`~iapo.types.Sample` field
      round-tripped (``answer`` may be None; ``cost`` comes back as a float).
    * **Batches.** :meth:`put_many` stores several distributions' samples at once (a bank with
      transactions: in one, all or none of it), :meth:`get_many` reads several: what a
      caller that batches (a study replaying a pool writes a round, or ~4,000 rows, at a time)
      uses to pay one transaction per batch instead of one per pull. Same semantics as
      :meth:`put` and :meth:`get` per group.
    * **Claims.** Before drawing sample ``i`` of a distribution, a sampler :meth:`claim` s it:
      a lease of ``ttl`` seconds that no other owner gets while it lasts, so concurrent runs
      never pay twice for one index; they :meth:`wait` for it instead. Storing an index ends
      its lease; :meth:`release` ends it without storing (anyone naming the owner may, e.g.
      for a claimant known to be dead: :meth:`holders` says who holds what); a lease not
      renewed expires (its claimant died).
    * **Runs.** :meth:`start_run`, :meth:`update_run` and :meth:`runs` keep each run's status
      (``running``, ``done``, ``stopped``, ``interrupted``, ...), completions spent, result and
      config, and ``data``: the identity of the data the run used (e.g. a pool's content hash), so a
      later run can tell it was built from different data. ``config`` and ``result`` are JSON
      objects and come back as fresh copies decoded
      from JSON.
    * **Task queue** (optional: :class:`~iapo.bank.TaskQueue`, checked by
      :class:`iapo.testing.QueueSuite`): the tasks of distributed sampling workers.
    * **Lifetime.** Methods are thread-safe. :meth:`close` is idempotent; nothing else may be
      called after it. A bank is a context manager that closes on exit. ``url`` names the storage:
      for a persistent bank, opening ``url`` again gives the same samples and runs.
    """

    url: str

    @abstractmethod
    def get(self, dist: str, indices: Sequence[int]) -> dict[int, Sample]:
        """The stored samples of ``dist`` among ``indices`` (missing indices are left out)."""

    @abstractmethod
    def put(self, dist: str, prompt: str, query: str, items: Iterable[tuple[int, Sample]]) -> None:
        """Store ``(index, sample)`` pairs of ``dist`` (drawn for ``prompt`` on ``query``); an
        index already stored keeps its first value. Written before this returns."""

    def put_many(self, groups: Iterable[PutGroup], *, texts: bool = True) -> None:
        """Store every group ``(dist, prompt, query, items)`` as :meth:`put` would, written
        before this returns; a bank whose storage has transactions writes them in one (all, or
        after a failure none). ``texts=False``: store the samples without their texts (a
        ``reproducible`` backend's, whose texts are re-derived on read). Default: :meth:`put`
        per group."""
        for dist, prompt, query, items in groups:
            if not texts:
                items = [(i, s if s.text is None else replace(s, text=None)) for i, s in items]
            self.put(dist, prompt, query, items)

    def get_many(self, wanted: Sequence[tuple[str, Sequence[int]]]) -> list[dict[int, Sample]]:
        """:meth:`get` for each ``(dist, indices)`` of ``wanted``, in order. Default: one
        :meth:`get` each (a bank with a cheaper bulk read overrides this)."""
        return [self.get(dist, indices) for dist, indices in wanted]

    def writer(self, rows: int = WRITE_BATCH, *, texts: bool = True) -> BankWriter:
        """A :class:`BankWriter` that stores into this bank ``rows`` samples per write (without
        their texts if not ``texts``)."""
        return BankWriter(self, rows, texts=texts)

    @abstractmethod
    def claim(self, dist: str, indices: Sequence[int], owner: str, ttl: float) -> list[int]:
        """Lease the indices of ``dist`` among ``indices`` that are neither stored nor leased by
        another owner (a lapsed lease counts as free) to ``owner`` for ``ttl`` seconds, and
        return them in the order given. Indices ``owner`` already holds are renewed and
        returned. Atomic across every bank object on the same storage."""

    @abstractmethod
    def release(self, dist: str, indices: Sequence[int], owner: str) -> None:
        """End ``owner``'s leases on ``indices`` of ``dist`` (others' leases are kept)."""

    @abstractmethod
    def holders(self, dist: str, indices: Sequence[int]) -> dict[int, str]:
        """The owners of the live (unexpired) leases among ``indices`` of ``dist``."""

    async def wait(self, dist: str, indices: Sequence[int], poll: float) -> dict[int, Sample]:
        """Wait for other claimants: after about ``poll`` seconds, the stored samples of
        ``dist`` among ``indices`` (possibly none yet). The event loop is never blocked.
        Default: sleep, then :meth:`get` in a worker thread."""
        await asyncio.sleep(poll)
        return await asyncio.to_thread(self.get, dist, indices)

    @abstractmethod
    def start_run(
        self,
        run_id: str,
        name: str,
        budget: int,
        config: dict[str, Any],
        data: str | None = None,
    ) -> None:
        """Record a run as ``running`` with nothing spent and no result. For an id already
        recorded (a resumed run) only ``status`` (back to ``running``), ``updated`` and, when
        given, ``data`` change: name, budget, config, spent, result and ``created`` are
        kept."""

    @abstractmethod
    def update_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        spent: int | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        """Set the given fields of a recorded run, and ``updated`` to now; fields left None keep
        their value. An id never started is ignored."""

    @abstractmethod
    def runs(self) -> list[RunRecord]:
        """Every recorded run, oldest ``created`` first, as dicts with the keys of
        :data:`RUN_FIELDS` (``created``/``updated`` in seconds since the epoch, ``result`` None
        until one is set, ``data`` None if never given)."""

    @abstractmethod
    def close(self) -> None:
        """Release the storage (idempotent)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BankWriter:
    """Samples collected for one bank and written :meth:`SampleBank.put_many` at a time: the
    caller decides when (:meth:`add` says when ``rows`` samples are waiting; :meth:`flush`
    writes them). As a context manager it flushes on exit, also when the block fails, so what
    was collected is kept. Not thread-safe: one writer per task.

    What is collected but not yet flushed is lost if the process dies: use it for samples that
    can be drawn again (a replayed pool), not for completions that were paid for.
    """

    def __init__(self, bank: SampleBank, rows: int = WRITE_BATCH, *, texts: bool = True) -> None:
        self.bank = bank
        self.rows = max(1, int(rows))
        self.texts = texts
        self.pending: list[PutGroup] = []
        self.waiting = 0

    def add(self, dist: str, prompt: str, query: str, items: Sequence[tuple[int, Sample]]) -> bool:
        """Collect ``items`` of ``dist`` (as :meth:`SampleBank.put` takes them); True when
        ``rows`` or more samples are waiting (time to :meth:`flush`)."""
        if items:
            self.pending.append((dist, prompt, query, items))
            self.waiting += len(items)
        return self.waiting >= self.rows

    def take(self) -> list[PutGroup]:
        """What is waiting, handed over for the caller to write (e.g. in a worker thread while
        it collects more); nothing is waiting after."""
        groups, self.pending, self.waiting = self.pending, [], 0
        return groups

    def write(self, groups: list[PutGroup]) -> None:
        """Write ``groups`` (what :meth:`take` handed over) in one :meth:`SampleBank.put_many`."""
        if groups:
            self.bank.put_many(groups, texts=self.texts)

    def flush(self) -> None:
        """Write what is waiting in one :meth:`SampleBank.put_many` (nothing waiting: no
        write). After a failed write nothing is waiting any more."""
        self.write(self.take())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()
