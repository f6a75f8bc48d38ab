"""A study of a reproducible backend samples a round at a time and writes the bank in batches
(issue #13, 4b): the same outcome and bank as pull by pull, everything drawn banked by the end
of each round, a crash mid-round resumed from the bank."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import bernoulli_pool

import iapo
from iapo.backends import ReplayBackend
from iapo.bank import MemoryBank, SampleBank, SQLiteBank
from iapo.pools import Pool, load_pool
from iapo.setups import builtin_pool_path
from iapo.study import Study
from iapo.types import PullRequest, Sample

REPO = Path(__file__).resolve().parents[1]
GSM8K = REPO / "examples" / "gsm8k-pool.yaml"


def old_draw(pool: Pool, seed: int, prompt: str, query: str, indices: Sequence[int]) -> list[Any]:
    """ReplayBackend.draw as it was before issue #13 (commit 466008b), the oracle."""
    cell = pool.cell(prompt, query)
    cdf = np.cumsum(cell.weights) / cell.weights.sum()
    base = f"{seed}\x00{prompt}\x00{query}\x00".encode()
    u = np.empty(len(indices))
    for j, i in enumerate(indices):
        digest = hashlib.blake2b(base + str(i).encode(), digest_size=8).digest()
        u[j] = (struct.unpack("<Q", digest)[0] >> 11) / float(1 << 53)
    picks = np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)
    return [cell.outcomes[k] for k in picks]


def test_replay_draws_exactly_what_it_drew_before() -> None:
    rng = np.random.default_rng(3)
    pools = [
        load_pool(builtin_pool_path("gsm8k-qwen05")),
        load_pool(builtin_pool_path("mcqa-gpt35-comprehensive")),
        bernoulli_pool(rng.uniform(0, 1, (2, 3))),
        bernoulli_pool(np.array([[0.0, 1.0, 0.5]])),  # zero weights: the edge of the cdf
    ]
    for pool in pools:
        for seed in (0, 7):
            backend = ReplayBackend(pool, seed)
            for p in pool.prompts[:3]:
                for q in pool.queries[:4]:
                    idx = [*range(300), 10**9, 2**62]
                    new, old = backend.draw(p, q, idx), old_draw(pool, seed, p, q, idx)
                    assert all(a is b for a, b in zip(new, old, strict=True))


class PullByPull(ReplayBackend):
    """The same replay through the per-pull sampler path (a backend that is not reproducible)."""

    reproducible = False


class Failing(ReplayBackend):
    """Replay that fails (like a crash) at its ``fail_at``-th sample call."""

    def __init__(self, pool: Pool, seed: int, fail_at: int) -> None:
        super().__init__(pool, seed)
        self.calls, self.fail_at = 0, fail_at

    async def sample(self, prompt: str, query: str, indices: Sequence[int]) -> list[Sample]:
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return await super().sample(prompt, query, indices)


def study(backend: ReplayBackend, bank: SampleBank | None, budget: int, **kw: Any) -> Study:
    s = iapo.setup(GSM8K)
    kw.setdefault("cost_scale", s.cost_scale)
    return Study(s.make_algorithm(budget), backend, bank, **kw)


def bank_rows(path: Path) -> dict[tuple[str, int], tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT d.key, s.idx, s.answer, s.scores, s.cost FROM samples s JOIN dists d "
            "ON d.id = s.dist"
        ).fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def summary(outcome: Any) -> tuple[Any, ...]:
    return (
        {c: a.to_dict() for c, a in outcome.policy.items()},
        {c: [e.to_dict() for e in rows] for c, rows in outcome.estimates.items()},
        outcome.account.to_dict(),
    )


def test_rounds_give_the_outcome_and_bank_of_pull_by_pull(tmp_path: Path) -> None:
    pool = iapo.setup(GSM8K).pool
    outs, banks = [], []
    for name, backend_type in [("rounds", ReplayBackend), ("pulls", PullByPull)]:
        path = tmp_path / f"{name}.sqlite"
        with SQLiteBank(path) as bank:
            outs.append(summary(study(backend_type(pool, 0), bank, 6000, write_batch=64).run()))
        banks.append(bank_rows(path))
    assert outs[0] == outs[1]
    assert banks[0] == banks[1] and len(banks[0]) == outs[0][2]["drawn"] > 5000
    again = tmp_path / "rounds.sqlite"
    with SQLiteBank(again) as bank:  # a re-run reads everything back, in rounds too
        rerun = summary(study(ReplayBackend(pool, 0), bank, 6000).run())
    assert rerun[:2] == outs[0][:2]
    assert rerun[2]["cache_hits"] == rerun[2]["completions"] == outs[0][2]["completions"]
    assert rerun[2]["drawn"] == 0


