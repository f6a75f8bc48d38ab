"""The sampler's bank thread: calls in order, concurrent stores coalesced into one transaction,
failures handed to each caller, the thread gone when idle (a real SQLite file)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from iapo._bankio import BankIO
from iapo.bank import SampleBank, SQLiteBank
from iapo.types import Sample


def _sample(i: int) -> Sample:
    return Sample(answer=str(i), scores={"accuracy": 1.0}, cost=float(i), text=f"t{i}", usage={})


class _CountingBank(SQLiteBank):
    """A SQLite bank that counts its write transactions and can be made to fail them."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.transactions = 0
        self.fail = False
        self.gate = threading.Event()
        self.gate.set()

    def put_many(self, groups, *, texts=True):  # type: ignore[no-untyped-def]
        self.gate.wait(10)
        if self.fail:
            raise OSError("disk full")
        self.transactions += 1
        super().put_many(groups, texts=texts)


def test_concurrent_stores_share_transactions_and_all_land(tmp_path: Path) -> None:
    bank = _CountingBank(tmp_path / "bank.sqlite")
    io = BankIO(bank)

    async def main() -> None:
        bank.gate.clear()  # the first store blocks the thread: the rest pile up behind it
        first = asyncio.ensure_future(io.put(("d0", "p", "q", [(0, _sample(0))])))
        await asyncio.sleep(0.05)
        rest = [io.put((f"d{k}", "p", "q", [(0, _sample(k))])) for k in range(1, 200)]
        tasks = [asyncio.ensure_future(r) for r in rest]
        await asyncio.sleep(0.05)
        bank.gate.set()
        await asyncio.gather(first, *tasks)

    asyncio.run(main())
    assert io.stores == 200
    assert bank.transactions == io.writes
    assert bank.transactions <= 3  # one for the first, the 199 waiting together in one or two
    got = bank.get_many([(f"d{k}", [0]) for k in range(200)])
    assert [g[0].answer for g in got] == [str(k) for k in range(200)]


def test_calls_run_in_submission_order(tmp_path: Path) -> None:
    bank: SampleBank = SQLiteBank(tmp_path / "bank.sqlite")
    io = BankIO(bank)

    async def main() -> dict[int, Sample]:
        put = asyncio.ensure_future(io.put(("d", "p", "q", [(i, _sample(i)) for i in range(5)])))
        get = asyncio.ensure_future(io.call(bank.get, "d", [0, 1, 2, 3, 4]))
        await put
        return await get

    assert sorted(asyncio.run(main())) == [0, 1, 2, 3, 4]


def test_a_failed_write_reaches_every_caller_and_the_thread_goes_on(tmp_path: Path) -> None:
    bank = _CountingBank(tmp_path / "bank.sqlite")
    io = BankIO(bank)

    async def main() -> list[object]:
        bank.fail = True
        results = await asyncio.gather(
            *(io.put((f"d{k}", "p", "q", [(0, _sample(k))])) for k in range(5)),
            return_exceptions=True,
        )
        bank.fail = False
        await io.put(("ok", "p", "q", [(0, _sample(9))]))
        return results

    results = asyncio.run(main())
    assert all(isinstance(r, OSError) for r in results)
    assert bank.get("ok", [0])[0].answer == "9"
    assert bank.get("d0", [0]) == {}


def test_works_across_event_loops_and_leaves_no_thread(tmp_path: Path) -> None:
    """A new event loop (a later asyncio.run, as Policy.ask does) serves calls as the first did;
    nothing keeps running after asyncio.run returns (the default executor is joined)."""
    io = BankIO(SQLiteBank(tmp_path / "bank.sqlite"))
    before = threading.active_count()
    asyncio.run(io.put(("d", "p", "q", [(0, _sample(0))])))
    assert asyncio.run(io.call(io.bank.get, "d", [0]))[0].answer == "0"
    assert threading.active_count() == before


def test_a_store_queued_when_the_loop_ends_is_still_written(tmp_path: Path) -> None:
    """Cancelled at the loop's end (Ctrl-C), a store already submitted is carried out before
    asyncio.run returns, as ``asyncio.to_thread`` calls were."""
    bank = _CountingBank(tmp_path / "bank.sqlite")
    io = BankIO(bank)

    async def main() -> None:
        bank.gate.clear()
        a = asyncio.ensure_future(io.put(("a", "p", "q", [(0, _sample(1))])))
        await asyncio.sleep(0.05)  # "a" is in the executor, blocked
        b = asyncio.ensure_future(io.put(("b", "p", "q", [(0, _sample(2))])))  # queued behind it
        assert not (a.done() or b.done())
        await asyncio.sleep(0)
        threading.Timer(0.2, bank.gate.set).start()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(main())
    assert bank.get("a", [0])[0].answer == "1"
    assert bank.get("b", [0])[0].answer == "2"


def test_a_cancelled_caller_does_not_break_the_others(tmp_path: Path) -> None:
    bank = _CountingBank(tmp_path / "bank.sqlite")
    io = BankIO(bank)

    async def main() -> None:
        bank.gate.clear()
        doomed = asyncio.ensure_future(io.put(("x", "p", "q", [(0, _sample(1))])))
        other = asyncio.ensure_future(io.put(("y", "p", "q", [(0, _sample(2))])))
        await asyncio.sleep(0.05)
        doomed.cancel()
        bank.gate.set()
        await other
        with pytest.raises(asyncio.CancelledError):
            await doomed

    asyncio.run(main())
    # the cancelled store was already queued: it is written all the same (as to_thread did)
    assert bank.get("x", [0])[0].answer == "1"
    assert bank.get("y", [0])[0].answer == "2"


def test_a_loop_closed_without_cancelling_its_tasks_does_not_stall_the_next(tmp_path: Path) -> None:
    """A loop closed by hand (not asyncio.run) leaves its drainer pending: the next loop starts
    its own, carries out what was queued, and answers only its own callers."""
    bank = _CountingBank(tmp_path / "bank.sqlite")
    io = BankIO(bank)
    old = asyncio.new_event_loop()
    bank.gate.clear()

    async def first() -> asyncio.Future[None]:
        put = asyncio.ensure_future(io.put(("a", "p", "q", [(0, _sample(1))])))
        await asyncio.sleep(0.05)  # the drainer has handed "a" to the executor (blocked)
        return put

    put = old.run_until_complete(first())
    bank.gate.set()
    for _ in range(500):  # "a" is written by the old loop's executor
        if bank.transactions:
            break
        threading.Event().wait(0.01)
    old.close()  # its drainer never finished
    assert not put.done()

    async def second() -> dict[int, Sample]:
        return await asyncio.wait_for(io.call(bank.get, "a", [0]), timeout=10)

    assert asyncio.run(second())[0].answer == "1"
