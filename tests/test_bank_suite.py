"""Every built-in sample bank passes iapo.testing.BankSuite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from iapo.bank import BANK_SCHEMA, MemoryBank, SampleBank, SQLiteBank, open_bank
from iapo.testing import BankSuite


class TestSQLiteBank(BankSuite):
    persistent = True

    @pytest.fixture
    def storage(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'runs' / 'bank.sqlite'}"

    def open(self, storage: str) -> SampleBank:
        bank = open_bank(storage)
        assert isinstance(bank, SQLiteBank)
        return bank

    def foreign_storages(self, tmp_path: Path) -> list[str]:
        """A SQLite file of another application, and an iapo bank of another schema version."""
        other = tmp_path / "other.sqlite"
        with sqlite3.connect(other) as db:
            db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
            db.execute("INSERT INTO notes (body) VALUES ('keep me')")
        db.close()
        newer = tmp_path / "newer.sqlite"
        SQLiteBank(newer).close()
        with sqlite3.connect(newer) as db:
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(BANK_SCHEMA + 1),))
        db.close()
        meta = tmp_path / "meta.sqlite"  # another application's file with a `meta` table
        with sqlite3.connect(meta) as db:
            db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute("INSERT INTO meta VALUES ('version', '3')")
        db.close()
        marked = tmp_path / "marked.sqlite"  # another application's application_id
        with sqlite3.connect(marked) as db:
            db.execute("PRAGMA application_id = 1234")
            db.execute("CREATE TABLE t (x)")
        db.close()
        return [f"sqlite:///{other}", str(newer), str(meta), str(marked)]


class TestMemoryBank(BankSuite):
    persistent = False

    @pytest.fixture
    def storage(self) -> str:
        return "memory:"

    def open(self, storage: str) -> SampleBank:
        bank = open_bank(storage)
        assert isinstance(bank, MemoryBank)
        return bank