def test_banked_samples_come_back_with_their_texts_when_the_algorithm_sees_them(
    tmp_path: Path,
) -> None:
    pool = iapo.setup(GSM8K).pool
    reqs = [PullRequest(p, q, 5) for p in pool.prompts for q in pool.queries[:3]]
    with SQLiteBank(tmp_path / "bank.sqlite") as bank:
        first = asyncio.run(study(ReplayBackend(pool, 0), bank, 3000, cost_scale=1.0)._round(reqs))
        again = asyncio.run(study(ReplayBackend(pool, 0), bank, 3000, cost_scale=1.0)._round(reqs))
    with sqlite3.connect(tmp_path / "bank.sqlite") as db:  # banked without texts
        assert db.execute("SELECT COUNT(*), COUNT(text) FROM samples").fetchone() == (
            5 * len(reqs),
            0,
        )
    assert [fresh for _, fresh in first] == [5] * len(reqs)
    assert [fresh for _, fresh in again] == [0] * len(reqs)
    assert [samples for samples, _ in again] == [samples for samples, _ in first]
    assert all(s.text for samples, _ in again for s in samples)


def test_rounds_without_a_bank_give_the_same_outcome() -> None:
    pool = iapo.setup(GSM8K).pool
    with MemoryBank() as bank:
        banked = summary(study(ReplayBackend(pool, 0), bank, 3000).run())
    assert summary(study(ReplayBackend(pool, 0), None, 3000).run()) == banked


class CountingBank(SQLiteBank):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes: list[int] = []

    def put_many(self, groups: Any, *, texts: bool = True) -> None:
        groups = list(groups)
        self.writes.append(sum(len(g[3]) for g in groups))
        super().put_many(groups, texts=texts)


def test_writes_are_batched_and_each_round_ends_with_everything_banked(tmp_path: Path) -> None:
    pool = iapo.setup(GSM8K).pool
    path = tmp_path / "bank.sqlite"
    seen: list[tuple[int, int]] = []

    with CountingBank(path) as bank:

        def progress(account: Any, round_no: int) -> None:
            seen.append((account.drawn, len(bank_rows(path))))

        st = study(ReplayBackend(pool, 0), bank, 20_000, write_batch=500, progress=progress)
        outcome = st.run()
        n_max = st.algorithm.problem.n_max
    drawn = outcome.account.drawn
    assert sum(bank.writes) == drawn == len(bank_rows(path))
    assert all(w < 500 + n_max for w in bank.writes)  # a write holds at most one pull past 500
    rounds = len(seen)
    assert len(bank.writes) <= drawn / 500 + rounds  # ~500 rows per write, plus one per round
    assert len(bank.writes) < drawn / 50
    assert seen and all(d == stored for d, stored in seen)  # banked before the algorithm's turn


def test_a_crash_mid_round_keeps_what_was_drawn_and_the_run_resumes(tmp_path: Path) -> None:
    pool = iapo.setup(GSM8K).pool
    with SQLiteBank(tmp_path / "clean.sqlite") as bank:
        clean = summary(study(ReplayBackend(pool, 0), bank, 6000).run())
    path = tmp_path / "crashed.sqlite"
    failing = Failing(pool, 0, fail_at=700)
    with SQLiteBank(path) as bank, pytest.raises(KeyboardInterrupt):
        study(failing, bank, 6000, write_batch=10_000).run()
    stored = len(bank_rows(path))
    assert 0 < stored < clean[2]["completions"]  # drawn before the crash: banked, not lost
    with SQLiteBank(path) as bank:
        resumed = summary(study(ReplayBackend(pool, 0), bank, 6000).run())
    assert resumed[:2] == clean[:2]
    assert resumed[2]["cache_hits"] == stored
    assert resumed[2]["drawn"] + stored == clean[2]["completions"]
    assert bank_rows(path) == bank_rows(tmp_path / "clean.sqlite")


def _cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen(
        [sys.executable, "-m", "iapo.cli", *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _stored(path: Path) -> int:
    try:
        with sqlite3.connect(path, timeout=30) as db:
            return int(db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.slow
def test_a_replay_run_killed_mid_run_resumes_from_the_bank(tmp_path: Path) -> None:
    """SIGKILL: only what was not yet committed is lost; the same command then draws only the
    rest and gives the uninterrupted run's policy."""
    common = ["--budget", "150000", "--json", "--no-report", "--quiet"]
    clean = _cli("run", str(GSM8K), "--run-dir", str(tmp_path / "clean"), *common, cwd=tmp_path)
    out, err = clean.communicate(timeout=600)
    assert clean.returncode == 0, err
    want = json.loads(out)
    bank = tmp_path / "killed" / "bank.sqlite"
    args = ["run", str(GSM8K), "--run-dir", str(tmp_path / "killed"), *common]
    proc = _cli(*args, cwd=tmp_path)
    while _stored(bank) < 2000 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    stored = _stored(bank)
    assert 2000 <= stored < want["account"]["completions"]
    with sqlite3.connect(bank) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    again = _cli(*args, cwd=tmp_path)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    resumed = json.loads(out)
    assert resumed["policy"] == want["policy"]
    assert resumed["account"]["cache_hits"] == stored
    assert resumed["account"]["completions"] == want["account"]["completions"]
