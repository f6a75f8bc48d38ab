"""Distributed sampling with real parts (issue #14): a driver (``iapo run`` in distributed mode)
and ``iapo worker`` processes sharing one SQLite bank file, each worker drawing from its own
fake OpenAI-compatible server. Every run must choose exactly the policy of a one-process run with
the same seed, and every completion the servers delivered must be in the bank (none paid twice).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from live_helpers import script, write_config

import iapo
from iapo.bank import SQLiteBank, open_bank
from iapo.cli import main
from iapo.errors import ConfigError
from iapo.result import RunResult
from iapo.testing.fake_openai import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[1]
SEEDED = "  seed_per_sample: true\n  backoff: 0.01\n  max_backoff: 0.05\n  max_attempts: 2"
DISTRIBUTED = "execution: {mode: distributed, poll: 0.05, max_attempts: 3}"
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "IAPO_TEST_KEY": "local"}


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IAPO_TEST_KEY", "local")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The one-process run: what every distributed run must reproduce."""
    tmp = tmp_path_factory.mktemp("local")
    os.environ.setdefault("IAPO_TEST_KEY", "local")
    with FakeOpenAIServer(script) as srv:
        result = iapo.run(write_config(tmp, srv.base_url, backend_extra=SEEDED))
        assert srv.completions_served == result.account["drawn"] > 0
    return result


def worker_config(tmp: Path, name: str, url: str, temperature: float = 0.7) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(
        f"backend:\n  kind: openai\n  base_url: {url}\n  model: fake-model\n"
        f"  api_key_env: IAPO_TEST_KEY\n  concurrency: 4\n"
        f"  params: {{temperature: {temperature}, max_tokens: 64}}\n{SEEDED}\n"
    )
    return path


class Workers:
    """``iapo worker`` processes on one bank, each with its stderr in a file."""

    def __init__(self, tmp: Path, bank: Path, storage: str | None = None) -> None:
        self.tmp, self.bank = tmp, bank
        self.storage = storage or f"sqlite:///{bank}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, url: str, *extra: str, temperature: float = 0.7) -> None:
        cfg = worker_config(self.tmp, name, url, temperature)
        cmd = [sys.executable, "-m", "iapo.cli", "worker", "--storage", self.storage]
        cmd += [str(cfg), "--name", name, "--poll", "0.05", *extra]
        with (self.tmp / f"{name}.err").open("wb") as err:
            self.procs[name] = subprocess.Popen(cmd, env=ENV, stderr=err)

    def err(self, name: str) -> str:
        return (self.tmp / f"{name}.err").read_text()

    def wait(self, name: str, timeout: float = 120) -> int:
        return self.procs[name].wait(timeout)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    group = Workers(tmp_path, tmp_path / "run" / "bank.sqlite")
    try:
        yield group
    finally:
        group.stop_all()


