"""What makes a SQLite file an iapo bank: its marks, its tables, and the migrations.

A bank carries two marks: ``PRAGMA application_id`` = :data:`APPLICATION_ID` in the file header
and the ``schema`` row of its ``meta`` table. :func:`inspect` reads a file without writing
anything and says what it is; only an empty file, a bank of this version, or a bank of an older
version recognised by its exact tables (version 1, written before the marks existed, or
version 2) is ever written to. :func:`mark` upgrades an older bank in place, inside the caller's
write transaction: a failure or a kill leaves it as it was.

Version 3 stores each distribution once (``dists``: key, prompt, query) and its samples in a
``WITHOUT ROWID`` table clustered by (distribution id, index); versions 1-2 repeated the key,
prompt and query on every sample row. Version 4 adds the task queue of distributed sampling
(``tasks``, ``workers``, ``run_inputs``: :mod:`iapo.bank._sqlite_queue`); a version-3 bank is
upgraded by creating them.
"""

from __future__ import annotations

import sqlite3
from typing import Literal

from iapo.bank._base import BANK_SCHEMA

__all__ = ["APPLICATION_ID", "DDL", "V2_DDL", "inspect", "mark"]

#: ``PRAGMA application_id`` of every iapo bank: the bytes ``iapo`` (0x6961706F).
APPLICATION_ID = int.from_bytes(b"iapo", "big")

_RUNS = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    budget INTEGER NOT NULL,
    spent INTEGER NOT NULL DEFAULT 0,
    config TEXT NOT NULL,
    result TEXT,
    data TEXT
);
CREATE TABLE IF NOT EXISTS claims (
    dist TEXT NOT NULL,
    idx INTEGER NOT NULL,
    owner TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (dist, idx)
);
"""

#: The task queue (version 4): ids only grow (AUTOINCREMENT), so a cancelled task's id is never
#: given to another task a driver could mistake for it. One index (what ``take`` looks up); the
#: small tables are ``WITHOUT ROWID``: an empty bank stays a few pages.
_QUEUE = """
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    dist TEXT NOT NULL,
    prompt TEXT NOT NULL,
    query TEXT NOT NULL,
    indices TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    worker TEXT,
    expires REAL,
    error TEXT,
    failed_by TEXT,
    retry_at REAL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_open ON tasks (status, id);
CREATE TABLE IF NOT EXISTS workers (
    worker TEXT PRIMARY KEY,
    seen REAL NOT NULL,
    info TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS run_inputs (
    run_id TEXT PRIMARY KEY,
    inputs TEXT NOT NULL
) WITHOUT ROWID;
"""

DDL = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dists (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    prompt TEXT NOT NULL,
    query TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    dist INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    answer TEXT,
    scores TEXT NOT NULL,
    cost REAL NOT NULL,
    text TEXT,
    usage TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (dist, idx)
) WITHOUT ROWID;
"""
    + _RUNS
    + _QUEUE
)

#: The layout of a version-2 bank (iapo 0.x up to issue #13), for tests and the migration.
V2_DDL = (
    """
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
"""
    + _RUNS
)

_OLD_SAMPLES = ["dist", "idx", "prompt", "query", "answer", "scores", "cost", "text", "usage"]
_RUN_COLUMNS = ["id", "name", "status", "created", "updated", "budget", "spent", "config", "result"]

#: The tables (and their columns, in order) of a version-1 bank.
_V1 = {
    "meta": ["key", "value"],
    "samples": [*_OLD_SAMPLES, "created"],
    "runs": _RUN_COLUMNS,
}
#: The tables (and their columns, in order) of a version-2 bank.
_V2 = {
    **_V1,
    "runs": [*_RUN_COLUMNS, "data"],
    "claims": ["dist", "idx", "owner", "expires"],
}
#: The tables (and their columns, in order) of a version-3 bank.
_V3 = {
    "meta": ["key", "value"],
    "dists": ["id", "key", "prompt", "query"],
    "samples": ["dist", "idx", "answer", "scores", "cost", "text", "usage", "created"],
    "runs": [*_RUN_COLUMNS, "data"],
    "claims": ["dist", "idx", "owner", "expires"],
}

