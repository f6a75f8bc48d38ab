"""``iapo serve`` under load: throughput against the concurrency-limited ideal, latency, errors,
and the server's memory over 10,000 distinct questions.

Three processes: the fixed-latency upstream (``latency_server.py``, aiohttp, 200 ms per
request), ``iapo serve`` (the CLI, on a policy learned live against that upstream), and this
script as the load generator (aiohttp, closed loop: ``c`` clients each sending its next request
when the last one is answered, every question distinct). The policy's context is pinned to an
arm with N = 3 samples, drawn by native ``n`` (one upstream request per answer), so one answer
costs one 200 ms round trip and the ideal at concurrency ``c`` is ``c / 0.2`` requests/s (the
server is started with ``--concurrency 1024``, so only the clients limit it). "upstream stubbed"
is the same server with the upstream replaced in-process by an ``asyncio.sleep`` of the same
200 ms: what the server itself costs, without the live client's HTTP stack. "today" is the
previous server (``git show 466008b:src/iapo/serve.py``, a stdlib threading server) on the same
policy, measured in the same run at the lower concurrencies.

    nice -n 15 python benchmarks/bench_serve.py            # writes docs/bench/serve.json
    nice -n 15 python benchmarks/bench_serve.py --quick    # a smoke run: 3 s per level, 1,000 RSS
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency_server import spawn, stats

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "bench"
LATENCY = 0.2
N = 3
CONTEXT = "accuracy=1,cost=0"
OLD = "466008b"  # the commit whose serve.py is "today"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONUNBUFFERED": "1"}


def learn(url: str, tmp: Path) -> Path:
    """A small live run against the upstream, its context pinned to (its prompt, N)."""
    queries = tmp / "queries.jsonl"
    with queries.open("w") as f:
        for i in range(8):
            q = {"id": f"q{i}", "question": f"Warm-up question {i}: A, B, C or D?", "gold": "A"}
            f.write(json.dumps(q) + "\n")
    cfg = tmp / "live.yaml"
    cfg.write_text(
        f"""name: bench-serve
strategy: majority_vote
backend:
  kind: openai
  base_url: {url}
  model: latency
  api_key_env: IAPO_BENCH_SERVE_NO_KEY
  concurrency: 32
  params: {{temperature: 0.7, max_tokens: 16}}
queries: queries.jsonl
extract: mc_letter
prompts:
  - id: direct
    system: "Answer with the letter."
  - id: careful
    system: "Think, then answer with the letter."
n_max: 3
contexts:
  grid:
    cost_weight: [0.0]
budget: 48
split: {{test_fraction: 0.25, seed: 0}}
seed: 0
run_dir: {tmp / "run"}
"""
    )
    cmd = [sys.executable, "-m", "iapo.cli", "run", str(cfg), "--quiet", "--no-report"]
    subprocess.run(cmd, env=_env(), check=True, stdout=subprocess.DEVNULL)
    path = tmp / "run" / "result.json"
    data = json.loads(path.read_text())
    for arm in data["policy"].values():
        arm["n"] = N
    path.write_text(json.dumps(data))
    return tmp / "run"


@contextmanager
def serve_process(run: Path) -> Iterator[tuple[str, int]]:
    """``iapo serve RUN --port 0 --concurrency 1024`` in its own process: (base URL, pid)."""
    cmd = [sys.executable, "-m", "iapo.cli", "serve", str(run), "--port", "0"]
    cmd += ["--concurrency", "1024"]
    proc = subprocess.Popen(cmd, env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        found = re.search(r" at (http://\S+/v1) ", line)
        if not found:
            raise RuntimeError(f"iapo serve did not start: {line!r}")
        yield found.group(1), proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


_OLD_SERVER = """
import sys, importlib.util
from iapo.deploy import Policy
spec = importlib.util.spec_from_file_location("old_serve", sys.argv[1])
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
server = mod.PolicyServer(Policy.load(sys.argv[2]), "127.0.0.1", 0)
print("listening", server.base_url, flush=True)
server.httpd.serve_forever()
"""


_STUB_SERVER = """
import asyncio, sys
from iapo.backends import Backend
from iapo.deploy import Policy
from iapo.serve import PolicyServer
from iapo.types import Sample

