"""The SQLite sample bank: every completion drawn, stored by (distribution key, sample index).

The bank is a run's source of truth. Completions are written as soon as they arrive (WAL mode,
one transaction per pull), so a crash loses nothing already paid for, and a re-run with the same
configuration re-derives its state from the bank instead of sampling again.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from iapo.bank._base import BANK_SCHEMA, RunRecord, SampleBank
from iapo.errors import BankError
from iapo.types import Sample

__all__ = ["SQLiteBank"]

#: How long opening a bank waits for other processes that are opening it too (seconds).
_OPEN_TIMEOUT = 60.0

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    dist TEXT NOT NULL,
    idx INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    query TEXT NOT NULL,
    answer TEXT,
    scores TEXT NOT NULL,
    cost REAL NOT NULL,
    text TEXT,
    usage TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (dist, idx)
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    budget INTEGER NOT NULL,
    spent INTEGER NOT NULL DEFAULT 0,
    config TEXT NOT NULL,
    result TEXT
);
"""


class SQLiteBank(SampleBank):
    """A :class:`SampleBank` in one SQLite file (created with its folder if missing), shared
    safely by threads and by several processes. A file that is not an iapo bank, or a bank of
    another :data:`BANK_SCHEMA`, is refused with a :class:`~iapo.errors.BankError` and left
    untouched."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
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

    def _prepare(self) -> None:
        self._db.execute("PRAGMA busy_timeout = 60000")
        # Processes opening one new bank at the same moment can get SQLITE_BUSY at once, without
        # the busy handler (SQLite's deadlock avoidance while the file's journal mode changes):
        # every step here is idempotent, so wait a little and try again.
        deadline = time.monotonic() + _OPEN_TIMEOUT
        delay = 0.005
        while True:
            try:
                self._refuse_foreign()  # before anything writes to the file
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = NORMAL")
                self._check_schema()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay * (1.0 + random.random()))
                delay = min(delay * 2, 0.5)

    def _refuse_foreign(self) -> None:
        """Read-only check: a file that is not an iapo bank, or one of another schema version."""
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        if not tables:
            return
        if "meta" not in tables:
            raise BankError(
                "this SQLite file is not an iapo sample bank: point 'storage' elsewhere",
                source=str(self.path),
                field="storage",
            )
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is not None and row[0] != str(BANK_SCHEMA):
            raise BankError(
                f"bank schema version {row[0]}, this iapo reads version {BANK_SCHEMA}: "
                "use a new storage path or the iapo version that wrote it",
                source=str(self.path),
                field="storage",
            )

    def _check_schema(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _DDL.split(";"):
                if stmt.strip():
                    self._db.execute(stmt)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(BANK_SCHEMA),)
                )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._db.close()

    # -- samples ------------------------------------------------------------------------
    def get(self, dist: str, indices: Sequence[int]) -> dict[int, Sample]:
        """The stored samples of ``dist`` among ``indices``."""
        if not indices:
            return {}
        with self._lock:
            rows = self._db.execute(
                "SELECT idx, answer, scores, cost, text, usage FROM samples "
                "WHERE dist = ? AND idx BETWEEN ? AND ?",
                (dist, min(indices), max(indices)),
            ).fetchall()
        wanted = set(indices)
        return {
            r[0]: Sample(
                answer=r[1],
                scores=json.loads(r[2]),
                cost=r[3],
                text=r[4],
                usage=json.loads(r[5]) if r[5] else {},
            )
            for r in rows
            if r[0] in wanted
        }

    def put(self, dist: str, prompt: str, query: str, items: Iterable[tuple[int, Sample]]) -> None:
        """Store samples in one transaction (an index already stored keeps its first value)."""
        now = time.time()
        rows = [
            (
                dist,
                i,
                prompt,
                query,
                s.answer,
                json.dumps(dict(s.scores)),
                float(s.cost),
                s.text,
                json.dumps(dict(s.usage)) if s.usage else None,
                now,
            )
            for i, s in items
        ]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO samples VALUES (?,?,?,?,?,?,?,?,?,?)", rows
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # -- runs ---------------------------------------------------------------------------
    def start_run(self, run_id: str, name: str, budget: int, config: dict[str, Any]) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO runs (id, name, status, created, updated, budget, config) "
                "VALUES (?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET status='running', "
                "updated=excluded.updated",
                (run_id, name, "running", now, now, budget, json.dumps(config)),
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
            args.append(json.dumps(result))
        with self._lock:
            self._db.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*args, run_id))

    def runs(self) -> list[RunRecord]:
        with self._lock:
            cur = self._db.execute(
                "SELECT id, name, status, created, updated, budget, spent, config, result "
                "FROM runs ORDER BY created"
            )
            cols = [d[0] for d in cur.description]
            rows = cur.fetchall()
        out = []
        for row in rows:
            rec = dict(zip(cols, row, strict=True))
            rec["config"] = json.loads(rec["config"])
            rec["result"] = json.loads(rec["result"]) if rec["result"] else None
            out.append(rec)
        return out
