"""Distributed sampling workers (issue #14): throughput with 1, 2 and 4 workers, and a worker
killed mid-round.

**Throughput.** Each worker (an ``iapo worker`` process) has its own endpoint,
``benchmarks/latency_server.py`` in its own process: 200 ms per request and at most ``--limit``
requests handled at once (the rest queue inside the server), so the ideal is
``workers × limit / latency`` completions/s. The driver is the library's run path (``iapo.run``
with ``execution: {mode: distributed}``) in this process, running the ``uniform`` baseline: one
round of ``budget`` completions (every prompt at N_max on every query, one request per
completion), so the figure is the workers' throughput, not the algorithm's round barriers. The
reference, measured in the same run, is the local mode (one process, the same endpoint limit and
concurrency: one endpoint's ideal). Each case samples its own distributions (a nonce in the
prompts), so a shared bank (``--storage postgresql://…``) gives no cache hits.

**Kill one of three.** Three workers on three of the project's fake OpenAI servers
(``iapo.testing.FakeOpenAIServer``, deterministic completions per seed, 20 ms latency); the third
answers ``--answer-before-hang`` requests, then holds the rest (as a stuck model would) and its
worker is killed with SIGKILL mid-round. The run must complete (the lease lapses after
``--ttl``; the others take its tasks), choose the policy of a one-process run with the same seed,
and every completion the servers delivered must be in the bank exactly once.

Run: ``nice -n 15 .venv/bin/python benchmarks/bench_workers.py --out docs/bench/workers.json``
(``--storage URL``: the bank every case uses; default: a SQLite file per case in a temp dir).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency_server import spawn, stats

import iapo
from iapo.bank import open_bank
from iapo.result import RunResult
from iapo.testing.fake_openai import FakeOpenAIServer, default_script

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "IAPO_BENCH_KEY": "local"}
LATENCY = 0.2
PROMPTS, N_MAX = 2, 4


def write_config(
    tmp: Path, url: str, *, budget: int, concurrency: int, mode: str, algorithm: str, nonce: str
) -> Path:
    queries = tmp / "queries.jsonl"
    with queries.open("w") as f:
        for i in range(60):
            f.write(
                json.dumps({"id": f"q{i}", "question": f"What is {i} + {i}?", "gold": str(2 * i)})
                + "\n"
            )
    prompts = "\n".join(f"  - id: p{i}\n    system: 'Style {i}. [{nonce}]'" for i in range(PROMPTS))
    cfg = tmp / "run.yaml"
    cfg.write_text(
        f"""name: workers-{nonce}
strategy: majority_vote
backend:
{backend_section(url, concurrency)}
queries: queries.jsonl
prompts:
{prompts}
n_max: {N_MAX}
contexts:
  grid:
    cost_weight: [0.0, 0.5]
