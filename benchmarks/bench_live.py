"""Live ``iapo run`` throughput against a fixed-latency OpenAI-compatible server (200 ms).

Each case is one real run through the library's run path (``iapo.setup`` + ``iapo.run``: config
file, live OpenAI-compatible backend, SQLite bank in a temporary directory, PSST rounds) in its
own child process, against ``benchmarks/latency_server.py`` running in another process. The
cases: HTTP stack × concurrency (8, 32, 128) × how ``n`` is asked for (``fanout``: one request
per completion; ``native``: one request per pull, ``n`` choices):

* ``legacy``: today's transport (466008b), a frozen copy kept here: ``AsyncOpenAI`` on its
  default httpx client, every request through ``chat.completions.with_raw_response.create``;
* ``httpx``: the SDK on a tuned, shared httpx pool, requests through ``post``;
* ``aiohttp-sdk``: the SDK's aiohttp transport (``openai[aiohttp]``), every attempt through
  ``post`` (the default before the direct re-send);
* ``aiohttp``: the default: the first attempt through the SDK's ``post`` on its aiohttp
  transport, later ones re-send the SDK's request over aiohttp (``iapo.chat_client._direct``).

Reported per case: completions/s, the ratio to the concurrency-limited ideal (``concurrency``
requests every ``latency`` seconds, × completions per request for native ``n``; the ratio is
the mean number of requests in flight over ``concurrency``), and CPU seconds of the iapo process
per completion (the bank's share, spent in worker threads, measured apart), the time each pull
spends in the sampler outside the backend (bank look-up, claim, store, release: each a hop to a
worker thread), and the ratio one free core would allow at that CPU cost
(``cpu_bound_ratio``). ``plain`` is the reference: a
bare aiohttp loop (no SDK, no iapo) sending the same kind of requests, so that what the machine
itself allows at the time shows next to each case. ``--profile`` adds cProfile runs at
concurrency 128 (:data:`PROFILED`), the main thread's CPU split by where it was spent (HTTP
stack, SDK, iapo's client, engine, bank, event loop), and each round's requests and time.

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
STACKS = ("legacy", "httpx", "aiohttp-sdk", "aiohttp")
#: The stacks' ``http_client`` setting (legacy: none, the frozen client below replaces it).
HTTP_SETTING = {"httpx": "httpx", "aiohttp-sdk": "aiohttp", "aiohttp": "aiohttp"}
#: The reference: a bare aiohttp loop (no SDK, no iapo) with the same requests, in its own child.
PLAIN = "plain"
#: The cases profiled with ``--profile`` (at concurrency 128).
PROFILED = (("legacy", "fanout"), ("aiohttp", "fanout"), ("aiohttp", "native"))
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


def _write_config(
    tmp: Path, url: str, stack: str, mode: str, concurrency: int, seconds: float = 8.0
) -> Path:
    # Enough work for ``seconds`` at the ideal rate, in PSST's rounds.
    per_request = N_MAX // 2 if mode == "native" else 1
    budget = int(concurrency / LATENCY * seconds * per_request)
    n_queries = max(40, budget // (PROMPTS * N_MAX * 2))
    with (tmp / "queries.jsonl").open("w") as f:
        for i in range(n_queries):
            f.write(json.dumps({"id": f"q{i}", "question": f"Question {i}?", "gold": "A"}) + "\n")
    http = f"\n  http_client: {HTTP_SETTING[stack]}" if stack in HTTP_SETTING else ""
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


def _watch_pulls(pulls: list[tuple[float, float]]) -> None:
    """Record, per pull, its wall time in the sampler (bank look-up, claim, draw, store, release)
    and the part spent in the backend (HTTP requests, parsing, scoring)."""
    from iapo.backends import LLMBackend
    from iapo.sampling import CachedSampler

    draw, sample_each = CachedSampler.draw, LLMBackend.sample_each
    inner: dict[int, float] = {}

    async def timed_sample(self: Any, *a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await sample_each(self, *a, **k)
        finally:
            task = id(asyncio.current_task())
            inner[task] = inner.get(task, 0.0) + time.perf_counter() - t0

    async def timed_draw(self: Any, *a: Any, **k: Any) -> Any:
        task = id(asyncio.current_task())
        inner[task] = 0.0
        t0 = time.perf_counter()
        try:
            return await draw(self, *a, **k)
        finally:
            pulls.append((time.perf_counter() - t0, inner.pop(task, 0.0)))

    CachedSampler.draw = timed_draw  # type: ignore[method-assign]
    LLMBackend.sample_each = timed_sample  # type: ignore[method-assign]


def _pull_overhead(pulls: list[tuple[float, float]]) -> dict[str, float]:
    """Milliseconds a pull spends in the sampler outside the backend (mean, median)."""
    extra = sorted(max(0.0, d - b) for d, b in pulls) or [0.0]
    return {
        "pulls": len(pulls),
        "mean_pull_ms": round(sum(d for d, _ in pulls) / max(1, len(pulls)) * 1e3, 1),
        "mean_outside_backend_ms": round(sum(extra) / len(extra) * 1e3, 1),
        "median_outside_backend_ms": round(extra[len(extra) // 2] * 1e3, 1),
    }


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


def _rates(
    stack: str,
    mode: str,
    c: int,
    requests: int,
    completions: int,
    wall: float,
    cpu: float,
    ideal_rate: float,
) -> dict[str, Any]:
    """A case's throughput and CPU figures against its ideal rate (completions/s)."""
    return {
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
    }


