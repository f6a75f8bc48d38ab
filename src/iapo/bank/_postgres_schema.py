"""What makes a PostgreSQL database an iapo bank: the ``iapo`` schema, its tables, migrations.

Every table lives in one PostgreSQL schema, :data:`SCHEMA` (``iapo``), so a bank can share a
database with other applications; the ``iapo.meta`` row ``schema`` holds the layout's version
(:data:`~iapo.bank.BANK_SCHEMA`'s numbering). :func:`inspect` reads a database without writing
and says what it holds; :func:`migrate` brings an empty database, or a bank of an older version,
to :data:`LATEST` in one transaction under an advisory lock (processes opening one new bank at
the same moment create it once), and refuses anything else with a
:class:`~iapo.errors.BankError`, writing nothing.

Migrations are :data:`STEPS`: ``(version, step)`` in increasing order, each step the DDL (or a
function of the connection) that turns version ``version - 1`` into ``version``; a new database
runs them all. The first PostgreSQL layout is version 3, the SQLite layout of the same version
(each distribution's key, prompt and query once in ``dists``; samples by (distribution id,
index); ``claims``; ``runs`` with ``data``). Version 4 adds the task queue of distributed
sampling (``tasks``, ``workers``, ``run_inputs``: :mod:`iapo.bank._postgres_queue`), as in
SQLite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from iapo.bank._sqlite_schema import APPLICATION_ID

__all__ = [
    "LATEST",
    "NOW",
    "SCHEMA",
    "STEPS",
    "V3",
    "V4",
    "Step",
    "inspect",
    "migrate",
    "other_version",
]

#: The server's clock in seconds since the epoch, fixed for one statement.
NOW = "extract(epoch FROM statement_timestamp())::float8"

#: The PostgreSQL schema (namespace) that holds every table of a bank.
SCHEMA = "iapo"

#: A migration: the version it produces, and the DDL (or a function of the open connection,
#: inside the migration's transaction) that produces it from the version before.
Step = tuple[int, str | Callable[[psycopg.Connection[Any]], None]]

#: Version 3: the layout of :mod:`iapo.bank._sqlite_schema` version 3, in PostgreSQL types.
#: Scores and usage are JSON text (as in SQLite: exact, and NaN survives); config and result
#: are ``json`` (kept as written, key order included, and queryable with ``->``).
V3 = """
CREATE SCHEMA IF NOT EXISTS iapo;
CREATE TABLE iapo.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE iapo.dists (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key text NOT NULL UNIQUE,
    prompt text NOT NULL,
    query text NOT NULL
);
CREATE TABLE iapo.samples (
    dist bigint NOT NULL REFERENCES iapo.dists (id),
    idx bigint NOT NULL,
    answer text,
    scores text NOT NULL,
    cost double precision NOT NULL,
    text text,
    usage text,
    created double precision NOT NULL,
    PRIMARY KEY (dist, idx)
);
CREATE TABLE iapo.claims (
    dist text NOT NULL,
    idx bigint NOT NULL,
    owner text NOT NULL,
    expires double precision NOT NULL,
    PRIMARY KEY (dist, idx)
);
CREATE TABLE iapo.runs (
    id text PRIMARY KEY,
    name text NOT NULL,
    status text NOT NULL,
    created double precision NOT NULL,
    updated double precision NOT NULL,
    budget bigint NOT NULL,
    spent bigint NOT NULL DEFAULT 0,
    config json NOT NULL,
    result json,
    data text
);
"""

#: Version 4: the task queue (the layout of :mod:`iapo.bank._sqlite_schema` version 4).
V4 = """
CREATE TABLE iapo.tasks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id text NOT NULL,
    dist text NOT NULL,
    prompt text NOT NULL,
    query text NOT NULL,
    indices bigint[] NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    worker text,
    expires double precision,
    error text,
    failed_by text,
    retry_at double precision,
    created double precision NOT NULL
);
CREATE INDEX tasks_open ON iapo.tasks (status, id);
CREATE INDEX tasks_run ON iapo.tasks (run_id, status);
CREATE TABLE iapo.workers (
    worker text PRIMARY KEY,
    seen double precision NOT NULL,
    info text NOT NULL
);
CREATE TABLE iapo.run_inputs (run_id text PRIMARY KEY, inputs text NOT NULL);
"""

#: Every migration, oldest first (see the module docstring).
STEPS: list[Step] = [(3, V3), (4, V4)]

#: The newest layout this iapo writes and reads.
LATEST = max(version for version, _ in STEPS)


def other_version(version: object) -> str:
    """Why a bank of another version is refused (a phrase)."""
    return (
        f"bank schema version {version}, this iapo reads versions up to {LATEST}: "
        "use another database or the iapo version that wrote it"
    )


def inspect(conn: psycopg.Connection[Any]) -> int | str:
    """Read-only: the version of the bank in the connection's database (0: no bank yet, an
    empty ``iapo`` schema included), or why the database is refused (a phrase)."""
    row = conn.execute(
        "SELECT n.oid IS NOT NULL, to_regclass('iapo.meta') IS NOT NULL, "
        "(SELECT count(*) FROM pg_class c WHERE c.relnamespace = n.oid) "
        "FROM (SELECT 1) AS one LEFT JOIN pg_namespace n ON n.nspname = %s",
        (SCHEMA,),
    ).fetchone()
    has_schema, has_meta, relations = row if row is not None else (False, False, 0)
    if not has_schema or (not has_meta and not relations):
        return 0
    if not has_meta:
        return (
            f"the schema {SCHEMA!r} of this database holds tables that are not an iapo bank: "
            "use another database"
        )
    got = conn.execute("SELECT value FROM iapo.meta WHERE key = 'schema'").fetchone()
    if got is None or not str(got[0]).isdigit():
        return f"the schema {SCHEMA!r} of this database is not an iapo bank: use another database"
    version = int(got[0])
    if version > LATEST or version not in {v for v, _ in STEPS}:
        return other_version(version)
    return version


def migrate(conn: psycopg.Connection[Any]) -> int | str:
    """Bring the database to :data:`LATEST` (creating the bank in an empty one) and return
    the version found before, or return why the database is refused, having written nothing.
    Commits its own transaction; the connection must have none open."""
    with conn.transaction():
        found = inspect(conn)
    if found == LATEST or isinstance(found, str):
        return found
    with conn.transaction():  # one opener at a time builds; the others then find it built
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (APPLICATION_ID,))
        found = inspect(conn)
        if isinstance(found, str):
            return found
        for version, step in STEPS:
            if version <= found:
                continue
            if isinstance(step, str):
                conn.execute(step.encode())  # several statements: no parameters
            else:
                step(conn)
        conn.execute(
            "INSERT INTO iapo.meta (key, value) VALUES ('schema', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(LATEST),),
        )
    return found
