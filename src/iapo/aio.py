"""Small asyncio helpers shared by the study, the OpenAI client and the scorers, and the event
loop iapo's own entry points run on: uvloop where it is installed (the ``fast`` extra), else
asyncio's.

A live run at high concurrency spends about a quarter of its CPU in the event loop and its
sockets; uvloop (libuv) cuts that part (``benchmarks/bench_live.py``). ``IAPO_UVLOOP=0`` keeps
asyncio's loop. :func:`run` is :func:`asyncio.run` otherwise: the same SIGINT handling (the main
task is cancelled), the default executor joined before it returns.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

__all__ = ["gather_or_cancel", "loop_factory", "run"]

T = TypeVar("T")


async def gather_or_cancel(aws: Iterable[Awaitable[T]]) -> list[T]:
    """``asyncio.gather``, but the first failure cancels every task not yet finished (and waits
    for them), so that, e.g., a permanent error stops a batch without sending more requests."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None (asyncio's default) when it is absent or turned off."""
    if os.environ.get("IAPO_UVLOOP", "1") == "0" or importlib.util.find_spec("uvloop") is None:
        return None
    import uvloop

    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` on :func:`loop_factory`'s loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)
