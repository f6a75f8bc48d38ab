"""Live ``iapo run`` throughput against a fixed-latency OpenAI-compatible server (200 ms).

Each case is one real run through the library's run path (``iapo.setup`` + ``iapo.run``: config
file, live OpenAI-compatible backend, SQLite bank in a temporary directory, PSST rounds) in its
own child process, against ``benchmarks/latency_server.py`` running in another process. The
cases: HTTP stack × concurrency (8, 32, 128) × how ``n`` is asked for (``fanout``: one request
per completion; ``native``: one request per pull, ``n`` choices):

* ``legacy``: today's transport (466008b), a frozen copy kept here: ``AsyncOpenAI`` on its
  default httpx client, every request through ``chat.completions.with_raw_response.create``;
* ``httpx``: the SDK on a tuned, shared httpx pool, requests through ``post``;
* ``aiohttp``: the SDK's aiohttp transport (``openai[aiohttp]``), requests through ``post``.

Reported per case: completions/s, the ratio to the concurrency-limited ideal (``concurrency``
requests every ``latency`` seconds, × completions per request for native ``n``; the ratio is
the mean number of requests in flight over ``concurrency``), and CPU seconds of the iapo process
per completion. ``--profile`` adds a cProfile run per HTTP stack at concurrency 128 (fan-out),
its CPU split by where it was spent (HTTP stack, SDK, iapo's client, engine, bank, event loop).

Run: ``nice -n 15 .venv/bin/python benchmarks/bench_live.py --profile --out docs/bench/live.json``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency_server import spawn, stats

import iapo
from iapo.chat_client import OpenAIChatClient
from iapo.errors import PermanentBackendError
from iapo.study import Study

LATENCY = 0.2
CONCURRENCY = (8, 32, 128)
MODES = ("fanout", "native")
STACKS = ("legacy", "httpx", "aiohttp")
PROMPTS = 4
N_MAX = 8


class LegacyClient(OpenAIChatClient):
    """Today's transport (466008b), frozen: the SDK's default client, one ``create`` per request.
    Only the HTTP attempt differs; retries, accounting and ``n`` handling are the current ones."""

    def _bind(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._oai is None:
            import openai

            self._oai = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self._api_key, max_retries=0, timeout=self.timeout
            )
            self._sem = asyncio.Semaphore(self.concurrency)
            self._loop = loop
        return self._oai

    async def _attempt(
        self, messages: list[dict[str, str]], n: int, params: Mapping[str, Any]
    ) -> bytes:
        import openai

        oai = self._bind()
        assert self._sem is not None
        async with self._sem:
            if self.fatal is not None:
                raise self.fatal
            self.requests_sent += 1
            extra: dict[str, Any] = {"n": n} if n > 1 else {}
            try:
                async with asyncio.timeout(self.timeout):
                    raw = await oai.chat.completions.with_raw_response.create(
                        model=self.model,
                        messages=cast(Any, messages),
                        extra_body=dict(params),
                        **extra,
                    )
                    return cast(bytes, raw.http_response.content)
            except openai.APIStatusError as exc:  # the benchmark's server never fails
                self.fatal = PermanentBackendError(f"HTTP {exc.status_code}")
                raise self.fatal from None


def _write_config(tmp: Path, url: str, stack: str, mode: str, concurrency: int) -> Path:
    # Enough work for several seconds at the ideal rate, in PSST's rounds.
    per_request = N_MAX if mode == "native" else 1
    budget = int(concurrency / LATENCY * 8 * per_request)
    n_queries = max(40, budget // (PROMPTS * N_MAX * 2))
    with (tmp / "queries.jsonl").open("w") as f:
        for i in range(n_queries):
            f.write(json.dumps({"id": f"q{i}", "question": f"Question {i}?", "gold": "A"}) + "\n")
    http = "" if stack == "legacy" else f"\n  http_client: {stack}"
    prompts = "\n".join(f"  - id: p{i}\n    system: 'Style {i}.'" for i in range(PROMPTS))
    cfg = tmp / "live.yaml"
    cfg.write_text(
        f"""name: live
strategy: majority_vote
extract: mc_letter
backend:
  kind: openai
  base_url: {url}
  model: latency
  api_key_env: IAPO_BENCH_NO_KEY
  concurrency: {concurrency}
  n_mode: {mode}
  max_attempts: 2
  timeout: 60{http}
  params: {{temperature: 0.7, max_tokens: 16}}
