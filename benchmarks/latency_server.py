"""A fixed-latency OpenAI-compatible chat-completions server for throughput benchmarks (aiohttp).

Every ``POST /v1/chat/completions`` waits ``--latency`` seconds (asyncio, so thousands can wait
at once) and answers with ``n`` choices ``"The answer is (A|B|C|D)."`` drawn from a seeded
generator, with a ``usage`` block. ``--limit`` caps the requests handled at once (the rest queue
inside the server, as a real endpoint's scheduler would): the *concurrency-limited ideal* of a
client with concurrency c is ``min(c, limit) / latency`` requests per second. ``GET /stats``
returns ``{"requests", "completions", "max_in_flight"}``; ``GET /v1/models`` lists one model.

Run in its own process so that its CPU does not count against the client being measured::

    with spawn(latency=0.2) as url:   # "http://127.0.0.1:PORT/v1"
        ...

or from a shell: ``python benchmarks/latency_server.py --port 8100 --latency 0.2``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

from aiohttp import web

ANSWERS = ("A", "B", "C", "D")


def make_app(latency: float, limit: int, seed: int = 0) -> web.Application:
    rnd = random.Random(seed)
    gate = asyncio.Semaphore(limit) if limit > 0 else None
    stats = {"requests": 0, "completions": 0, "in_flight": 0, "max_in_flight": 0}

    async def chat(request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        n = int(body.get("n") or 1)
        stats["requests"] += 1
        async with gate if gate is not None else contextlib.nullcontext():
            stats["in_flight"] += 1
            stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
            try:
                await asyncio.sleep(latency)
            finally:
                stats["in_flight"] -= 1
        stats["completions"] += n
        choices = [
            {
                "index": i,
                "message": {
                    "role": "assistant",
                    "content": f"The answer is ({rnd.choice(ANSWERS)}).",
                },
                "finish_reason": "stop",
            }
            for i in range(n)
        ]
        return web.json_response(
            {
                "id": f"lat-{stats['requests']}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": str(body.get("model", "latency")),
                "choices": choices,
                "usage": {
                    "prompt_tokens": 20,
                    "completion_tokens": 6 * n,
                    "total_tokens": 20 + 6 * n,
                },
            }
        )

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "latency", "object": "model"}]})

    async def get_stats(_: web.Request) -> web.Response:
        return web.json_response({k: v for k, v in stats.items() if k != "in_flight"})

    app = web.Application(client_max_size=64 * 1024**2)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/stats", get_stats)
    return app


def stats(url: str) -> dict[str, int]:
    """The server's counters (``url`` as :func:`spawn` yields it)."""
    with urllib.request.urlopen(url.removesuffix("/v1") + "/stats", timeout=10) as resp:
        return dict(json.load(resp))


@contextlib.contextmanager
def spawn(latency: float = 0.2, limit: int = 0, seed: int = 0) -> Iterator[str]:
    """Start the server in a child process on a free loopback port; yields its ``/v1`` URL."""
    cmd = [sys.executable, __file__, "--port", "0", "--latency", str(latency)]
    cmd += ["--limit", str(limit), "--seed", str(seed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "listening http://127.0.0.1:PORT/v1"
        if not line.startswith("listening "):
            raise RuntimeError(f"latency server did not start: {line!r}")
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8100)
    ap.add_argument("--latency", type=float, default=0.2, help="seconds per request")
    ap.add_argument("--limit", type=int, default=0, help="requests handled at once (0: no limit)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    async def serve() -> None:
        runner = web.AppRunner(make_app(args.latency, args.limit, args.seed), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.port, backlog=4096)
        await site.start()
        port = runner.addresses[0][1]
        print(f"listening http://{args.host}:{port}/v1", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