def until(cond: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def stored(bank: Path) -> int:
    try:
        with sqlite3.connect(bank) as db:
            return int(db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def hanging_script(after: int, release: threading.Event) -> Any:
    """The live script, answering ``after`` requests, then holding every later one."""
    lock, seen = threading.Lock(), [0]

    def run(messages: list[dict[str, Any]], params: dict[str, Any], draw: int) -> str:
        with lock:
            seen[0] += 1
            hang = seen[0] > after
        if hang:
            release.wait(120)
        return script(messages, params, draw)

    return run


def in_thread(fn: Callable[[], RunResult]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # handed to the test
            out.append(exc)

    th = threading.Thread(target=target, daemon=True)
    th.start()
    return th, out


def outcome(th: threading.Thread, out: list[Any]) -> RunResult:
    th.join(180)
    assert out, "the driver did not finish"
    if isinstance(out[0], BaseException):
        raise out[0]
    result: RunResult = out[0]
    return result


# -- (a) two workers complete a run -----------------------------------------------------------
def test_two_workers_draw_the_run_of_one_process_and_nothing_is_paid_twice(
    tmp_path: Path, workers: Workers, reference: RunResult
) -> None:
    seen: list[str] = []
    with (
        FakeOpenAIServer(script) as fast,
        FakeOpenAIServer(script, latency=0.02, seed=9) as slow,
        FakeOpenAIServer(script) as other,
    ):
        cfg = write_config(tmp_path, fast.base_url, backend_extra=SEEDED, extra=DISTRIBUTED)
        # a worker with other sampling parameters refuses the run (and draws nothing)
        workers.start("wrong", other.base_url, "--idle-exit", "1", temperature=0.9)
        th, out = in_thread(
            lambda: iapo.run(cfg, monitor=lambda c, w: seen.extend(x["worker"] for x in w))
        )
        until(lambda: "refusing run" in workers.err("wrong"), "the refusal")
        workers.start("w1", fast.base_url, "--idle-exit", "2")
        workers.start("w2", slow.base_url, "--idle-exit", "2")
        result = outcome(th, out)
        for name in ("w1", "w2", "wrong"):
            assert workers.wait(name) == 0, workers.err(name)
        paid = fast.completions_served + slow.completions_served + other.completions_served
    assert "draws another distribution" in workers.err("wrong")
    assert other.requests == 0
    assert result.policy == reference.policy
    assert result.account["completions"] == reference.account["completions"]
    assert paid == stored(workers.bank) == result.account["drawn"] > 0
    assert fast.completions_served > 0 and slow.completions_served > 0
    with SQLiteBank(workers.bank) as bank:
        counts = bank.task_counts(result.run_id)
        records = {r["worker"]: r for r in bank.worker_records()}
    assert counts["failed"] == counts["queued"] == counts["leased"] == 0 < counts["done"]
    assert records["w1"]["drawn"] + records["w2"]["drawn"] == paid
    assert records["wrong"]["drawn"] == 0 and result.run_id in records["wrong"]["refused"]
    assert seen  # the driver showed the workers


def test_workers_on_a_postgresql_bank_draw_the_run_of_one_process(
    tmp_path: Path, postgres_url: str, reference: RunResult
) -> None:
    """The same run with driver and workers on a real PostgreSQL bank (``take``: SKIP LOCKED)."""
    group = Workers(tmp_path, tmp_path / "unused.sqlite", storage=postgres_url)
    try:
        with FakeOpenAIServer(script) as fast, FakeOpenAIServer(script, latency=0.02) as slow:
            cfg = write_config(tmp_path, fast.base_url, backend_extra=SEEDED, extra=DISTRIBUTED)
            th, out = in_thread(lambda: iapo.run(cfg, storage=postgres_url))
            group.start("w1", fast.base_url, "--idle-exit", "2")
            group.start("w2", slow.base_url, "--idle-exit", "2")
            result = outcome(th, out)
            for name in ("w1", "w2"):
                assert group.wait(name) == 0, group.err(name)
            paid = fast.completions_served + slow.completions_served
    finally:
        group.stop_all()
    assert result.policy == reference.policy
    with open_bank(postgres_url) as bank:
        counts = bank.task_counts(result.run_id)
        records = {r["worker"]: r for r in bank.worker_records()}
        (dist_count,) = bank.transaction(  # type: ignore[attr-defined]
            lambda conn: conn.execute("SELECT count(*) FROM iapo.samples").fetchone()
        )
    assert paid == dist_count == result.account["drawn"] > 0
    assert counts["failed"] == counts["queued"] == counts["leased"] == 0 < counts["done"]
    assert records["w1"]["drawn"] + records["w2"]["drawn"] == paid


# -- (b) a worker killed mid-round -------------------------------------------------------------
def test_a_worker_killed_mid_round_loses_nothing_and_the_run_completes(
    tmp_path: Path, workers: Workers, reference: RunResult
) -> None:
    release = threading.Event()
    try:
        with (
            FakeOpenAIServer(script) as a,
            FakeOpenAIServer(script, latency=0.01) as b,
            FakeOpenAIServer(hanging_script(5, release)) as doomed,
        ):
            cfg = write_config(tmp_path, a.base_url, backend_extra=SEEDED, extra=DISTRIBUTED)
            workers.start("victim", doomed.base_url, "--ttl", "1.5")
            th, out = in_thread(lambda: iapo.run(cfg))
            until(lambda: doomed.in_flight > 0 and doomed.completions_served == 5, "the hang")
            # (their idle exit comes well after the victim's 1.5 s lease has lapsed)
            workers.start("w1", a.base_url, "--idle-exit", "5")
            workers.start("w2", b.base_url, "--idle-exit", "5")
            workers.procs["victim"].send_signal(signal.SIGKILL)
            workers.wait("victim")
            result = outcome(th, out)
            paid = a.completions_served + b.completions_served + doomed.completions_served
            assert doomed.completions_served == 5  # read before the held requests are let go
            for name in ("w1", "w2"):
                assert workers.wait(name) == 0, workers.err(name)
    finally:
        release.set()
    assert result.policy == reference.policy
    assert paid == stored(workers.bank) == result.account["drawn"]
    with SQLiteBank(workers.bank) as bank:
        counts = bank.task_counts(result.run_id)
    assert counts["done"] > 0 and counts["failed"] == counts["queued"] == counts["leased"] == 0


# -- (c) the driver killed and restarted ----------------------------------------------------------
def test_a_restarted_driver_continues_the_run(
    tmp_path: Path, workers: Workers, reference: RunResult
) -> None:
    with FakeOpenAIServer(script, latency=0.01) as srv:
        cfg = write_config(tmp_path, srv.base_url, backend_extra=SEEDED, extra=DISTRIBUTED)
        workers.start("w1", srv.base_url, "--limit", "2", "--idle-exit", "3")
        cmd = [sys.executable, "-m", "iapo.cli", "run", str(cfg), "--no-report"]
        driver = subprocess.Popen(cmd, env=ENV, stderr=subprocess.PIPE)
        try:
            until(lambda: stored(workers.bank) >= 40, "the first samples")
            driver.send_signal(signal.SIGKILL)
            _, err = driver.communicate(timeout=30)
        finally:
            if driver.poll() is None:
                driver.kill()
        # the driver showed its tasks and the worker drawing them
        assert b"distributed: tasks: " in err and b"| workers (1, " in err and b"w1 " in err
        before = stored(workers.bank)
        assert before < reference.account["completions"]
        result = iapo.run(cfg)  # the same command again
        assert workers.wait("w1") == 0, workers.err("w1")
        paid = srv.completions_served
    assert result.policy == reference.policy
    assert paid == stored(workers.bank)
    assert result.account["cache_hits"] >= before > 0  # what the first driver had is reused


# -- (d) a failing endpoint ---------------------------------------------------------------------
def test_tasks_failed_on_a_broken_endpoint_are_drawn_by_another_worker(
    tmp_path: Path, workers: Workers, reference: RunResult
) -> None:
    with FakeOpenAIServer(permanent="400") as broken, FakeOpenAIServer(script) as good:
        cfg = write_config(tmp_path, good.base_url, backend_extra=SEEDED, extra=DISTRIBUTED)
        workers.start("broken", broken.base_url, "--idle-exit", "2", "--retry-after", "60")
        th, out = in_thread(lambda: iapo.run(cfg))
        until(lambda: "failed (queued)" in workers.err("broken"), "a failed task")
        workers.start("good", good.base_url, "--idle-exit", "2")
        result = outcome(th, out)
        for name in ("broken", "good"):
            assert workers.wait(name) == 0, workers.err(name)
    assert result.policy == reference.policy
    assert broken.completions_served == 0
    assert good.completions_served == stored(workers.bank)
    with SQLiteBank(workers.bank) as bank:
        records = {r["worker"]: r for r in bank.worker_records()}
    assert records["broken"]["tasks_failed"] > 0 and records["broken"]["drawn"] == 0


def test_a_task_failing_on_every_attempt_stops_the_run_with_one_line(
    tmp_path: Path, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeOpenAIServer(permanent="400") as broken:
        extra = "execution: {poll: 0.05, max_attempts: 2}"  # local, but for --distributed
        cfg = write_config(tmp_path, broken.base_url, backend_extra=SEEDED, extra=extra)
        workers.start("broken", broken.base_url, "--idle-exit", "1", "--retry-after", "0")
        assert main(["run", str(cfg), "--no-report", "--quiet", "--distributed"]) == 2
        assert workers.wait("broken") == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("iapo: error: task ")
    assert "failed 2 times on the workers" in err[0] and "400" in err[0]
    with SQLiteBank(workers.bank) as bank:
        (rec,) = bank.runs()
        counts = bank.task_counts(rec["id"])
    assert rec["status"] == "interrupted"
    assert counts["queued"] == counts["leased"] == 0  # nothing left for workers to pay for


# -- a clean stop ---------------------------------------------------------------------------------
def test_sigterm_stops_a_worker_and_gives_its_tasks_back_at_once(
    tmp_path: Path, workers: Workers, reference: RunResult
) -> None:
    release = threading.Event()
    try:
        with (
            FakeOpenAIServer(hanging_script(3, release)) as stuck,
            FakeOpenAIServer(script) as good,
        ):
            cfg = write_config(tmp_path, good.base_url, backend_extra=SEEDED, extra=DISTRIBUTED)
            workers.start("stuck", stuck.base_url, "--ttl", "600")
            th, out = in_thread(lambda: iapo.run(cfg))
            until(lambda: stuck.in_flight > 0 and stuck.completions_served == 3, "the hang")
            workers.procs["stuck"].send_signal(signal.SIGTERM)
            assert workers.wait("stuck", 60) == 0, workers.err("stuck")
            with SQLiteBank(workers.bank) as bank:  # given back: no 600 s lease to wait out
                (rec,) = bank.runs()
                assert bank.task_counts(rec["id"])["leased"] == 0
            with sqlite3.connect(workers.bank) as db:  # and the claims of its draws ended
                assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
            workers.start("good", good.base_url, "--idle-exit", "2")
            result = outcome(th, out)
            assert workers.wait("good") == 0
            paid = stuck.completions_served + good.completions_served
    finally:
        release.set()
    assert "tasks done" in workers.err("stuck")
    assert result.policy == reference.policy
    assert paid == stored(workers.bank)


# -- configuration --------------------------------------------------------------------------------
def test_distributed_mode_needs_a_live_backend_and_a_shared_bank(tmp_path: Path) -> None:
    from iapo.config import parse_config

    with pytest.raises(ConfigError, match=r"execution\.mode: distributed needs a live"):
        parse_config(
            {
                "strategy": "majority_vote",
                "pool": "builtin:mcqa",
                "n_max": 2,
                "contexts": {"grid": {"cost_weight": [0.0]}},
                "budget": 10,
                "execution": {"mode": "distributed"},
            },
            "cfg.yaml",
        )
    with pytest.raises(ConfigError, match=r"execution\.mode: must be 'local' or 'distributed'"):
        parse_config({"execution": {"mode": "cluster"}}, "cfg.yaml")
    cfg = write_config(tmp_path, "http://127.0.0.1:9/v1", backend_extra=SEEDED, extra=DISTRIBUTED)
    with pytest.raises(ConfigError, match="not memory:"):
        iapo.run(cfg, storage="memory:")


def test_the_distributed_mode_keeps_the_run_id(tmp_path: Path) -> None:
    from iapo.setups import setup

    local = write_config(tmp_path, "http://127.0.0.1:9/v1", backend_extra=SEEDED)
    ident = setup(local).run_id
    dist = write_config(tmp_path, "http://127.0.0.1:9/v1", backend_extra=SEEDED, extra=DISTRIBUTED)
    assert setup(dist).run_id == ident


def test_a_worker_config_needs_a_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "w.yaml"
    cfg.write_text("name: x\n")
    assert main(["worker", "--storage", str(tmp_path / "b.sqlite"), str(cfg)]) == 2
    assert "needs a 'backend' section" in capsys.readouterr().err
    cfg.write_text("backend: {kind: openai, base_url: 'http://x/v1', model: m, concurency: 2}\n")
    assert main(["worker", "--storage", str(tmp_path / "b.sqlite"), str(cfg)]) == 2
    assert "backend.concurency: unknown key" in capsys.readouterr().err