budget: {budget}
algorithm: {{name: {algorithm}}}
split: {{test_fraction: 0.2, seed: 0}}
seed: 1
run_dir: {tmp / "run"}
execution: {{mode: {mode}, poll: 0.05}}
"""
    )
    return cfg


def backend_section(url: str, concurrency: int) -> str:
    return (
        f"  kind: openai\n  base_url: {url}\n  model: fake-model\n  api_key_env: IAPO_BENCH_KEY\n"
        f"  concurrency: {concurrency}\n  n_mode: fanout\n  seed_per_sample: true\n"
        "  max_attempts: 3\n  backoff: 0.05\n  timeout: 60\n"
        "  params: {temperature: 0.7, max_tokens: 16}"
    )


@contextmanager
def workers(
    tmp: Path, storage: str, urls: list[str], concurrency: int, *extra: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = []
    try:
        for k, url in enumerate(urls):
            cfg = tmp / f"worker{k}.yaml"
            cfg.write_text(f"backend:\n{backend_section(url, concurrency)}\n")
            cmd = [sys.executable, "-m", "iapo.cli", "worker", "--storage", storage, str(cfg)]
            cmd += ["--name", f"w{k}", "--poll", "0.05", *extra]  # stopped by SIGTERM
            procs.append(subprocess.Popen(cmd, env=ENV, stderr=subprocess.DEVNULL))
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)


def bank_url(base: str | None, tmp: Path) -> str:
    return base if base else f"sqlite:///{tmp / 'bank.sqlite'}"


def throughput_case(n_workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """``n_workers`` workers (0: the local mode), each on its own limited endpoint."""
    endpoints = max(1, n_workers)
    with tempfile.TemporaryDirectory() as d, ExitStack() as stack:
        tmp = Path(d)
        urls = [stack.enter_context(spawn(LATENCY, args.limit, seed=k)) for k in range(endpoints)]
        storage = bank_url(args.storage, tmp)
        mode = "distributed" if n_workers else "local"
        cfg = write_config(
            tmp,
            urls[0],
            budget=args.budget,
            concurrency=args.limit,
            mode=mode,
            algorithm="uniform",
            nonce=uuid.uuid4().hex[:8],
        )
        with workers(tmp, storage, urls if n_workers else [], args.limit) as procs:
            _wait_for_beats(storage, len(procs))  # started and idle: their start-up is not timed
            cpu0 = _cpu(procs)
            t0 = time.perf_counter()
            result = iapo.run(cfg, storage=storage, write=False)
            wall = time.perf_counter() - t0
            worker_cpu = _cpu(procs) - cpu0
        served = sum(stats(u)["completions"] for u in urls)
    drawn = int(result.account["drawn"])
    ideal = endpoints * args.limit / LATENCY
    rate = drawn / wall
    return {
        "workers": n_workers,
        "mode": mode,
        "endpoints": endpoints,
        "completions": drawn,
        "served": served,
        "seconds": round(wall, 3),
        "completions_per_s": round(rate, 1),
        "ideal_per_s": ideal,
        "ratio_to_ideal": round(rate / ideal, 3),
        "worker_cpu_ms_per_completion": round(1000 * worker_cpu / drawn, 2) if n_workers else None,
    }


def _cpu(procs: list[subprocess.Popen[bytes]]) -> float:
    """CPU seconds the running processes ``procs`` used so far (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in procs:
        fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _wait_for_beats(storage: str, n: int) -> None:
    deadline = time.monotonic() + 120
    while n and time.monotonic() < deadline:
        with open_bank(storage) as bank:
            if sum(r.get("status") == "idle" for r in bank.worker_records()) >= n:
                return
        time.sleep(0.05)
    if n:
        raise RuntimeError("the workers did not start")


def hanging(after: int, release: threading.Event) -> Callable[..., str]:
    lock, seen = threading.Lock(), [0]

    def script(messages: list[dict[str, Any]], params: dict[str, Any], draw: int) -> str:
        with lock:
            seen[0] += 1
            hang = seen[0] > after
        if hang:
            release.wait(300)
        return default_script(messages, params, draw)

    return script


def kill_case(args: argparse.Namespace) -> dict[str, Any]:
    """Three workers, the third killed mid-round; against a one-process run."""
    nonce = uuid.uuid4().hex[:8]
    release = threading.Event()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "local").mkdir()
        (tmp / "dist").mkdir()
        with FakeOpenAIServer(latency=0.02) as one:
            cfg = write_config(
                tmp / "local",
                one.base_url,
                budget=args.kill_budget,
                concurrency=8,
                mode="local",
                algorithm="psst_any",
                nonce=nonce,
            )
            reference = iapo.run(cfg, storage=bank_url(None, tmp / "local"), write=False)
        storage = bank_url(args.storage, tmp / "dist")
        with (
            FakeOpenAIServer(latency=0.02) as a,
            FakeOpenAIServer(latency=0.05) as b,
            FakeOpenAIServer(hanging(args.answer_before_hang, release), latency=0.02) as c,
        ):
            cfg = write_config(
                tmp / "dist",
                a.base_url,
                budget=args.kill_budget,
                concurrency=8,
                mode="distributed",
                algorithm="psst_any",
                nonce=nonce,
            )
            with workers(tmp, storage, [a.base_url, b.base_url, c.base_url], 8, "--ttl", "2"):
                t0 = time.perf_counter()
                out: list[RunResult] = []
                driver = threading.Thread(
                    target=lambda: out.append(iapo.run(cfg, storage=storage, write=False))
                )
                driver.start()
                while c.in_flight == 0 or c.completions_served < args.answer_before_hang:
                    time.sleep(0.01)
                time.sleep(1.0)  # its answered completions banked: killed while it waits
                killed_at = time.perf_counter() - t0
                os.kill(_pid_of_worker(storage, "w2"), signal.SIGKILL)
                driver.join(600)
                wall = time.perf_counter() - t0
                paid = a.completions_served + b.completions_served + c.completions_served
                by_server = [a.completions_served, b.completions_served, c.completions_served]
                release.set()
        result = out[0]
        s = iapo.setup(cfg)
        backend = s.make_backend()
        keys = {backend.cache_key(p, q) for p in s.prompts for q in s.train}
        with open_bank(storage) as bank:  # this case's distributions only (its nonce)
            stored = sum(len(bank.get(key, range(args.kill_budget))) for key in keys)
    return {
        "budget": args.kill_budget,
        "killed_after_s": round(killed_at, 2),
        "seconds": round(wall, 2),
        "policy_equal": result.policy == reference.policy,
        "completions": int(result.account["completions"]),
        "paid": paid,
        "paid_by_server": by_server,
        "stored": stored,
        "paid_equals_stored": paid == stored,
    }


def _pid_of_worker(storage: str, name: str) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open_bank(storage) as bank:
            for rec in bank.worker_records():
                if rec["worker"] == name:
                    return int(rec["pid"])
        time.sleep(0.05)
    raise RuntimeError(f"worker {name} never beat")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--storage", help="bank URL for every case (default: a SQLite file each)")
    ap.add_argument("--limit", type=int, default=8, help="requests each endpoint handles at once")
    ap.add_argument("--budget", type=int, default=2400, help="completions per throughput case")
    ap.add_argument("--kill-budget", type=int, default=1200)
    ap.add_argument("--answer-before-hang", type=int, default=20)
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    cases = [throughput_case(0, args)] + [throughput_case(w, args) for w in args.workers]
    kill = kill_case(args)
    doc = {
        "latency_s": LATENCY,
        "limit_per_endpoint": args.limit,
        "storage": args.storage or "sqlite (a file per case)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "throughput": cases,
        "kill_one_of_three": kill,
    }
    print(
        "| workers | endpoints | completions | s | completions/s | ideal/s | ratio "
        "| worker CPU ms/completion |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for c in cases:
        who = "local (1 process)" if c["mode"] == "local" else str(c["workers"])
        print(
            f"| {who} | {c['endpoints']} | {c['completions']} | {c['seconds']} | "
            f"{c['completions_per_s']} | {c['ideal_per_s']:.0f} | {c['ratio_to_ideal']:.2f} | "
            f"{c['worker_cpu_ms_per_completion'] or '—'} |"
        )
    print(
        f"\nkill one of three (SIGKILL at {kill['killed_after_s']} s): run completed in "
        f"{kill['seconds']} s, policy equal to one process: {kill['policy_equal']}, "
        f"paid {kill['paid']} (by server {kill['paid_by_server']}), stored {kill['stored']}"
    )
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if kill["policy_equal"] and kill["paid_equals_stored"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