queries: queries.jsonl
prompts:
{prompts}
n_max: {N_MAX}
contexts:
  grid:
    cost_weight: [0.0, 0.5]
budget: {budget}
split: {{test_fraction: 0.2, seed: 0}}
seed: 1
run_dir: {tmp / "run"}
"""
    )
    return cfg


_AREAS = (
    ("aiohttp", ("/aiohttp/", "/multidict/", "/yarl/", "/propcache/")),
    ("httpx", ("/httpx", "/httpcore", "/h11/", "/anyio/", "/sniffio/")),
    ("openai SDK", ("/openai/", "/pydantic", "/jiter/")),
    ("iapo client", ("/iapo/chat_client/", "/iapo/backends/", "/iapo/scorers/")),
    ("iapo bank", ("/iapo/bank/", "sqlite3")),
    ("iapo engine", ("/iapo/",)),
    ("numpy", ("/numpy/",)),
    ("json", ("/json/", "_json")),
    ("event loop + sockets", ("/asyncio/", "selectors", "socket", "select.epoll", "_ssl")),
)


def _area(filename: str, name: str) -> str:
    where = f"{filename}:{name}"
    for area, marks in _AREAS:
        if any(m in where for m in marks):
            return area
    return "other"


def _split(prof: cProfile.Profile) -> dict[str, float]:
    """Own CPU time (tottime) per area, as shares of the total."""
    st = cast(Any, pstats.Stats(prof)).stats
    out: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, tt, _ct, _callers) in st.items():
        out[_area(filename, name)] = out.get(_area(filename, name), 0.0) + tt
    total = sum(out.values()) or 1.0
    return {k: round(v / total, 3) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def _watch_rounds(client: OpenAIChatClient, rounds: list[tuple[int, float]]) -> None:
    """Record each round's HTTP requests and wall time (``Study._batch`` wrapped, not changed)."""
    batch = Study._batch

    async def watched(self: Study, reqs: Any) -> Any:
        n0, t0 = client.requests_sent, time.perf_counter()
        try:
            return await batch(self, reqs)
        finally:
            rounds.append((client.requests_sent - n0, time.perf_counter() - t0))

    Study._batch = watched  # type: ignore[method-assign]


def _meter_bank(acc: list[float]) -> None:
    """Add the CPU time of every call into the SQLite bank (run in worker threads) to ``acc``."""
    from iapo.bank import SQLiteBank

    for name in ("get", "put", "claim", "release", "holders", "start_run", "update_run"):
        fn = getattr(SQLiteBank, name, None)
        if fn is None:
            continue

        def wrapped(self: Any, *a: Any, _fn: Any = fn, **k: Any) -> Any:
            t = time.thread_time()
            try:
                return _fn(self, *a, **k)
            finally:
                acc[0] += time.thread_time() - t

        setattr(SQLiteBank, name, wrapped)


