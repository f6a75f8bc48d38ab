"""Every built-in sample bank's task queue passes iapo.testing.QueueSuite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from iapo.bank import MemoryBank, SampleBank, SQLiteBank, open_bank
from iapo.testing import QueueSuite


class TestSQLiteQueue(QueueSuite):
    persistent = True

    @pytest.fixture
    def storage(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'bank.sqlite'}"

    def open(self, storage: str) -> SampleBank:
        bank = open_bank(storage)
        assert isinstance(bank, SQLiteBank)
        return bank


class TestMemoryQueue(QueueSuite):
    persistent = False

    @pytest.fixture
    def storage(self) -> str:
        return "memory:"

    def open(self, storage: str) -> SampleBank:
        bank = open_bank(storage)
        assert isinstance(bank, MemoryBank)
        return bank


def test_a_version_3_bank_is_upgraded_in_place_and_gets_a_queue(tmp_path: Path) -> None:
    from iapo.bank import APPLICATION_ID, BANK_SCHEMA
    from iapo.bank import _sqlite_schema as schema  # the layouts, for building an old bank
    from iapo.types import Sample

    path = tmp_path / "v3.sqlite"
    db = sqlite3.connect(path)
    db.executescript(schema.DDL.replace(schema._QUEUE, ""))
    db.execute("INSERT INTO meta VALUES ('schema', '3')")
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute("INSERT INTO dists (key, prompt, query) VALUES ('d', 'p', 'q')")
    db.execute("INSERT INTO samples VALUES (1, 0, 'A', '{}', 1.0, 'text', '{}', 1.5)")
    db.commit()
    db.close()
    with SQLiteBank(path) as bank:
        assert bank.get("d", [0, 1]) == {0: Sample("A", {}, 1.0, "text", {})}
        (tid,) = bank.publish("r", [("d", "p", "q", [1])])
        assert [t.id for t in bank.take("w", 1)] == [tid]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == str(
            BANK_SCHEMA
        )
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


def test_a_bank_without_a_queue_says_so() -> None:
    from iapo.bank import TaskQueue

    with pytest.raises(NotImplementedError, match="has no task queue"):
        TaskQueue().take("w", 1)


class TestPostgresQueue(QueueSuite):
    """The same contract on a real PostgreSQL server (``take``: ``FOR UPDATE SKIP LOCKED``)."""

    persistent = True

    @pytest.fixture
    def storage(self, postgres_url: str) -> str:
        return postgres_url

    def open(self, storage: str) -> SampleBank:
        from iapo.bank import PostgresBank

        bank = open_bank(storage)
        assert isinstance(bank, PostgresBank)
        return bank


def test_a_version_3_postgres_bank_is_upgraded_in_place_and_gets_a_queue(
    postgres_url: str,
) -> None:
    import psycopg

    from iapo.bank import BANK_SCHEMA, PostgresBank
    from iapo.types import Sample

    with psycopg.connect(postgres_url, autocommit=True) as conn:  # a bank as version 3 left it
        from iapo.bank._postgres_schema import V3  # the layouts, for building an old bank

        conn.execute(V3.encode())
        conn.execute("INSERT INTO iapo.meta VALUES ('schema', '3')")
        conn.execute("INSERT INTO iapo.dists (key, prompt, query) VALUES ('d', 'p', 'q')")
        conn.execute("INSERT INTO iapo.samples VALUES (1, 0, 'A', '{}', 1.0, 'text', '{}', 1.5)")
    with PostgresBank(postgres_url) as bank:
        assert bank.get("d", [0, 1]) == {0: Sample("A", {}, 1.0, "text", {})}
        (tid,) = bank.publish("r", [("d", "p", "q", [1])])
        assert [t.id for t in bank.take("w", 1)] == [tid]
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT value FROM iapo.meta WHERE key = 'schema'").fetchone()
        assert row is not None and row[0] == str(BANK_SCHEMA) == "4"