def child_plain(spec: dict[str, Any]) -> dict[str, Any]:
    """The machine's own limit: ``concurrency`` bare aiohttp requests at a time, bodies parsed."""
    import aiohttp

    url, mode, c = spec["url"], spec["mode"], spec["concurrency"]
    n = N_MAX // 2 if mode == "native" else 1
    total = c * 40 // n
    body = {"model": "latency", "messages": [{"role": "user", "content": "Question 1?"}]}
    body.update({"n": n} if n > 1 else {}, temperature=0.7, max_tokens=16)

    async def main() -> int:
        sem = asyncio.Semaphore(c)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as session:

            async def one() -> int:
                async with sem, session.post(url + "/chat/completions", json=body) as resp:
                    return len(json.loads(await resp.read())["choices"])

            return sum(await asyncio.gather(*(one() for _ in range(total))))

    t0, p0 = time.perf_counter(), time.process_time()
    completions = asyncio.run(main())
    wall, cpu = time.perf_counter() - t0, time.process_time() - p0
    return _rates(PLAIN, mode, c, total, completions, wall, cpu, c / LATENCY * n)


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One case in this (child) process: a whole live run, timed."""
    if spec["stack"] == PLAIN:
        return child_plain(spec)
    url, stack, mode, c = spec["url"], spec["stack"], spec["mode"], spec["concurrency"]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _write_config(Path(tmp), url, stack, mode, c, float(spec.get("seconds", 8.0)))
        # every attempt through the SDK's ``post`` (the default before attempts re-sent the SDK's
        # request, ``iapo.chat_client._direct``)
        OpenAIChatClient.direct = stack != "aiohttp-sdk"
        s = iapo.setup(cfg)
        backend = s.make_backend()
        if stack == "legacy":
            client = backend.client  # type: ignore[attr-defined]
            backend.client = LegacyClient(  # type: ignore[attr-defined]
                url, client.model, api_key="EMPTY", concurrency=c, n_mode=mode, max_attempts=2
            )
        rounds: list[tuple[int, float]] = []
        _watch_rounds(backend.client, rounds)  # type: ignore[attr-defined]
        pulls: list[tuple[float, float]] = []
        _watch_pulls(pulls)
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
        **_rates(stack, mode, c, requests, completions, wall, cpu, ideal_rate),
        # the best ratio one core of its own would allow the process at this CPU cost
        "cpu_bound_ratio": round(min(1.0, completions / cpu / ideal_rate), 3),
        "bank_cpu_ms_per_completion": round(bank_cpu[0] / completions * 1e3, 3),
        "load_avg_1min": [round(load, 2), round(os.getloadavg()[0], 2)],
        "server_max_in_flight": after["max_in_flight"],
        "time": _breakdown(rounds, wall, c),
        "pull_time": _pull_overhead(pulls),
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
    cols = (*STACKS, PLAIN)
    lines = [
        "| n | concurrency | "
        + " | ".join(f"{s}: completions/s (× ideal), CPU ms/completion" for s in cols)
        + " |",
        "|---|---:|" + "---:|" * len(cols),
    ]
    for mode in MODES:
        for c in CONCURRENCY:
            cells = []
            for s in cols:
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
    ap.add_argument("--stacks", default=",".join((*STACKS, PLAIN)))
    ap.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--repeat", type=int, default=1, help="runs per case; the best is kept")
    ap.add_argument(
        "--seconds", type=float, default=8.0, help="work per run at the ideal rate (default 8)"
    )
    ap.add_argument("--profile", action="store_true", help="add profiled runs at 128")
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
                    spec["seconds"] = args.seconds
                    runs = [run_case(spec) for _ in range(args.repeat)]
                    best = max(runs, key=lambda r: r["ratio_to_ideal"])
                    best["runs_ratio"] = [r["ratio_to_ideal"] for r in runs]
                    rows.append(best)
                    print(json.dumps(best), file=sys.stderr, flush=True)
        if args.profile:
            for stack, mode in PROFILED:
                spec = {"url": url, "stack": stack, "mode": mode, "concurrency": 128}
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
            "seconds_of_work": args.seconds,
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
