"""Data integrity (issue #10, items 1-7): no stale samples, no foreign files, no double pay,
nothing paid for lost, I/O failures in one line, durable results, a bank without pool texts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from live_helpers import fast_client, script, write_config

import iapo
from iapo.answers import get_extractor
from iapo.backends import LLMBackend, ReplayBackend
from iapo.bank import SQLiteBank
from iapo.errors import BankError
from iapo.pools import Cell, Pool, dump_pool
from iapo.result import RunResult
from iapo.sampling import CachedSampler
from iapo.testing.fake_openai import FakeOpenAIServer
from iapo.types import PromptSpec, Query, Sample

REPO = Path(__file__).resolve().parents[1]
SEEDED = "  seed_per_sample: true\n  backoff: 0.01\n  max_backoff: 0.05"
PROMPTS = {"p": PromptSpec("p", system="Answer.", template="{question}")}
QUERIES = {"q": Query("q", "What is 6 times 7?", gold="42")}


# -- helpers ---------------------------------------------------------------------------------
def text_pool(success: float, *, text_len: int = 20, n_q: int = 6) -> Pool:
    """A 2-prompt majority-vote pool whose samples carry texts of ``text_len`` characters."""
    prompts, queries = ("p0", "p1"), tuple(f"q{j}" for j in range(n_q))
    cells = {}
    for i, p in enumerate(prompts):
        for q in queries:
            pad = f"{p}/{q} " + "x" * text_len
            outcomes = (
                Sample("gold", {}, 1.0 + i, text="right " + pad),
                Sample("wrong", {}, 1.0 + i, text="wrong " + pad),
            )
            k = max(1, min(9, round(10 * success) + i))  # counts out of 10
            cells[(p, q)] = Cell(p, q, "gold", outcomes, np.array([k, 10 - k], dtype=float))
    return Pool(("accuracy",), prompts, queries, cells, "tokens", {"name": "t"})


def write_run(tmp: Path, pool: Pool, *, budget: int = 120) -> Path:
    dump_pool(pool, tmp / "pool.jsonl")
    cfg = tmp / "run.yaml"
    cfg.write_text(
        "name: integrity\nstrategy: majority_vote\npool: pool.jsonl\nn_max: 3\n"
        "contexts: {grid: {cost_weight: [0.0, 0.5]}}\n"
        f"budget: {budget}\nalgorithm: {{name: uniform}}\nsplit: {{test_fraction: 0.0}}\n"
        f"seed: 0\nrun_dir: {tmp / 'run'}\n"
    )
    return cfg


def live_backend(srv: FakeOpenAIServer, **client_kw: Any) -> LLMBackend:
    return LLMBackend(
        fast_client(srv, **client_kw),
        PROMPTS,
        QUERIES,
        params={"temperature": 0.7, "max_tokens": 32},
        extract=get_extractor("number"),
    )


def count(path: Path, table: str = "samples") -> int:
    """Rows in ``table`` of the bank at ``path`` (0 while the bank is still being created)."""
    db = sqlite3.connect(path)
    try:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    finally:
        db.close()


# -- 1. stale samples ------------------------------------------------------------------------
def test_cell_digest_follows_the_content_and_the_replay_key_with_it() -> None:
    a, b = text_pool(0.5), text_pool(0.5)
    assert a.cell("p0", "q0").digest == b.cell("p0", "q0").digest and a.digest == b.digest
    edited = text_pool(0.6)
    assert edited.cell("p0", "q0").digest != a.cell("p0", "q0").digest
    assert edited.digest != a.digest
    ra, re_ = ReplayBackend(a, 0), ReplayBackend(edited, 0)
    assert ra.cache_key("p0", "q0") != re_.cache_key("p0", "q0")
    assert ra.cache_key("p0", "q0") == ReplayBackend(b, 0).cache_key("p0", "q0")


def test_an_edited_pool_is_never_served_from_the_bank_and_the_run_says_so(
    tmp_path: Path,
) -> None:
    first = iapo.run(write_run(tmp_path, text_pool(0.3)))
    assert first.account["drawn"] == first.account["completions"] > 0
    again = iapo.run(write_run(tmp_path, text_pool(0.3)))  # same data: all from the bank
    assert again.account["drawn"] == 0 and again.policy == first.policy
    assert not again.extra.get("data_changed")
    # the same ids, different samples: nothing may come from the bank
    with pytest.warns(UserWarning, match="other data"):
        edited = iapo.run(write_run(tmp_path, text_pool(0.8)))
    assert edited.account["drawn"] == edited.account["completions"]
    assert "other data" in edited.extra["data_changed"]


def test_the_cli_says_in_one_note_that_the_pool_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from iapo.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["run", str(write_run(tmp_path, text_pool(0.3))), "--no-report"]) == 0
    assert "other data" not in capsys.readouterr().out
    assert main(["run", str(write_run(tmp_path, text_pool(0.8))), "--no-report"]) == 0
    out, err = capsys.readouterr()
    notes = [line for line in out.splitlines() if "other data" in line]
    assert len(notes) == 1 and notes[0].startswith("note: run 'integrity'")
    assert "Warning" not in err


# -- 2. foreign SQLite files -----------------------------------------------------------------
def test_a_sqlite_file_with_a_meta_table_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('owner', 'someone else')")
        db.execute("CREATE TABLE notes (body TEXT)")
    db.close()
    before = path.read_bytes()
    with pytest.raises(BankError, match="not an iapo sample bank") as err:
        SQLiteBank(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.sqlite"]


V1_DDL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE samples (dist TEXT NOT NULL, idx INTEGER NOT NULL, prompt TEXT NOT NULL,
    query TEXT NOT NULL, answer TEXT, scores TEXT NOT NULL, cost REAL NOT NULL, text TEXT,
    usage TEXT, created REAL NOT NULL, PRIMARY KEY (dist, idx));
CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL, budget INTEGER NOT NULL,
    spent INTEGER NOT NULL DEFAULT 0, config TEXT NOT NULL, result TEXT);
INSERT INTO meta VALUES ('schema', '1');
INSERT INTO samples VALUES ('d', 0, 'p', 'q', 'A', '{}', 3.0, 'paid for', NULL, 0.0);
INSERT INTO runs VALUES ('r1', 'old', 'done', 1.0, 2.0, 10, 10, '{}', NULL);
"""


