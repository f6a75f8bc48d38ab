"""``iapo record``: k samples per (prompt, query) from a live backend into a pool file, through
the sample bank, against the project's own OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import pytest
from live_helpers import script, write_config

import iapo
from iapo.cli import main
from iapo.errors import ConfigError
from iapo.pools import load_pool
from iapo.record import record
from iapo.testing.fake_openai import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[1]
QUERIES = ["q0", "q1", "q2", "q3"]


def test_record_writes_k_samples_per_cell_and_a_second_record_requests_nothing(
    tmp_path: Path, secret: str
) -> None:
    out = tmp_path / "pool.jsonl"
    with FakeOpenAIServer(script, api_key=secret) as srv:
        s = iapo.setup(write_config(tmp_path, srv.base_url))
        seen: list[tuple[int, int]] = []
        pool = record(s, 3, out, queries=QUERIES, progress=lambda d, t: seen.append((d, t)))
        assert srv.completions_served == 2 * 4 * 3
        assert seen[0] == (0, 24) and seen[-1] == (24, 24)
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)

        assert pool.prompts == ("terse", "careful") and pool.queries == tuple(QUERIES)
        loaded = load_pool(out, require_gold=True)
        assert loaded.prompts == pool.prompts and loaded.queries == pool.queries
        assert loaded.objectives == ("accuracy",) and loaded.cost_unit == "completion_tokens"
        for p in pool.prompts:
            for q in QUERIES:
                cell = loaded.cell(p, q)
                assert cell.size == 3 and cell.gold is not None
                for o in cell.outcomes:
                    assert o.text and o.text.startswith("Thinking")
                    assert o.answer is not None and o.text.endswith(o.answer)
                    assert o.usage["completion_tokens"] == o.cost > 0
        meta = loaded.meta
        assert meta["model"] == "fake-model" and meta["samples_per_cell"] == 3
        assert meta["params"] == {"temperature": 0.7, "max_tokens": 64}
        assert meta["prompts"]["careful"]["system"] == "Be careful and reason step by step."
        assert meta["date"].endswith("Z") and meta["source"] == "iapo record"
        assert secret not in out.read_text()

        requests = srv.requests
        again = record(s, 3, tmp_path / "again.jsonl", queries=QUERIES)
        assert srv.requests == requests  # everything came from the bank
        for key, cell in pool.cells.items():
            assert [o.text for o in again.cells[key].outcomes] == [o.text for o in cell.outcomes]

        # more samples per cell: only the new indices are drawn
        record(s, 4, tmp_path / "four.jsonl", queries=QUERIES)
        assert srv.completions_served == 2 * 4 * 4


def test_an_interrupted_recording_resumes_without_redrawing(tmp_path: Path, secret: str) -> None:
    out = tmp_path / "pool.jsonl"
    with FakeOpenAIServer(script, api_key=secret) as srv:
        cfg = write_config(tmp_path, srv.base_url)
        s = iapo.setup(cfg)

        sent: list[int] = []

        def stop(done: int, total: int) -> None:
            if done >= 10 and not sent:  # Ctrl-C, delivered the way a terminal delivers it
                sent.append(done)
                signal.raise_signal(signal.SIGINT)

        with pytest.raises(KeyboardInterrupt):
            record(s, 4, out, progress=stop)
        assert not out.exists()
        with sqlite3.connect(s.storage.removeprefix("sqlite:///")) as db:
            banked = int(db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])
            claims = int(db.execute("SELECT COUNT(*) FROM claims").fetchone()[0])
        assert 10 <= banked < 2 * 12 * 4
        # an interrupted recording leaves no claim behind (else the resume waits for leases)
        assert claims == 0
        served = srv.completions_served
        pool = record(s, 4, out)
        assert srv.completions_served - served == 2 * 12 * 4 - banked  # only the missing ones
        assert len(pool.queries) == 12 and all(c.size == 4 for c in pool.cells.values())

        # a live run of the same config reuses the recorded completions
        drawn_before = srv.completions_served
        result = iapo.run(cfg)
        assert result.account["cache_hits"] > 0
        assert srv.completions_served - drawn_before == result.account["drawn"]


def test_cli_record_and_errors(
    tmp_path: Path, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.jsonl"
    with FakeOpenAIServer(script, api_key=secret) as srv:
        cfg = write_config(tmp_path, srv.base_url)
        args = ["record", str(cfg), "-k", "2", "--out", str(out), "--queries", "3", "--quiet"]
        assert main(args) == 0
        assert srv.completions_served == 2 * 3 * 2
    text = capsys.readouterr().out
    assert "per-sample accuracy" in text and str(out) in text
    pool = load_pool(out)
    assert pool.queries == ("q0", "q1", "q2")

    replay = tmp_path / "replay.yaml"
    replay.write_text(
        "strategy: majority_vote\npool: cli.jsonl\nn_max: 2\n"
        "contexts: {grid: {cost_weight: [0.0]}}\nbudget: 20\n"
    )
    with pytest.raises(ConfigError, match="live backend"):
        record(iapo.setup(replay), 2, tmp_path / "x.jsonl")
    with FakeOpenAIServer(script, api_key=secret) as srv:
        s = iapo.setup(write_config(tmp_path, srv.base_url))
        with pytest.raises(ConfigError, match="unknown query id 'nope'"):
            record(s, 2, tmp_path / "x.jsonl", queries=["nope"])
        with pytest.raises(ConfigError, match="k must be at least 1"):
            record(s, 0, tmp_path / "x.jsonl")
        assert srv.requests == 0


def test_the_committed_gsm8k_pool_is_valid_and_replays() -> None:
    path = REPO / "src" / "iapo" / "data" / "gsm8k-qwen05.jsonl"
    if not path.exists():
        pytest.skip("the recorded GSM8K pool is not committed yet")
    pool = load_pool(path, require_gold=True)
    assert set(pool.prompts) == {"direct", "cot", "concise_cot"}
    assert all(c.size >= 8 for c in pool.cells.values())
    assert all(o.text is not None for c in pool.cells.values() for o in c.outcomes)
    header = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert header["meta"]["runtime"]["gguf_sha256"].startswith("1d9614638d18")
    ev = iapo.evaluate(REPO / "examples" / "gsm8k-pool.yaml", split="all")
    assert ev.q.shape == (4, 3, 8)
    assert ev.optimal()["accuracy=1,cost=0"].prompt == "cot"
