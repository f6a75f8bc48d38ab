"""What makes a SQLite file an iapo bank: its marks, its tables, and the one migration.

A bank carries two marks: ``PRAGMA application_id`` = :data:`APPLICATION_ID` in the file header
and the ``schema`` row of its ``meta`` table. :func:`inspect` reads a file without writing
anything and says what it is; only an empty file, a bank of this version, or a version-1 bank
(written before the marks existed, recognised by its exact tables) is ever written to.
"""

from __future__ import annotations

import sqlite3
from typing import Literal

from iapo.bank._base import BANK_SCHEMA

__all__ = ["APPLICATION_ID", "DDL", "inspect", "mark"]

#: ``PRAGMA application_id`` of every iapo bank: the bytes ``iapo`` (0x6961706F).
APPLICATION_ID = int.from_bytes(b"iapo", "big")

DDL = """
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

#: The tables (and their columns, in order) of a version-1 bank.
_V1 = {
    "meta": ["key", "value"],
    "samples": [
        "dist",
        "idx",
        "prompt",
        "query",
        "answer",
        "scores",
        "cost",
        "text",
        "usage",
        "created",
    ],
    "runs": ["id", "name", "status", "created", "updated", "budget", "spent", "config", "result"],
}

Kind = Literal["empty", "current", "v1"]


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]


def inspect(db: sqlite3.Connection) -> Kind | str:
    """Read-only: ``"empty"`` (a new file), ``"current"`` (a bank of this version), ``"v1"`` (a
    version-1 bank, migrated by :func:`mark`), or why the file is refused (a phrase)."""
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
        return (
            f"bank schema version {version}, this iapo reads version {BANK_SCHEMA}: "
            "use a new storage path or the iapo version that wrote it"
        )
    if version == "1" and tables == set(_V1) and all(_columns(db, t) == c for t, c in _V1.items()):
        return "v1"
    if version is not None and version != "1":
        return (
            f"bank schema version {version}, this iapo reads version {BANK_SCHEMA}: "
            "use a new storage path or the iapo version that wrote it"
        )
    return "this SQLite file is not an iapo sample bank: point 'storage' elsewhere"


def mark(db: sqlite3.Connection, kind: Kind) -> None:
    """Inside the caller's write transaction: create the tables of a new bank, or migrate a
    version-1 bank in place (its samples and runs kept), and set both marks."""
    if kind == "current":
        return
    if kind == "v1":
        db.execute("ALTER TABLE runs ADD COLUMN data TEXT")
    for stmt in DDL.split(";"):
        if stmt.strip():
            db.execute(stmt)
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", (str(BANK_SCHEMA),))
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