def _breakdown(rounds: list[tuple[int, float]], wall: float, c: int) -> dict[str, Any]:
    """Where the wall time went: the ideal (every request in a full wave of ``c``), the waves the
    engine's rounds force (a round's last wave is partly empty, and the next round waits for it),
    the rest of each round (HTTP client, scoring, bank writes while requests are in flight) and
    the time between rounds (the engine's ask/tell)."""
    ideal = sum(r for r, _ in rounds) * LATENCY / c
    waves = sum(-(-r // c) for r, _ in rounds if r) * LATENCY
    in_rounds = sum(t for _, t in rounds)
    return {
        "rounds": len(rounds),
        "requests_per_round": [r for r, _ in rounds],
        "ideal_s": round(ideal, 3),
        "round_waves_s": round(waves - ideal, 3),
        "rest_of_rounds_s": round(in_rounds - waves, 3),
        "between_rounds_s": round(wall - in_rounds, 3),
        "ratio_bound_by_rounds": round(ideal / waves, 3) if waves else None,
    }


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One case in this (child) process: a whole live run, timed."""
    url, stack, mode, c = spec["url"], spec["stack"], spec["mode"], spec["concurrency"]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _write_config(Path(tmp), url, stack, mode, c)
        s = iapo.setup(cfg)
        backend = s.make_backend()
        if stack == "legacy":
            client = backend.client  # type: ignore[attr-defined]
            backend.client = LegacyClient(  # type: ignore[attr-defined]
                url, client.model, api_key="EMPTY", concurrency=c, n_mode=mode, max_attempts=2
            )
        rounds: list[tuple[int, float]] = []
        _watch_rounds(backend.client, rounds)  # type: ignore[attr-defined]
        bank_cpu = [0.0]
        _meter_bank(bank_cpu)
        load = os.getloadavg()[0]
        before = stats(url)
        prof = cProfile.Profile() if spec.get("profile") else None
        t0, p0 = time.perf_counter(), time.process_time()
        if prof is not None:
            prof.enable()
        result = iapo.run(s, backend=backend)
        if prof is not None:
            prof.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - p0
        after = stats(url)
    requests = after["requests"] - before["requests"]
    completions = after["completions"] - before["completions"]
    assert completions == result.account["drawn"], (completions, result.account)
    ideal_rate = c / LATENCY * completions / requests
    out = {
        "stack": stack,
        "mode": mode,
        "concurrency": c,
        "requests": requests,
        "completions": completions,
        "wall_s": round(wall, 3),
        "completions_per_s": round(completions / wall, 1),
        "ideal_completions_per_s": round(ideal_rate, 1),
        "ratio_to_ideal": round(completions / wall / ideal_rate, 3),
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_completion": round(cpu / completions * 1e3, 3),
        "cpu_ms_per_request": round(cpu / requests * 1e3, 3),
        "bank_cpu_ms_per_completion": round(bank_cpu[0] / completions * 1e3, 3),
        "load_avg_1min": [round(load, 2), round(os.getloadavg()[0], 2)],
        "server_max_in_flight": after["max_in_flight"],
        "time": _breakdown(rounds, wall, c),
    }
    if prof is not None:
        out["profile_cpu_share"] = _split(prof)
    return out


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"case {spec} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def table(rows: list[dict[str, Any]]) -> str:
    by = {(r["stack"], r["mode"], r["concurrency"]): r for r in rows}
    lines = [
        "| n | concurrency | "
        + " | ".join(f"{s}: completions/s (× ideal), CPU ms/completion" for s in STACKS)
        + " |",
        "|---|---:|" + "---:|" * len(STACKS),
    ]
    for mode in MODES:
        for c in CONCURRENCY:
            cells = []
            for s in STACKS:
                r = by.get((s, mode, c))
                cells.append(
                    "—"
                    if r is None
                    else f"{r['completions_per_s']:.0f} ({r['ratio_to_ideal']:.0%}), "
                    f"{r['cpu_ms_per_completion']:.2f}"
                )
            lines.append(f"| {mode} | {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--stacks", default=",".join(STACKS))
    ap.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--repeat", type=int, default=1, help="runs per case; the best is kept")
    ap.add_argument("--profile", action="store_true", help="add profiled runs at 128, fan-out")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    stacks = args.stacks.split(",")
    rows: list[dict[str, Any]] = []
    profiles: list[dict[str, Any]] = []
    with spawn(latency=LATENCY) as url:
        for mode in args.modes.split(","):
            for c in map(int, args.concurrency.split(",")):
                for stack in stacks:  # the stacks back to back, so they share the machine's state
                    spec = {"url": url, "stack": stack, "mode": mode, "concurrency": c}
                    runs = [run_case(spec) for _ in range(args.repeat)]
                    best = max(runs, key=lambda r: r["ratio_to_ideal"])
                    best["runs_ratio"] = [r["ratio_to_ideal"] for r in runs]
                    rows.append(best)
                    print(json.dumps(best), file=sys.stderr, flush=True)
        if args.profile:
            for stack in stacks:
                spec = {"url": url, "stack": stack, "mode": "fanout", "concurrency": 128}
                prof = run_case({**spec, "profile": True})
                profiles.append(prof)
                print(json.dumps(prof), file=sys.stderr, flush=True)
    md = table(rows)
    print(md)
    if args.out is not None:
        import openai

        doc = {
            "benchmark": "live iapo run against a fixed-latency OpenAI-compatible server",
            "command": "nice -n 15 .venv/bin/python benchmarks/bench_live.py "
            + " ".join(a for a in sys.argv[1:]),
            "latency_s": LATENCY,
            "prompts": PROMPTS,
            "n_max": N_MAX,
            "versions": {
                "iapo": iapo.__version__,
                "openai": openai.__version__,
                "python": platform.python_version(),
            },
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
            "rows": rows,
            "profiles": profiles,
            "table": md,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
