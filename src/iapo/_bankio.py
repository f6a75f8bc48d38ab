"""A sampler's bank calls, in order, a batch at a time; stores waiting together written as one.

A live run has up to ``concurrency`` pulls in flight, each of which looks in the bank, claims its
indices, stores every completion as it lands and releases its claims. Sent each to the event
loop's default worker pool (``asyncio.to_thread``), those calls queued behind each other and
behind the pool's few threads, and every completion was its own transaction: at concurrency 128
a pull spent longer waiting for the bank than for its 200 ms HTTP request.

:class:`BankIO` queues them on the event loop and hands them to the default executor one batch
at a time, in submission order: whatever is waiting when the previous batch finishes goes
together, and consecutive stores become one :meth:`~iapo.bank.SampleBank.put_many` (one
transaction). Under load the bank sees one write per batch of completions, at rest one per
completion, as before. A call returns when its own operation is done (a store: when it is
committed), so "stored as soon as it arrives" still holds (up to the batch ahead of it).
Running on the default executor matters: ``asyncio.run`` joins it before it returns, so no bank
call is still running when the caller, e.g. on Ctrl-C, marks the run interrupted (a thread of
our own inside SQLite at that moment crashed the process: ``tests/test_reliability.py``). A
batch still queued when the loop cancels its tasks is handed to the executor all the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from iapo.bank import PutGroup, SampleBank

__all__ = ["BankIO"]

T = TypeVar("T")

# (function or None for a store, its arguments or the store's group, the caller's future)
_Op = tuple[Callable[..., Any] | None, Any, "asyncio.Future[Any]"]
_Outcome = tuple[Any, BaseException | None]


class BankIO:
    """Run ``bank`` calls in order, a batch at a time, coalescing consecutive stores."""

    def __init__(self, bank: SampleBank) -> None:
        self.bank = bank
        self._pending: list[_Op] = []
        self._drainer: asyncio.Task[None] | None = None
        #: Transactions the stores took (one per coalesced batch), and the stores: for tests.
        self.writes = 0
        self.stores = 0

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the executor, after everything submitted before it."""
        return await self._submit(fn, args)

    async def put(self, group: PutGroup) -> None:
        """Store one distribution's samples; returns once they are committed."""
        await self._submit(None, group)

    def _submit(self, fn: Callable[..., Any] | None, args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((fn, args, fut))
        drainer = self._drainer
        if drainer is None or drainer.done() or drainer.get_loop() is not loop:
            self._drainer = loop.create_task(self._drain())
        return fut

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                ops, self._pending = self._pending, []
                outcomes = await loop.run_in_executor(None, self._execute, ops)
                for (_, _, fut), (result, error) in zip(ops, outcomes, strict=True):
                    if fut.done() or fut.get_loop() is not loop:  # cancelled, or a dead loop's
                        continue
                    if error is not None:
                        fut.set_exception(error)
                    else:
                        fut.set_result(result)
        except asyncio.CancelledError:
            if self._pending:  # the loop is ending: what was submitted is still carried out
                ops, self._pending = self._pending, []
                loop.run_in_executor(None, self._execute, ops)
            raise

    def _execute(self, ops: list[_Op]) -> list[_Outcome]:
        """Carry out ``ops`` in order (in the executor); each one's (result, error)."""
        outcomes: list[_Outcome] = []
        at = 0
        while at < len(ops):
            fn, args, _ = ops[at]
            if fn is not None:
                outcomes.append(self._attempt(fn, *args))
                at += 1
                continue
            end = at
            while end < len(ops) and ops[end][0] is None:
                end += 1
            groups = [op[1] for op in ops[at:end]]
            self.writes += 1
            self.stores += len(groups)
            outcomes += [self._attempt(self._store, groups)] * len(groups)
            at = end
        return outcomes

    def _store(self, groups: list[PutGroup]) -> None:
        self.bank.put_many(groups)

    @staticmethod
    def _attempt(fn: Callable[..., Any], *args: Any) -> _Outcome:
        try:
            return fn(*args), None
        except Exception as exc:  # handed to every caller of the batch
            return None, exc
