"""Schema 3 of the SQLite bank: banks written by older iapo versions open and are upgraded in
place, atomically; the new layout stores each distribution once."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from iapo.bank import APPLICATION_ID, BANK_SCHEMA, SQLiteBank
from iapo.bank import _sqlite_schema as schema
from iapo.errors import BankError
from iapo.types import Sample

#: Exactly what iapo wrote before schema 3 (commit 466008b, ``_sqlite_schema.DDL``), frozen here
#: so the test does not depend on the module it tests.
V2_DDL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE samples (
    dist TEXT NOT NULL, idx INTEGER NOT NULL, prompt TEXT NOT NULL, query TEXT NOT NULL,
    answer TEXT, scores TEXT NOT NULL, cost REAL NOT NULL, text TEXT, usage TEXT,
    created REAL NOT NULL, PRIMARY KEY (dist, idx)
);
CREATE TABLE runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, created REAL NOT NULL,
    updated REAL NOT NULL, budget INTEGER NOT NULL, spent INTEGER NOT NULL DEFAULT 0,
    config TEXT NOT NULL, result TEXT, data TEXT
);
CREATE TABLE claims (
    dist TEXT NOT NULL, idx INTEGER NOT NULL, owner TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (dist, idx)
);
INSERT INTO meta VALUES ('schema', '2');
PRAGMA application_id = 1767993455;
"""

#: What the old code stored: (dist, idx, prompt, query, answer, scores, cost, text, usage).
OLD_ROWS = [
    ("da", 0, "p0", "q0", "A", '{"accuracy": 1.0}', 12.0, None, None),
    ("da", 1, "p0", "q0", None, "{}", 0.0, "no answer", None),
    ("da", 7, "p0", "q0", "B", '{"accuracy": 0.0}', 3.5, None, '{"completion_tokens": 3}'),
    ("db", 0, "p1", "q0", "✓", '{"h": 0.25, "x": -1.5}', 2.5e-06, "ünï", '{"n": 0}'),
]
EXPECTED = {
    ("da", 0): Sample("A", {"accuracy": 1.0}, 12.0),
    ("da", 1): Sample(None, {}, 0.0, "no answer"),
    ("da", 7): Sample("B", {"accuracy": 0.0}, 3.5, None, {"completion_tokens": 3}),
    ("db", 0): Sample("✓", {"h": 0.25, "x": -1.5}, 2.5e-06, "ünï", {"n": 0}),
}


def v2_bank(path: Path, rows: list[tuple[object, ...]] = OLD_ROWS) -> Path:
    db = sqlite3.connect(path)
    db.executescript(V2_DDL)
    db.executemany("INSERT INTO samples VALUES (?,?,?,?,?,?,?,?,?,1.5)", rows)
    db.execute(
        "INSERT INTO runs VALUES ('r1', 'old', 'done', 1.0, 2.0, 10, 4, '{\"k\": 1}', "
        "'{\"acr\": 0.5}', 'pool-digest')"
    )
    db.execute("INSERT INTO claims VALUES ('da', 9, 'host/1/x', 1e12)")
    db.commit()
    db.close()
    return path


def layout(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))


def test_the_frozen_v2_layout_is_what_the_previous_version_wrote(tmp_path: Path) -> None:
    ours = v2_bank(tmp_path / "ours.sqlite")
    theirs = sqlite3.connect(tmp_path / "theirs.sqlite")
    theirs.executescript(schema.V2_DDL)
    theirs.close()
    cols = {}
    for path in (ours, tmp_path / "theirs.sqlite"):
        with sqlite3.connect(path) as db:
            cols[path] = {t: db.execute(f"PRAGMA table_info({t})").fetchall() for t in layout(path)}
    assert cols[ours] == cols[tmp_path / "theirs.sqlite"]