class Stub(Backend):  # the upstream's 200 ms in-process: no HTTP client at all
    name = "stub"
    def __init__(self): self.queries = {}
    def cache_key(self, prompt, query): return prompt + query
    def add_query(self, query): self.queries[query.id] = query
    async def sample(self, prompt, query, indices):
        await asyncio.sleep(float(sys.argv[2]))
        usage = {"prompt_tokens": 20, "completion_tokens": 6}
        return [Sample("A", {}, 6.0, text="The answer is (A).", usage=usage) for _ in indices]

server = PolicyServer(Policy.load(sys.argv[1], backend=Stub()), "127.0.0.1", 0)
print("listening", server.base_url, flush=True)
server.serve_forever()
"""


@contextmanager
def stub_serve_process(run: Path) -> Iterator[tuple[str, int]]:
    """The same server with the upstream stubbed in-process (an ``asyncio.sleep`` of the same
    latency): what the server itself costs, without the live client's HTTP stack."""
    cmd = [sys.executable, "-c", _STUB_SERVER, str(run), str(LATENCY)]
    with _listening(cmd) as found:
        yield found


@contextmanager
def _listening(cmd: list[str]) -> Iterator[tuple[str, int]]:
    proc = subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening "):
            raise RuntimeError(f"the server did not start: {line!r}")
        yield line.split()[1], proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def old_serve_process(run: Path, tmp: Path) -> Iterator[tuple[str, int]]:
    """Today's server (stdlib threads, ``asyncio.run`` per request) on the same policy."""
    source = subprocess.run(
        ["git", "show", f"{OLD}:src/iapo/serve.py"], cwd=REPO, check=True, capture_output=True
    ).stdout
    path = tmp / "old_serve.py"
    path.write_bytes(source)
    with _listening([sys.executable, "-c", _OLD_SERVER, str(path), str(run)]) as found:
        yield found


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Load:
    """A closed-loop load generator: distinct questions, latencies and errors booked."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/chat/completions"
        self.numbers = itertools.count()
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()

    def reset(self) -> None:
        self.latencies, self.errors = [], Counter()

    async def one(self, session: aiohttp.ClientSession) -> None:
        k = next(self.numbers)
        body = {
            "model": CONTEXT,
            "messages": [{"role": "user", "content": f"Question {k}: which letter, A to D?"}],
        }
        t = time.perf_counter()
        try:
            async with session.post(self.url, json=body) as resp:
                data = await resp.read()
                if resp.status != 200:
                    self.errors[f"HTTP {resp.status}"] += 1
                    return
                if not json.loads(data)["choices"][0]["message"]["content"]:
                    self.errors["empty answer"] += 1
                    return
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            self.errors[type(exc).__name__] += 1
            return
        self.latencies.append(time.perf_counter() - t)

    async def level(self, c: int, seconds: float, pid: int) -> dict[str, Any]:
        """``c`` clients for ``seconds`` (after one warm-up request each)."""
        timeout = aiohttp.ClientTimeout(total=600)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(self.one(session) for _ in range(c)))
            self.reset()
            cpu0, t0 = cpu_s(pid), time.perf_counter()
            deadline = t0 + seconds

            async def client() -> None:
                while time.perf_counter() < deadline:
                    await self.one(session)

            await asyncio.gather(*(client() for _ in range(c)))
            elapsed, cpu = time.perf_counter() - t0, cpu_s(pid) - cpu0
        done = len(self.latencies)
        lat = sorted(self.latencies) or [float("nan")]
        rps = done / elapsed
        ideal = c / LATENCY
        return {
            "concurrency": c,
            "requests": done,
            "errors": dict(self.errors),
            "seconds": round(elapsed, 2),
            "rps": round(rps, 1),
            "ideal_rps": ideal,
            "ratio": round(rps / ideal, 3),
            "p50_ms": round(1000 * lat[len(lat) // 2], 1),
            "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
            "server_cpu_ms_per_request": round(1000 * cpu / max(done, 1), 2),
        }

    async def memory(self, pid: int, total: int, c: int, every: int) -> list[dict[str, float]]:
        """``total`` distinct questions from ``c`` clients; the server's RSS every ``every``."""
        samples = [{"questions": 0, "rss_mb": round(rss_mb(pid), 1)}]
        sent = itertools.count()
        self.reset()
        timeout = aiohttp.ClientTimeout(total=600)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def client() -> None:
                while next(sent) < total:
                    await self.one(session)
                    done = len(self.latencies) + sum(self.errors.values())
                    if done % every == 0:
                        samples.append({"questions": done, "rss_mb": round(rss_mb(pid), 1)})

            await asyncio.gather(*(client() for _ in range(c)))
        return samples