def test_a_version_1_bank_is_migrated_in_place_keeping_samples_and_runs(tmp_path: Path) -> None:
    from iapo.bank import APPLICATION_ID, BANK_SCHEMA

    path = tmp_path / "v1.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(V1_DDL)
    db.close()
    with SQLiteBank(path) as bank:
        assert bank.get("d", [0]) == {0: Sample("A", {}, 3.0, "paid for")}
        (rec,) = bank.runs()
        assert (rec["id"], rec["status"], rec["data"]) == ("r1", "done", None)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        assert row[0] == str(BANK_SCHEMA)
    db.close()


# -- 3. concurrent runs never pay twice ------------------------------------------------------
def test_concurrent_samplers_on_one_bank_never_pay_twice(tmp_path: Path) -> None:
    """Three runs (threads, each with its own bank object and event loop) draw overlapping
    ranges of one live distribution: the server serves each index once."""
    path = tmp_path / "bank.sqlite"
    got: list[list[Sample]] = []
    errors: list[BaseException] = []
    with FakeOpenAIServer(latency=0.02) as srv:
        start = threading.Barrier(3)

        def one_run() -> None:
            async def main() -> list[Sample]:
                backend = live_backend(srv, concurrency=4)
                with SQLiteBank(path) as bank:
                    sampler = CachedSampler(backend, bank)
                    out: list[Sample] = []
                    for lo in range(0, 24, 4):  # pulls of 4, overlapping across the runs
                        part, _ = await sampler.draw("p", "q", range(lo, lo + 4))
                        out += part
                    await backend.aclose()
                    return out

            try:
                start.wait()
                got.append(asyncio.run(main()))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one_run) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert srv.completions_served == count(path) == 24
    assert got[0] == got[1] == got[2]
    assert count(path, "claims") == 0


def test_three_cli_runs_of_one_live_config_pay_once_and_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's case: 3 `iapo run` processes of one live config on one bank at once."""
    key = "sk-integrity-0123456789abcdef"
    with FakeOpenAIServer(script, api_key=key, latency=0.005) as srv:
        cfg = write_config(tmp_path, srv.base_url, backend_extra=SEEDED)
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "IAPO_TEST_KEY": key}
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "iapo.cli", "run", str(cfg), "--json", "--no-report"],
                cwd=tmp_path,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for _ in range(3)
        ]
        outs = [p.communicate(timeout=300) for p in procs]
        assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
        results = [json.loads(out) for out, _ in outs]
        assert srv.completions_served == count(tmp_path / "run" / "bank.sqlite")
        assert srv.completions_served == results[0]["account"]["completions"]
    assert sum(r["account"]["drawn"] for r in results) == srv.completions_served
    assert results[0]["policy"] == results[1]["policy"] == results[2]["policy"]