def test_a_version_2_bank_is_upgraded_in_place_keeping_samples_runs_and_claims(
    tmp_path: Path,
) -> None:
    path = v2_bank(tmp_path / "v2.sqlite")
    with SQLiteBank(path) as bank:
        for (dist, idx), sample in EXPECTED.items():
            assert bank.get(dist, [idx]) == {idx: sample}
        assert bank.get("da", range(10)) == {i: EXPECTED[("da", i)] for i in (0, 1, 7)}
        (rec,) = bank.runs()
        assert (rec["id"], rec["status"], rec["spent"], rec["data"]) == (
            "r1",
            "done",
            4,
            "pool-digest",
        )
        assert (rec["config"], rec["result"]) == ({"k": 1}, {"acr": 0.5})
        assert bank.holders("da", [9]) == {9: "host/1/x"}
        assert bank.claim("da", [7, 8], "me", 60.0) == [8]  # 7 is stored, after the upgrade too
        bank.put("da", "p0", "q0", [(2, Sample("C")), (0, Sample("not kept"))])
        assert bank.get("da", [0, 2]) == {0: EXPECTED[("da", 0)], 2: Sample("C")}
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == str(
            BANK_SCHEMA
        )
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        dists = db.execute("SELECT key, prompt, query FROM dists ORDER BY key").fetchall()
        assert dists == [("da", "p0", "q0"), ("db", "p1", "q0")]  # each distribution once
        created = db.execute("SELECT DISTINCT created FROM samples WHERE idx != 2").fetchall()
        assert created == [(1.5,)]
    assert "WITHOUT ROWID" in layout(path)["samples"]
    assert "samples_v3" not in layout(path)
    with SQLiteBank(path) as again:  # a second opening finds a current bank
        assert again.get("db", [0]) == {0: EXPECTED[("db", 0)]}


def test_a_failed_upgrade_leaves_the_old_bank_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = v2_bank(tmp_path / "v2.sqlite")
    before = layout(path)
    # the last step of the upgrade fails: everything before it must be rolled back
    monkeypatch.setattr(schema, "_MIGRATE", schema._MIGRATE + ";\nINSERT INTO nowhere VALUES (1)")
    with pytest.raises(BankError, match="no such table: nowhere"):
        SQLiteBank(path)
    assert layout(path) == before
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT dist, idx, prompt, query, answer, scores, cost, text, usage FROM samples "
            "ORDER BY dist, idx"
        ).fetchall()
        assert rows == OLD_ROWS
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == "2"
    monkeypatch.undo()
    with SQLiteBank(path) as bank:  # and the next opening upgrades it
        assert bank.get("db", [0]) == {0: EXPECTED[("db", 0)]}


def test_a_version_2_bank_with_other_tables_is_refused_untouched(tmp_path: Path) -> None:
    path = v2_bank(tmp_path / "v2.sqlite")
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE extra (x)")
    db.close()
    before = path.read_bytes()
    with pytest.raises(BankError, match="version-2 bank with unexpected tables"):
        SQLiteBank(path)
    assert path.read_bytes() == before


def test_a_big_version_2_bank_upgrades_every_row(tmp_path: Path) -> None:
    rows = [
        (
            f"dist{d}",
            i,
            f"p{d % 3}",
            f"q{d}",
            str(i % 4),
            json.dumps({"s": i / 7}),
            float(i),
            None,
            None,
        )
        for d in range(40)
        for i in range(250)
    ]
    path = v2_bank(tmp_path / "big.sqlite", rows)
    before = path.stat().st_size
    with SQLiteBank(path) as bank:
        got = bank.get_many([(f"dist{d}", range(250)) for d in range(40)])
    for stored in got:
        assert stored == {i: Sample(str(i % 4), {"s": i / 7}, float(i)) for i in range(250)}
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 10_000
        assert db.execute("SELECT COUNT(*) FROM dists").fetchone()[0] == 40
    assert path.stat().st_size < before  # the old layout's pages are given back


def test_a_new_bank_stores_prompt_and_query_once_per_distribution(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    with SQLiteBank(path) as bank:
        for lo in range(0, 100, 10):
            bank.put_many(
                [
                    (
                        f"d{k}",
                        "a long prompt id " * 10,
                        f"q{k}",
                        [(i, Sample("A")) for i in range(lo, lo + 10)],
                    )
                    for k in range(3)
                ]
            )
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM dists").fetchone()[0] == 3
        assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 300
        cols = [r[1] for r in db.execute("PRAGMA table_info(samples)")]
        assert "prompt" not in cols and "query" not in cols
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == str(
            BANK_SCHEMA
        )
