"""One thread that runs a sampler's bank calls, writing the samples waiting at once together.

A live run has up to ``concurrency`` pulls in flight, each of which looks in the bank, claims its
indices, stores every completion as it lands and releases its claims. Sent each to the event
loop's default worker pool (``asyncio.to_thread``), those calls queued behind each other and
behind the pool's few threads, and every completion was its own transaction: at concurrency 128
a pull spent longer waiting for the bank than for its 200 ms HTTP request.

:class:`BankIO` runs them in submission order on one thread of its own. Whatever is waiting when
the thread gets to it is taken together, and consecutive stores become one
:meth:`~iapo.bank.SampleBank.put_many` (one transaction): under load the bank sees one write
per batch of completions, at rest one per completion, as before. A call returns when its own
operation is done (a store: when it is committed), so "stored as soon as it arrives" still holds
(up to the queue ahead of it). The thread exits after a second with nothing to do and starts
again on the next call, so an idle sampler holds no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from iapo.bank import PutGroup, SampleBank

__all__ = ["BankIO"]

T = TypeVar("T")

#: Seconds the thread waits for more work before it exits.
IDLE_EXIT = 1.0

# (function or None for a store, its arguments or the store's group, loop, future)
_Op = tuple[Callable[..., Any] | None, Any, asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():  # the caller was cancelled: nobody waits for this
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


class BankIO:
    """Run ``bank`` calls on one thread, in order, coalescing consecutive stores."""

    def __init__(self, bank: SampleBank, *, texts: bool = True) -> None:
        self.bank = bank
        self.texts = texts
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: Transactions the stores took (one per coalesced batch), and the stores: for tests.
        self.writes = 0
        self.stores = 0

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the bank's thread, after everything submitted before it."""
        return await self._submit(fn, args)

    async def put(self, group: PutGroup) -> None:
        """Store one distribution's samples (with or without texts, as this object was made);
        returns once they are committed."""
        await self._submit(None, group)

    def _submit(self, fn: Callable[..., Any] | None, args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put((fn, args, loop, fut))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="iapo-bank", daemon=True)
                self._thread.start()
        return fut

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=IDLE_EXIT)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            ops = [first]
            while True:
                try:
                    ops.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._execute(ops)

    def _execute(self, ops: list[_Op]) -> None:
        at = 0
        while at < len(ops):
            fn, args, _, _ = ops[at]
            if fn is not None:
                self._finish(ops[at : at + 1], fn, *args)
                at += 1
                continue
            end = at
            while end < len(ops) and ops[end][0] is None:
                end += 1
            stores = ops[at:end]
            groups = [op[1] for op in stores]
            self.writes += 1
            self.stores += len(stores)
            self._finish(stores, self._store, groups)
            at = end

    def _store(self, groups: list[PutGroup]) -> None:
        self.bank.put_many(groups, texts=self.texts)

    @staticmethod
    def _finish(ops: list[_Op], fn: Callable[..., Any], *args: Any) -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to every caller of the batch
            error = exc
        for _, _, loop, fut in ops:
            with contextlib.suppress(RuntimeError):  # RuntimeError: that caller's loop has closed
                loop.call_soon_threadsafe(_settle, fut, result, error)
