"""``QueueSuite``: the conformance tests of a bank's task queue (:class:`~iapo.bank.TaskQueue`).

Subclass it in a test module (its name must start with ``Test``), as for
:class:`~iapo.testing.BankSuite`: give it a ``storage`` fixture (a fresh, empty storage URL per
test) and, unless :func:`~iapo.bank.open_bank` opens that URL, override :meth:`QueueSuite.open`::

    class TestMyQueue(QueueSuite):
        persistent = True

        @pytest.fixture
        def storage(self, tmp_path: Path) -> str:
            return f"mybank:///{tmp_path / 'bank'}"

The suite uses only the storage URL and ``open``: it runs unchanged against any storage. A
persistent bank (``persistent = True``) must share its queue between bank objects on one storage
(each worker process has its own) and keep it across reopening. Importing this module needs
pytest.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from iapo.bank import TASK_STATES, SampleBank, Task, open_bank

__all__ = ["QueueSuite"]

D = "dist-key"


def _specs(n: int, run: str = "") -> list[tuple[str, str, str, list[int]]]:
    return [(f"{D}{run}{i}", f"p{i}", f"q{i}", [2 * i, 2 * i + 1]) for i in range(n)]


class QueueSuite:
    """The task-queue contract as pytest tests (see the module docstring)."""

    #: Whether the queue outlives the bank object and is shared by bank objects on one storage.
    persistent: ClassVar[bool] = True

    @pytest.fixture
    def storage(self) -> str:
        """A fresh, empty storage URL for one test: override it."""
        raise NotImplementedError("a QueueSuite subclass defines the `storage` fixture")

    def open(self, storage: str) -> SampleBank:
        """Open (a persistent bank: reopen) the bank at ``storage``; default: ``open_bank``."""
        return open_bank(storage)

    @pytest.fixture
    def bank(self, storage: str) -> Iterator[SampleBank]:
        with self.open(storage) as bank:
            yield bank

    def _banks(self, storage: str, n: int) -> list[SampleBank]:
        """``n`` bank objects on ``storage`` (one shared object if it is not persistent)."""
        if self.persistent:
            return [self.open(storage) for _ in range(n)]
        return [self.open(storage)] * n

    # -- publishing and reading -------------------------------------------------------------
    def test_publish_gives_growing_ids_and_tasks_round_trip(self, bank: SampleBank) -> None:
        ids = bank.publish("run1", [("d\u00e9", "p", "q", range(3, 7)), (D, "p2", "q2", [9])])
        more = bank.publish("run1", [(D, "p", "q", [0])], max_attempts=5)
        assert len(ids) == 2 and ids[0] < ids[1] < more[0]
        assert bank.publish("run1", []) == []
        got = bank.get_tasks([*ids, *more, 10**9])
        assert set(got) == {*ids, *more}
        assert got[ids[0]] == Task(ids[0], "run1", "d\u00e9", "p", "q", (3, 4, 5, 6))
        assert got[ids[1]].indices == (9,) and got[ids[1]].status == "queued"
        assert got[more[0]].max_attempts == 5 and got[more[0]].attempts == 0
        assert bank.task_counts("run1") == {"queued": 3, "leased": 0, "done": 0, "failed": 0}
        assert bank.task_counts("other") == dict.fromkeys(TASK_STATES, 0)

    # -- taking -------------------------------------------------------------------------------
    def test_take_leases_the_oldest_first_up_to_the_limit(self, bank: SampleBank) -> None:
        ids = bank.publish("r", _specs(5))
        first = bank.take("w1", 2, 60.0)
        assert [t.id for t in first] == ids[:2]
        assert all(t.status == "leased" and t.worker == "w1" for t in first)
        assert all(t.expires is not None for t in first)
        assert [t.id for t in bank.take("w2", 10, 60.0)] == ids[2:]
        assert bank.take("w3", 10, 60.0) == [] and bank.take("w1", 0, 60.0) == []
        assert bank.task_counts("r") == {"queued": 0, "leased": 5, "done": 0, "failed": 0}

    def test_take_filters_by_run_and_leaves_out_excluded_runs(self, bank: SampleBank) -> None:
        a = bank.publish("a", _specs(2, "a"))
        b = bank.publish("b", _specs(2, "b"))
        assert [t.id for t in bank.take("w", 10, 60.0, run_id="b")] == b
        assert bank.take("w", 10, 60.0, exclude=["a"]) == []
        assert [t.id for t in bank.take("w", 10, 60.0, exclude=["b"])] == a

    def test_a_lapsed_lease_is_taken_by_another_worker_and_the_old_holder_loses_it(
        self, bank: SampleBank
    ) -> None:
        (tid,) = bank.publish("r", _specs(1))
        assert [t.id for t in bank.take("dead", 1, -1.0)] == [tid]  # lapsed at once
        assert bank.task_counts("r")["queued"] == 1  # a lapsed lease counts as queued
        (again,) = bank.take("alive", 1, 60.0)
        assert again.id == tid and again.worker == "alive"
        assert bank.take("dead", 1, 60.0) == []
        assert bank.renew_tasks([tid], "dead", 60.0) == []
        assert bank.finish_tasks([tid], "dead") == []
        assert bank.fail_task(tid, "dead", "late") is None
        assert bank.release_tasks([tid], "dead") == []
        assert bank.get_tasks([tid])[tid].worker == "alive"
        assert bank.finish_tasks([tid], "alive") == [tid]

    def test_renew_keeps_a_lease_and_a_holder_may_renew_a_lapsed_one(
        self, bank: SampleBank
    ) -> None:
        ids = bank.publish("r", _specs(2))
        bank.take("w", 2, -1.0)
        assert bank.renew_tasks([*ids, ids[0], 10**9], "w", 60.0) == ids
        assert bank.take("other", 2, 60.0) == []
        assert bank.task_counts("r")["leased"] == 2

    def test_finish_and_release(self, bank: SampleBank) -> None:
        ids = bank.publish("r", _specs(3))
        bank.take("w", 3, 60.0)
        assert bank.finish_tasks(ids[:2], "w") == ids[:2]
        assert bank.finish_tasks(ids[:2], "w") == []  # done: no longer held
        assert bank.release_tasks(ids, "w") == ids[2:]
        got = bank.get_tasks(ids)
        assert [got[i].status for i in ids] == ["done", "done", "queued"]
        assert got[ids[2]].worker is None and got[ids[2]].attempts == 0
        assert [t.id for t in bank.take("w", 3, 60.0)] == ids[2:]  # released: anyone's again
        assert bank.task_counts("r") == {"queued": 0, "leased": 1, "done": 2, "failed": 0}

    # -- failures -----------------------------------------------------------------------------
    def test_a_failed_attempt_requeues_then_fails_for_good_with_the_error(
        self, bank: SampleBank
    ) -> None:
        (tid,) = bank.publish("r", _specs(1), max_attempts=2)
        bank.take("w1", 1, 60.0)
        assert bank.fail_task(tid, "w1", "HTTP 500", retry_after=60.0) == "queued"
        t = bank.get_tasks([tid])[tid]
        assert (t.status, t.attempts, t.worker, t.error) == ("queued", 1, None, "HTTP 500")
        assert bank.take("w1", 1, 60.0) == []  # not offered again to the worker that failed it
        (again,) = bank.take("w2", 1, 60.0)  # another worker takes it at once
        assert again.id == tid and again.attempts == 1
        assert bank.fail_task(tid, "w2", "HTTP 400: bad model") == "failed"
        t = bank.get_tasks([tid])[tid]
        assert (t.status, t.attempts, t.error) == ("failed", 2, "HTTP 400: bad model")
        assert bank.take("w3", 1, 60.0) == []
        assert bank.task_counts("r") == {"queued": 0, "leased": 0, "done": 0, "failed": 1}

    def test_the_failing_worker_gets_its_task_back_once_the_retry_delay_is_over(
        self, bank: SampleBank
    ) -> None:
        (tid,) = bank.publish("r", _specs(1))
        bank.take("w", 1, 60.0)
        assert bank.fail_task(tid, "w", "timeout", retry_after=-1.0) == "queued"
        assert [t.id for t in bank.take("w", 1, 60.0)] == [tid]

    # -- cancelling ---------------------------------------------------------------------------
    def test_cancel_removes_what_is_not_done_and_ids_are_never_reused(
        self, bank: SampleBank
    ) -> None:
        ids = bank.publish("r", _specs(4), max_attempts=1)
        keep = bank.publish("other", _specs(1))
        bank.take("w", 3, 60.0)
        bank.finish_tasks([ids[0]], "w")
        bank.fail_task(ids[1], "w", "boom")
        assert bank.cancel_tasks("r") == 3
        assert set(bank.get_tasks([*ids, *keep])) == {ids[0], *keep}
        assert bank.task_counts("r") == {"queued": 0, "leased": 0, "done": 1, "failed": 0}
        assert bank.finish_tasks([ids[2]], "w") == []  # a cancelled task is no one's
        assert bank.cancel_tasks("r") == 0
        (new,) = bank.publish("r", _specs(1))
        assert new > max(*ids, *keep)

    # -- heartbeats and inputs ----------------------------------------------------------------
    def test_heartbeats_keep_each_workers_latest_info(self, bank: SampleBank) -> None:
        assert bank.worker_records() == []
        bank.beat("w1", {"host": "a", "drawn": 1})
        bank.beat("w2", {"host": "b", "drawn": 0, "rate": 1.5})
        bank.beat("w1", {"host": "a", "drawn": 7})
        recs = {r["worker"]: r for r in bank.worker_records()}
        assert set(recs) == {"w1", "w2"}
        assert recs["w1"]["drawn"] == 7 and recs["w2"]["rate"] == 1.5
        assert recs["w1"]["seen"] >= recs["w2"]["seen"] > 0
        assert bank.worker_records()[0]["worker"] == "w1"  # most recently seen first

    def test_run_inputs_round_trip_as_fresh_copies(self, bank: SampleBank) -> None:
        assert bank.run_inputs("r") is None
        inputs = {"queries": [{"id": "q1", "text": "\u00e9t\u00e9?", "gold": None}]}
        bank.put_run_inputs("r", inputs)
        got = bank.run_inputs("r")
        assert got == inputs
        assert got is not None
        got["queries"].clear()
        assert bank.run_inputs("r") == inputs
        bank.put_run_inputs("r", {"queries": []})
        assert bank.run_inputs("r") == {"queries": []}

    # -- several workers ----------------------------------------------------------------------
    def test_concurrent_workers_never_hold_one_task_twice(self, storage: str) -> None:
        banks = self._banks(storage, 4)
        ids = banks[0].publish("r", _specs(60))
        start = threading.Barrier(len(banks))
        got: list[list[int]] = [[] for _ in banks]

        def work(t: int) -> None:
            start.wait()
            while tasks := banks[t].take(f"w{t}", 3, 60.0):
                got[t] += [x.id for x in tasks]
                assert banks[t].finish_tasks([x.id for x in tasks], f"w{t}") == [
                    x.id for x in tasks
                ]

        threads = [threading.Thread(target=work, args=(t,)) for t in range(len(banks))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        counts = banks[0].task_counts("r")
        for b in set(banks):
            b.close()
        assert sorted(i for ids_ in got for i in ids_) == ids  # each exactly once
        assert counts == {"queued": 0, "leased": 0, "done": 60, "failed": 0}

    def test_the_queue_is_shared_and_survives_reopening(self, storage: str) -> None:
        if not self.persistent:
            pytest.skip("the bank is not persistent")
        with self.open(storage) as a, self.open(storage) as b:
            ids = a.publish("r", _specs(2))
            a.put_run_inputs("r", {"queries": ["x"]})
            a.beat("w", {"n": 1})
            assert [t.id for t in b.take("w", 1, 60.0)] == ids[:1]
        with self.open(storage) as c:
            assert c.get_tasks(ids)[ids[0]].worker == "w"
            assert c.task_counts("r") == {"queued": 1, "leased": 1, "done": 0, "failed": 0}
            assert c.run_inputs("r") == {"queries": ["x"]}
            assert [r["worker"] for r in c.worker_records()] == ["w"]