def table(rows: list[dict[str, Any]], label: str) -> list[str]:
    out = []
    for r in rows:
        errors = sum(r["errors"].values())
        out.append(
            f"| {label} | {r['concurrency']} | {r['rps']:.1f} | {r['ideal_rps']:.0f} | "
            f"{100 * r['ratio']:.0f} % | {errors} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
            f"{r['server_cpu_ms_per_request']:.2f} |"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per level")
    ap.add_argument("--levels", default="8,32,128", help="client concurrencies")
    ap.add_argument("--old-levels", default="8,32", help="levels for today's server ('' skips)")
    ap.add_argument(
        "--stub-levels", default="32,128", help="levels with the upstream stubbed ('' skips)"
    )
    ap.add_argument("--questions", type=int, default=10_000, help="distinct questions, RSS run")
    ap.add_argument("--quick", action="store_true", help="3 s per level, 1,000 questions")
    ap.add_argument("--out", type=Path, default=OUT / "serve.json")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.questions = 3.0, 1000
    levels = [int(x) for x in args.levels.split(",") if x]
    old_levels = [int(x) for x in args.old_levels.split(",") if x]
    stub_levels = [int(x) for x in args.stub_levels.split(",") if x]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, spawn(latency=LATENCY) as upstream:
        run = learn(upstream, Path(tmp))
        with serve_process(run) as (url, pid):
            load = Load(url)
            rss_at_start = round(rss_mb(pid), 1)
            new = []
            for c in levels:
                new.append(asyncio.run(load.level(c, args.seconds, pid)))
                print(table(new[-1:], "iapo serve")[0], flush=True)
            every = max(1, args.questions // 10)
            memory = asyncio.run(load.memory(pid, args.questions, 128, every))
            memory_errors = dict(load.errors)
        stub = []
        if stub_levels:
            with stub_serve_process(run) as (url, pid):
                load = Load(url)
                for c in stub_levels:
                    stub.append(asyncio.run(load.level(c, args.seconds, pid)))
                    print(table(stub[-1:], "stub upstream")[0], flush=True)
        old = []
        if old_levels:
            with old_serve_process(run, Path(tmp)) as (url, pid):
                load = Load(url)
                for c in old_levels:
                    old.append(asyncio.run(load.level(c, args.seconds, pid)))
                    print(table(old[-1:], "today")[0], flush=True)
        upstream_stats = stats(upstream)
    result = {
        "benchmark": "serve",
        "command": " ".join(["nice -n 15 python benchmarks/bench_serve.py", *sys.argv[1:]]),
        "upstream_latency_s": LATENCY,
        "arm_n": N,
        "ideal": "concurrency / 0.2 s: N = 3 samples by native n, one upstream request per answer",
        "seconds_per_level": args.seconds,
        "serve": new,
        "stub_upstream": stub,
        "today": old,
        "memory": {
            "rss_mb_at_start": rss_at_start,
            "concurrency": 128,
            "errors": memory_errors,
            "samples": memory,
        },
        "upstream": upstream_stats,
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "python": platform.python_version(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(markdown(result))


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| server | clients | requests/s | ideal | of ideal | errors | p50 ms | p99 ms "
        "| server CPU ms/request |",
        "|---|---|---|---|---|---|---|---|---|",
        *table(result["serve"], "iapo serve"),
        *table(result["stub_upstream"], "iapo serve, upstream stubbed in-process"),
        *table(result["today"], "today (466008b)"),
    ]
    mem = result["memory"]["samples"]
    rss = ", ".join(f"{s['rss_mb']:.0f}" for s in mem)
    lines += [
        "",
        f"RSS of the `iapo serve` process (MB): {result['memory']['rss_mb_at_start']:.0f} at "
        f"start; after the levels above, every {mem[1]['questions'] - mem[0]['questions']} of "
        f"{mem[-1]['questions']} more distinct questions at 128 clients: {rss} "
        f"(errors: {sum(result['memory']['errors'].values())})",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
