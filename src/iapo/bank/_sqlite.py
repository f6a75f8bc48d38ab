"""The SQLite sample bank: every completion drawn, stored by (distribution key, sample index).

The bank is a run's source of truth. Completions are written as soon as the caller hands them
over (WAL mode, one transaction per :meth:`SQLiteBank.put` or :meth:`SQLiteBank.put_many`), so a
crash loses nothing already handed over, and a re-run with the same configuration re-derives its
state from the bank instead of sampling again. Claims (a ``claims`` table of leases) keep
concurrent runs from paying twice. The file's marks, layout and migrations are in
:mod:`iapo.bank._sqlite_schema`.
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from iapo.bank._base import PutGroup, RunRecord, SampleBank
from iapo.bank._sqlite_queue import SQLiteQueue
from iapo.bank._sqlite_rows import Codec
from iapo.bank._sqlite_schema import inspect, mark
from iapo.errors import BankError, StorageError
from iapo.fmt import strict_json
from iapo.types import Sample

T = TypeVar("T")

__all__ = ["SQLiteBank"]

#: How long opening a bank waits for other processes that are opening it too (seconds).
_OPEN_TIMEOUT = 60.0
#: How long a read or write waits for a bank locked by another connection, by default (seconds).
BUSY_LIMIT = 60.0


def _busy(exc: sqlite3.Error) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _cause(exc: sqlite3.Error, busy_limit: float) -> str:
    """The one-line cause and fix of a failed bank operation."""
    text = str(exc)
    if _busy(exc):
        return (
            f"the bank stayed locked by another process for over {busy_limit:g} s ({text}): "
            "let that process finish, then run the same command again to resume"
        )
    if "full" in text:
        return f"the disk is full ({text}): free space, then run the same command again to resume"
    return f"{text}: check the disk and the file, then run the same command again to resume"


class SQLiteBank(SQLiteQueue, SampleBank):
    """A :class:`SampleBank` in one SQLite file (created with its folder if missing), shared
    safely by threads and by several processes. A file that is not an iapo bank, or a bank of
    another :data:`BANK_SCHEMA`, is refused with a :class:`~iapo.errors.BankError` and left
    untouched (a bank is marked with ``PRAGMA application_id`` and its schema row; a version-1
    bank, from before the marks, is recognised by its exact tables and migrated in place).

    A read or write that finds the bank locked by another connection retries with backoff for
    up to ``busy_limit`` seconds; then, and on any I/O failure (disk full, a read-only or
    vanished file), it raises a one-line :class:`~iapo.errors.StorageError` naming the bank and
    the cause. A failed write leaves the bank as it was before it.
    """

    def __init__(self, path: str | Path, *, busy_limit: float = BUSY_LIMIT) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.busy_limit = float(busy_limit)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=60.0, check_same_thread=False, isolation_level=None
            )
            try:
                self._prepare()
            except BaseException:
                self._db.close()  # a refused file keeps no connection (nor WAL files) open
                raise
        except sqlite3.DatabaseError as exc:
            if _busy(exc):
                raise StorageError(
                    f"{self.path}: sample bank: {_cause(exc, self.busy_limit)}"
                ) from None
            raise BankError(
                f"cannot open the sample bank ({exc}): check the path and permissions",
                source=str(self.path),
                field="storage",
            ) from None
        except OSError as exc:
            why = exc.strerror
            if self.path.parent.exists() and not self.path.parent.is_dir():
                why = f"{self.path.parent} is a file"
            elif isinstance(exc, FileExistsError):
                why = "a file stands where a folder is needed"
            raise BankError(
                f"cannot create the bank's folder ({why}): choose a writable path",
                source=str(self.path),
                field="storage",
            ) from None
        self._lock = threading.Lock()
        self._ids: dict[str, int] = {}  # distribution key -> id, for committed ids only
        self._codec = Codec()

    def _prepare(self) -> None:
        self._db.execute(f"PRAGMA busy_timeout = {int(min(self.busy_limit, 1.0) * 1000)}")
        # Processes opening one new bank at the same moment can get SQLITE_BUSY at once, without
        # the busy handler (SQLite's deadlock avoidance while the file's journal mode changes):
        # every step here is idempotent, so wait a little and try again.
        deadline = time.monotonic() + min(_OPEN_TIMEOUT, self.busy_limit)
        delay = 0.005
        while True:
            try:
                kind = self._refuse_foreign()  # before anything writes to the file
                if kind != "current":
                    self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = NORMAL")
                if kind != "current":
                    self._mark()
                return
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay * (1.0 + random.random()))
                delay = min(delay * 2, 0.5)

    def _refuse_foreign(self) -> str:
        """Read-only: what the file is (see :func:`inspect`), or a ``BankError`` refusing it."""
        if self._db.in_transaction:
            kind = inspect(self._db)
        else:  # one snapshot: the header and the tables as one writer left them
            self._db.execute("BEGIN")
            try:
                kind = inspect(self._db)
            finally:
                self._db.execute("COMMIT")
        if kind not in ("empty", "current", "v1", "v2", "v3"):
            raise BankError(kind, source=str(self.path), field="storage")
        return kind

    def _mark(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            kind = self._refuse_foreign()  # again, now that no one else can write
            if kind == "current":
                self._db.execute("COMMIT")
                return
            mark(self._db, kind)  # type: ignore[arg-type]
        except BaseException:
            self._rollback()
            raise
        self._db.execute("COMMIT")
        if kind in ("v1", "v2"):  # a rewritten bank: give back the old layout's pages, if we can
            with contextlib.suppress(sqlite3.Error):  # (busy, or no room: the bank is fine)
                self._db.execute("VACUUM")

    def _rollback(self) -> None:
        """Roll back the open transaction, if SQLite has not already (after SQLITE_FULL it has:
        a second ROLLBACK would hide the real error behind "no transaction is active")."""
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # unusable: the original error says why
                self._db.execute("ROLLBACK")

    def _retry(self, work: Callable[[], T], *, write: bool) -> T:
        """``work()`` under the lock (in one write transaction if ``write``), retried with
        backoff while the bank is locked elsewhere, up to ``busy_limit`` seconds; any SQLite
        failure becomes a :class:`StorageError` naming the bank and the cause."""
        deadline = time.monotonic() + self.busy_limit
        delay = 0.01
        with self._lock:
            while True:
                try:
                    if not write:
                        return work()
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        out = work()
                        self._db.execute("COMMIT")
                    except BaseException:
                        self._rollback()
                        raise
                    return out
                except sqlite3.Error as exc:
                    if _busy(exc) and time.monotonic() + delay < deadline:
                        time.sleep(delay * (1.0 + random.random()))
                        delay = min(delay * 2, 1.0)
                        continue
                    raise StorageError(
                        f"{self.path}: sample bank: {_cause(exc, self.busy_limit)}"
                    ) from None

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._db.close()

    # -- samples ------------------------------------------------------------------------
    def _known(self, keys: Iterable[str]) -> dict[str, int]:
        """The ids of the distributions among ``keys`` that the bank holds (under the lock).
        Ids are never reused or changed once committed, so they are cached."""
        ids = self._ids
        out = {k: ids[k] for k in keys if k in ids}
        for key in keys:
            if key not in out:
                row = self._db.execute("SELECT id FROM dists WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    out[key] = ids[key] = row[0]
        return out

    def _select(self, dist_id: int, indices: Sequence[int]) -> dict[int, Sample]:
        rows = self._db.execute(
            "SELECT idx, answer, scores, cost, text, usage FROM samples "
            "WHERE dist = ? AND idx BETWEEN ? AND ?",
            (dist_id, min(indices), max(indices)),
        ).fetchall()
        wanted = indices if isinstance(indices, range) else set(indices)
        decode = self._codec.decode
        return {r[0]: decode(*r[1:]) for r in rows if r[0] in wanted}

    def get(self, dist: str, indices: Sequence[int]) -> dict[int, Sample]:
        """The stored samples of ``dist`` among ``indices``."""
        return self.get_many([(dist, indices)])[0]

    def get_many(self, wanted: Sequence[tuple[str, Sequence[int]]]) -> list[dict[int, Sample]]:
        """The stored samples of each ``(dist, indices)``, read under one lock."""

        def work() -> list[dict[int, Sample]]:
            ids = self._known({d for d, idx in wanted if idx})
            return [self._select(ids[d], idx) if idx and d in ids else {} for d, idx in wanted]

        return self._retry(work, write=False)

    def put(self, dist: str, prompt: str, query: str, items: Iterable[tuple[int, Sample]]) -> None:
        """Store samples in one transaction (an index already stored keeps its first value) and
        end their claims."""
        self.put_many([(dist, prompt, query, list(items))])

    def put_many(self, groups: Iterable[PutGroup], *, texts: bool = True) -> None:
        """Store every group's samples in one transaction (an index already stored keeps its
        first value; without their texts if not ``texts``) and end their claims."""
        now = time.time()
        batch = [(d, p, q, list(items)) for d, p, q, items in groups]
        if not any(b[3] for b in batch):
            return

        def work() -> dict[str, int]:
            db, new = self._db, {}
            ids = self._known({b[0] for b in batch})
            for dist, prompt, query, items in batch:
                if dist not in ids and items:
                    cur = db.execute(
                        "INSERT INTO dists (key, prompt, query) VALUES (?,?,?)",
                        (dist, prompt, query),
                    )
                    ids[dist] = new[dist] = int(cur.lastrowid or 0)
            enc = self._codec.encode if texts else self._codec.encode_bare
            rows = [(ids[d], i, *enc(s), now) for d, _, _, items in batch for i, s in items]
            db.executemany("INSERT OR IGNORE INTO samples VALUES (?,?,?,?,?,?,?,?)", rows)
            if db.execute("SELECT 1 FROM claims LIMIT 1").fetchone() is not None:
                db.executemany(
                    "DELETE FROM claims WHERE dist = ? AND idx = ?",
                    [(d, i) for d, _, _, items in batch for i, _ in items],
                )
            return new

        new = self._retry(work, write=True)
        with self._lock:  # only ids whose rows were committed
            self._ids.update(new)

    def claim(self, dist: str, indices: Sequence[int], owner: str, ttl: float) -> list[int]:
        """Lease the free indices (neither stored nor leased by another live owner)."""
        if not indices:
            return []
        lo, hi = min(indices), max(indices)

        def work() -> list[int]:
            now = time.time()
            stored = {
                r[0]
                for r in self._db.execute(
                    "SELECT idx FROM samples WHERE dist = (SELECT id FROM dists WHERE key = ?) "
                    "AND idx BETWEEN ? AND ?",
                    (dist, lo, hi),
                )
            }
            held = {
                r[0]
                for r in self._db.execute(
                    "SELECT idx FROM claims WHERE dist = ? AND idx BETWEEN ? AND ? "
                    "AND owner != ? AND expires > ?",
                    (dist, lo, hi, owner, now),
                )
            }
            mine = [i for i in indices if i not in stored and i not in held]
            self._db.executemany(
                "INSERT OR REPLACE INTO claims VALUES (?,?,?,?)",
                [(dist, i, owner, now + ttl) for i in mine],
            )
            return mine

        return self._retry(work, write=True)

    def holders(self, dist: str, indices: Sequence[int]) -> dict[int, str]:
        """The owners of the live leases among ``indices``."""
        if not indices:
            return {}
        rows = self._retry(
            lambda: self._db.execute(
                "SELECT idx, owner FROM claims WHERE dist = ? AND idx BETWEEN ? AND ? "
                "AND expires > ?",
                (dist, min(indices), max(indices), time.time()),
            ).fetchall(),
            write=False,
        )
        wanted = set(indices)
        return {r[0]: r[1] for r in rows if r[0] in wanted}

    def release(self, dist: str, indices: Sequence[int], owner: str) -> None:
        """End ``owner``'s leases on ``indices``."""
        self._retry(
            lambda: self._db.executemany(
                "DELETE FROM claims WHERE dist = ? AND idx = ? AND owner = ?",
                [(dist, i, owner) for i in indices],
            ),
            write=True,
        )

    # -- runs ---------------------------------------------------------------------------
    def start_run(
        self,
        run_id: str,
        name: str,
        budget: int,
        config: dict[str, Any],
        data: str | None = None,
    ) -> None:
        now = time.time()
        self._retry(
            lambda: self._db.execute(
                "INSERT INTO runs (id, name, status, created, updated, budget, config, data) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET status='running', "
                "updated=excluded.updated, data=coalesce(excluded.data, data)",
                (run_id, name, "running", now, now, budget, strict_json(config), data),
            ),
            write=True,
        )

    def update_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        spent: int | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        sets: list[str] = ["updated = ?"]
        args: list[Any] = [time.time()]
        if status is not None:
            sets.append("status = ?")
            args.append(status)
        if spent is not None:
            sets.append("spent = ?")
            args.append(spent)
        if result is not None:
            sets.append("result = ?")
            args.append(strict_json(result))
        sql = f"UPDATE runs SET {', '.join(sets)} WHERE id = ?"
        self._retry(lambda: self._db.execute(sql, (*args, run_id)), write=True)

    def runs(self) -> list[RunRecord]:
        def work() -> tuple[list[str], list[Any]]:
            cur = self._db.execute(
                "SELECT id, name, status, created, updated, budget, spent, config, result, data "
                "FROM runs ORDER BY created"
            )
            return [d[0] for d in cur.description], cur.fetchall()

        cols, rows = self._retry(work, write=False)
        out = []
        for row in rows:
            rec = dict(zip(cols, row, strict=True))
            rec["config"] = json.loads(rec["config"])
            rec["result"] = json.loads(rec["result"]) if rec["result"] else None
            out.append(rec)
        return out