def test_a_dead_claimants_lease_expires_and_another_run_draws_the_sample(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bank.sqlite"
    with FakeOpenAIServer() as srv:
        backend = live_backend(srv)
        dist = backend.cache_key("p", "q")
        with SQLiteBank(path) as dead:  # claims 0..3, then "dies" without storing them
            assert dead.claim(dist, [0, 1, 2, 3], "dead-run", 0.3) == [0, 1, 2, 3]
        with SQLiteBank(path) as bank:
            assert bank.claim(dist, [0, 1], "other", 60.0) == []  # still leased
            samples, fresh = asyncio.run(CachedSampler(backend, bank).draw("p", "q", range(4)))
        assert fresh == 4 and len(samples) == 4 and srv.completions_served == 4


def test_a_claim_of_a_dead_process_on_this_host_is_freed_at_once(tmp_path: Path) -> None:
    """A run killed and resumed at once does not wait for its old leases to lapse."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid names no process now
    path = tmp_path / "bank.sqlite"
    with FakeOpenAIServer() as srv, SQLiteBank(path) as bank:
        backend = live_backend(srv)
        dist = backend.cache_key("p", "q")
        sampler = CachedSampler(backend, bank)
        host = sampler.owner.split("/")[0]
        assert bank.claim(dist, [0, 1], f"{host}/{gone.pid}/old", 3600.0) == [0, 1]
        assert bank.holders(dist, [0, 1, 2]) == {0: f"{host}/{gone.pid}/old"} | {
            1: f"{host}/{gone.pid}/old"
        }
        draw = sampler.draw("p", "q", range(2))
        _, fresh = asyncio.run(asyncio.wait_for(draw, 30))  # not the lease's hour
        assert fresh == 2 and srv.completions_served == 2


# -- 4. completions stored as they arrive ----------------------------------------------------
CHILD = """
import asyncio, sys
sys.path.insert(0, {tests!r})
from test_integrity import live_backend
from iapo.bank import SQLiteBank
from iapo.sampling import CachedSampler
from iapo.testing.fake_openai import FakeOpenAIServer

class Remote(FakeOpenAIServer):  # only its address: the server runs in the test process
    base_url = {url!r}

backend = live_backend(Remote(), concurrency=8, n_mode="fanout", timeout=600.0)
with SQLiteBank({bank!r}) as bank:
    asyncio.run(CachedSampler(backend, bank).draw("p", "q", range(8)))
"""


def test_sigkill_mid_pull_keeps_every_completion_that_arrived(tmp_path: Path) -> None:
    """A fan-out pull of 8: 5 answers arrive, 3 hang; SIGKILL the run: the 5 are banked."""
    release = threading.Event()
    lock = threading.Lock()
    answered = [0]

    def script(messages: list[dict[str, Any]], params: dict[str, Any], draw: int) -> str:
        with lock:
            answered[0] += 1
            slow = answered[0] > 5
        if slow:
            release.wait(60)
        return "The answer is 42"

    bank = tmp_path / "bank.sqlite"
    with FakeOpenAIServer(script) as srv:
        code = CHILD.format(tests=str(REPO / "tests"), url=srv.base_url, bank=str(bank))
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
        try:
            for _ in range(2000):  # up to ~20 s for the 5 to be banked
                if proc.poll() is not None or (bank.exists() and count(bank) >= 5):
                    break
                time.sleep(0.01)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
        assert srv.completions_served >= 5
    assert count(bank) == 5


# -- 5. disk full, I/O errors, a lock held mid-run -------------------------------------------
def test_a_full_disk_is_one_line_naming_the_bank_and_the_bank_stays_intact(
    tmp_path: Path,
) -> None:
    from iapo.errors import StorageError

    path = tmp_path / "bank.sqlite"
    with SQLiteBank(path) as bank:
        bank.put("d", "p", "q", [(0, Sample("A", {}, 1.0, "kept"))])
        pages = bank._db.execute("PRAGMA page_count").fetchone()[0]
        bank._db.execute(f"PRAGMA max_page_count = {pages}")  # the "disk" is now full
        with pytest.raises(StorageError) as err:
            bank.put("d", "p", "q", [(i, Sample("B", {}, 1.0, "y" * 5000)) for i in range(1, 9)])
        msg = str(err.value)
        assert str(path) in msg and "disk is full" in msg and "\n" not in msg
        assert "rollback" not in msg
        assert bank.get("d", range(9)) == {0: Sample("A", {}, 1.0, "kept")}
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


def test_a_lock_held_too_long_is_one_line_after_retrying(tmp_path: Path) -> None:
    from iapo.errors import StorageError

    path = tmp_path / "bank.sqlite"
    SQLiteBank(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with SQLiteBank(path, busy_limit=0.3) as bank, pytest.raises(StorageError) as err:
            bank.put("d", "p", "q", [(0, Sample("A"))])
        msg = str(err.value)
        assert str(path) in msg and "locked" in msg and "0.3 s" in msg and "\n" not in msg
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_busy_bank_never_blocks_the_event_loop(tmp_path: Path) -> None:
    """While another connection holds the bank's lock, the sampler's write waits in a worker
    thread: a task on the same loop keeps running, and it is what releases the lock."""
    path = tmp_path / "bank.sqlite"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    async def main(bank: SQLiteBank) -> list[Sample]:
        async def release_later() -> None:
            for _ in range(5):
                await asyncio.sleep(0.05)
            holder.execute("COMMIT")

        releaser = asyncio.ensure_future(release_later())
        backend = ReplayBackend(text_pool(0.5), 0)
        samples, _ = await CachedSampler(backend, bank).draw("p0", "q0", range(3))
        await releaser
        return samples

    try:
        with SQLiteBank(path) as bank:  # the default busy limit: 60 s
            holder.execute("BEGIN EXCLUSIVE")
            samples = asyncio.run(asyncio.wait_for(main(bank), 20))
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
    assert len(samples) == 3 and count(path) == 3


def test_the_cli_says_a_full_bank_in_one_line_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from iapo import runner
    from iapo.cli import main

    def full_bank(url: str) -> SQLiteBank:
        bank = SQLiteBank(url.removeprefix("sqlite:///"))
        pages = bank._db.execute("PRAGMA page_count").fetchone()[0]
        bank._db.execute(f"PRAGMA max_page_count = {pages}")
        return bank

    cfg = write_run(tmp_path, text_pool(0.5, text_len=4000))
    monkeypatch.setattr(runner, "open_bank", full_bank)
    monkeypatch.chdir(tmp_path)
    rc = main(["run", str(cfg), "--no-report"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert err.count("\n") == 1 and "disk is full" in err and "bank.sqlite" in err


# -- 6. the final write ----------------------------------------------------------------------
def test_a_kill_while_writing_the_result_never_leaves_the_run_marked_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write_run(tmp_path, text_pool(0.5))

    def killed(self: RunResult, run_dir: Path) -> Path:
        raise KeyboardInterrupt  # the moment the process dies

    monkeypatch.setattr(RunResult, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        iapo.run(cfg)
    with SQLiteBank(tmp_path / "run" / "bank.sqlite") as bank:
        (rec,) = bank.runs()
    assert rec["status"] == "interrupted" and rec["result"] is None
    assert not (tmp_path / "run" / "result.json").exists()
    monkeypatch.undo()
    done = iapo.run(cfg)  # the same run resumes and finishes
    with SQLiteBank(tmp_path / "run" / "bank.sqlite") as bank:
        (rec,) = bank.runs()
    assert rec["status"] == "done" and rec["result"]["run_id"] == done.run_id
    assert json.loads((tmp_path / "run" / "result.json").read_text())["run_id"] == done.run_id


def test_the_result_is_written_under_a_unique_temp_name_and_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = iapo.run(write_run(tmp_path, text_pool(0.5)), write=False)
    run_dir = tmp_path / "out"
    (run_dir / "result.json.tmp").mkdir(parents=True)  # a stale name must not block the write
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    out = result.save(run_dir)
    assert json.loads(out.read_text())["run_id"] == result.run_id
    assert any(p.endswith(".tmp") for p in synced), synced  # the file, before the rename
    assert str(run_dir) in synced  # then the folder
    assert sorted(p.name for p in run_dir.iterdir()) == ["result.json", "result.json.tmp"]


# -- 7. the bank does not grow with pool texts -----------------------------------------------
def test_replay_samples_store_no_text_and_come_back_with_it(tmp_path: Path) -> None:
    pool = text_pool(0.5, text_len=20_000)
    path = tmp_path / "bank.sqlite"
    with SQLiteBank(path) as bank:
        backend = ReplayBackend(pool, 0)
        sampler = CachedSampler(backend, bank)
        drawn, fresh = asyncio.run(sampler.draw("p0", "q0", range(200)))
        again, fresh_again = asyncio.run(sampler.draw("p0", "q0", range(200)))
    assert (fresh, fresh_again) == (200, 0)
    assert drawn == again == backend.draw("p0", "q0", range(200))  # texts re-derived on read
    assert all(s.text and len(s.text) > 20_000 for s in again)
    with sqlite3.connect(path) as db:
        db.execute("VACUUM")
        stored = db.execute("SELECT SUM(LENGTH(COALESCE(text, ''))) FROM samples").fetchone()[0]
    db.close()
    assert stored == 0
    assert path.stat().st_size / 200 < 400  # bytes per replay sample, whatever the texts