#: Version 1 and 2 sample rows into version 3: each distribution once, then its samples.
_MIGRATE = """
CREATE TABLE dists (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    prompt TEXT NOT NULL,
    query TEXT NOT NULL
);
INSERT INTO dists (key, prompt, query)
    SELECT dist, min(prompt), min(query) FROM samples GROUP BY dist ORDER BY min(created), dist;
CREATE TABLE samples_v3 (
    dist INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    answer TEXT,
    scores TEXT NOT NULL,
    cost REAL NOT NULL,
    text TEXT,
    usage TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (dist, idx)
) WITHOUT ROWID;
INSERT INTO samples_v3 (dist, idx, answer, scores, cost, text, usage, created)
    SELECT d.id, s.idx, s.answer, s.scores, s.cost, s.text, s.usage, s.created
    FROM samples AS s JOIN dists AS d ON d.key = s.dist;
DROP TABLE samples;
ALTER TABLE samples_v3 RENAME TO samples;
"""

Kind = Literal["empty", "current", "v1", "v2", "v3"]


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]


def _exactly(db: sqlite3.Connection, tables: set[str], layout: dict[str, list[str]]) -> bool:
    return tables == set(layout) and all(_columns(db, t) == c for t, c in layout.items())


def _other_version(version: str | None) -> str:
    return (
        f"bank schema version {version}, this iapo reads versions 1 to {BANK_SCHEMA}: "
        "use a new storage path or the iapo version that wrote it"
    )


def inspect(db: sqlite3.Connection) -> Kind | str:
    """Read-only: ``"empty"`` (a new file), ``"current"`` (a bank of this version), ``"v1"``,
    ``"v2"`` or ``"v3"`` (an older bank, upgraded by :func:`mark`), or why the file is refused
    (a phrase)."""
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if app_id == 0 and not tables:
        return "empty"
    if app_id not in (0, APPLICATION_ID):
        return (
            f"this SQLite file belongs to another application (application_id {app_id}): "
            "point 'storage' elsewhere"
        )
    version = None
    if "meta" in tables and _columns(db, "meta") == _V1["meta"]:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        version = row[0] if row is not None else None
    if app_id == APPLICATION_ID:
        if version == str(BANK_SCHEMA):
            return "current"
        if version == "2" and _exactly(db, tables, _V2):
            return "v2"
        if version == "2":
            return "a version-2 bank with unexpected tables: point 'storage' elsewhere"
        if version == "3" and _exactly(db, tables, _V3):
            return "v3"
        if version == "3":
            return "a version-3 bank with unexpected tables: point 'storage' elsewhere"
        return _other_version(version)
    if version == "1" and _exactly(db, tables, _V1):
        return "v1"
    if version is not None and version != "1":
        return _other_version(version)
    return "this SQLite file is not an iapo sample bank: point 'storage' elsewhere"


def _script(db: sqlite3.Connection, script: str) -> None:
    """Run ``script`` statement by statement (``executescript`` would commit the caller's
    transaction first)."""
    for stmt in script.split(";"):
        if stmt.strip():
            db.execute(stmt)


def mark(db: sqlite3.Connection, kind: Kind) -> None:
    """Inside the caller's write transaction: create the tables of a new bank, or upgrade an
    older bank in place (its samples and runs kept), and set both marks."""
    if kind == "current":
        return
    if kind == "v1":
        db.execute("ALTER TABLE runs ADD COLUMN data TEXT")
    if kind in ("v1", "v2"):
        _script(db, _MIGRATE)
    _script(db, DDL)
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", (str(BANK_SCHEMA),))
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
