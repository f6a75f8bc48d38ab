"""``BankSuite``: the conformance tests every :class:`~iapo.bank.SampleBank` passes.

Subclass it in a test module (its name must start with ``Test``), give it a ``storage`` fixture
(a fresh, empty storage URL per test) and, unless :func:`~iapo.bank.open_bank` opens that URL,
override :meth:`BankSuite.open`::

    class TestMyBank(BankSuite):
        persistent = True

        @pytest.fixture
        def storage(self, tmp_path: Path) -> str:
            return f"mybank:///{tmp_path / 'bank'}"

        def open(self, storage: str) -> SampleBank:
            return MyBank(storage)

A persistent bank (``persistent = True``) must give the same samples and runs when its storage
is opened again, and two bank objects on one storage must share them. Override
:meth:`BankSuite.foreign_storages` to check that storage holding something else is refused.
Importing this module needs pytest.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from iapo.bank import RUN_FIELDS, SampleBank, open_bank
from iapo.errors import BankError
from iapo.types import Sample

__all__ = ["BankSuite"]

DIST = "model=m|prompt=p|query=q"

SAMPLES = {
    0: Sample(
        answer="B",
        scores={"helpful": 0.25, "harmless": -1.5},
        cost=153.0,
        text="Thinking…\nso the answer is B",
        usage={"prompt_tokens": 12, "completion_tokens": 153},
    ),
    1: Sample(answer=None, scores={}, cost=0.0, text=None, usage={}),
    3: Sample(answer="", scores={"accuracy": 1.0}, cost=2.5e-06, text="", usage={}),
    7: Sample(answer="7", scores={"x": 1e300}, cost=7.0, text="ünïcode ✓", usage={"n": 0}),
}


def _sample(tag: str) -> Sample:
    return Sample(answer=tag, scores={"s": 1.0}, cost=1.0)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


class BankSuite:
    """The :class:`~iapo.bank.SampleBank` contract as pytest tests (see the module docstring)."""

    #: Whether the bank's samples and runs outlive the bank object (resume tests need it).
    persistent: ClassVar[bool] = True

    @pytest.fixture
    def storage(self) -> str:
        """A fresh, empty storage URL for one test: override it."""
        raise NotImplementedError("a BankSuite subclass defines the `storage` fixture")

    def open(self, storage: str) -> SampleBank:
        """Open (a persistent bank: reopen) the bank at ``storage``; default: ``open_bank``."""
        return open_bank(storage)

    def foreign_storages(self, tmp_path: Path) -> list[str]:
        """Storage URLs under ``tmp_path`` holding something that is not a bank of this
        version: opening each must raise BankError and leave every file under ``tmp_path``
        byte-for-byte as it was. Default: none (the test is skipped)."""
        return []

    @pytest.fixture
    def bank(self, storage: str) -> Iterator[SampleBank]:
        with self.open(storage) as bank:
            yield bank

    def _need_persistence(self) -> None:
        if not self.persistent:
            pytest.skip("the bank is not persistent")

    # -- samples ------------------------------------------------------------------------------
    def test_put_get_round_trips_every_sample_field(self, bank: SampleBank) -> None:
        bank.put(DIST, "p", "q", iter(SAMPLES.items()))  # any iterable, here a one-shot one
        got = bank.get(DIST, [0, 1, 3, 7])
        assert got == SAMPLES
        assert all(isinstance(s.cost, float) for s in got.values())
        assert bank.get(DIST, [7, 0]) == {7: SAMPLES[7], 0: SAMPLES[0]}

    def test_get_leaves_out_missing_indices_and_other_distributions(self, bank: SampleBank) -> None:
        assert bank.get(DIST, [0, 1, 2]) == {}
        bank.put(DIST, "p", "q", [(i, _sample(f"a{i}")) for i in (0, 2, 4)])
        bank.put(DIST + "2", "p", "q2", [(1, _sample("other")), (3, _sample("other"))])
        assert bank.get(DIST, [1, 2, 3]) == {2: _sample("a2")}
        assert bank.get(DIST, range(6)) == {i: _sample(f"a{i}") for i in (0, 2, 4)}
        assert bank.get(DIST, []) == {}
        assert bank.get(DIST + "2", [0, 1, 2, 3, 4]) == {1: _sample("other"), 3: _sample("other")}
        assert bank.get("never-written", [0]) == {}

    def test_put_is_idempotent_and_the_first_value_wins(self, bank: SampleBank) -> None:
        bank.put(DIST, "p", "q", [(0, _sample("first")), (1, _sample("first"))])
        bank.put(DIST, "p", "q", [(1, _sample("second")), (2, _sample("second"))])
        bank.put(DIST, "p", "q", [])
        assert bank.get(DIST, [0, 1, 2]) == {
            0: _sample("first"),
            1: _sample("first"),
            2: _sample("second"),
        }

    def test_put_keeps_no_reference_to_the_callers_mappings(self, bank: SampleBank) -> None:
        scores: dict[str, float] = {"s": 1.0}
        bank.put(DIST, "p", "q", [(0, Sample(answer="A", scores=scores))])
        scores["s"] = 0.0
        assert bank.get(DIST, [0])[0].scores == {"s": 1.0}

    # -- batches ------------------------------------------------------------------------------
    def test_put_many_stores_every_group_as_put_would(self, bank: SampleBank) -> None:
        bank.put(DIST, "p", "q", [(0, _sample("first"))])
        bank.put_many(
            [
                (DIST, "p", "q", list(SAMPLES.items())),  # index 0 is kept: first value wins
                (DIST + "2", "p", "q2", [(5, _sample("other"))]),
                (DIST + "3", "p", "q3", []),
                (DIST + "2", "p", "q2", [(5, _sample("later")), (6, _sample("six"))]),
            ]
        )
        bank.put_many([])
        assert bank.get(DIST, list(SAMPLES)) == {**SAMPLES, 0: _sample("first")}
        assert bank.get(DIST + "2", range(10)) == {5: _sample("other"), 6: _sample("six")}
        assert bank.get(DIST + "3", range(10)) == {}

    def test_get_many_answers_each_request_in_order(self, bank: SampleBank) -> None:
        bank.put_many([(DIST, "p", "q", list(SAMPLES.items())), (DIST + "2", "p", "q", [])])
        bank.put(DIST + "2", "p", "q", [(1, _sample("x"))])
        got = bank.get_many([(DIST, [7, 0]), ("never", [0]), (DIST, []), (DIST + "2", range(3))])
        assert got == [{7: SAMPLES[7], 0: SAMPLES[0]}, {}, {}, {1: _sample("x")}]
        assert bank.get_many([]) == []
        got[0][7] = _sample("changed by the caller")
        assert bank.get(DIST, [7]) == {7: SAMPLES[7]}

    def test_put_many_can_leave_the_texts_out(self, bank: SampleBank) -> None:
        with bank.writer(texts=False) as w:
            w.add(DIST, "p", "q", list(SAMPLES.items()))
        bare = {i: Sample(s.answer, s.scores, s.cost, None, s.usage) for i, s in SAMPLES.items()}
        assert bank.get(DIST, list(SAMPLES)) == bare and SAMPLES[0].text  # the caller's kept

    def test_put_many_ends_the_claims_of_what_it_stores(self, bank: SampleBank) -> None:
        assert bank.claim(DIST, [0, 1], "a", 60.0) == [0, 1]
        bank.put_many([(DIST, "p", "q", [(0, _sample("x"))])])
        assert bank.holders(DIST, [0, 1]) == {1: "a"}

    def test_a_writer_writes_in_batches_and_on_exit_even_after_a_failure(
        self, bank: SampleBank
    ) -> None:
        with bank.writer(rows=3) as w:
            assert w.add(DIST, "p", "q", [(0, _sample("a")), (1, _sample("b"))]) is False
            assert w.add(DIST, "p", "q", []) is False
            assert bank.get(DIST, [0, 1]) == {}  # collected, not written yet
            assert w.add(DIST + "2", "p", "q2", [(0, _sample("c"))]) is True  # 3 waiting
            w.flush()
            assert bank.get(DIST, [0, 1]) == {0: _sample("a"), 1: _sample("b")} and not w.take()
            w.add(DIST, "p", "q", [(2, _sample("d"))])
        assert bank.get(DIST, [2]) == {2: _sample("d")}  # flushed on exit
        with pytest.raises(RuntimeError, match="boom"), bank.writer() as w:
            w.add(DIST, "p", "q", [(3, _sample("e"))])
            raise RuntimeError("boom")
        assert bank.get(DIST, [3]) == {3: _sample("e")}  # what was collected is kept

    def test_concurrent_batch_writers_store_each_index_once(self, storage: str) -> None:
        one = None if self.persistent else self.open(storage)
        banks = [one or self.open(storage) for _ in range(3)]
        start = threading.Barrier(3)

        def write(t: int) -> None:
            start.wait()
            for lo in range(0, 60, 6):  # overlapping groups of several distributions
                items = [(i, _sample(f"t{t}")) for i in range(lo, lo + 9)]
                banks[t].put_many([(f"{DIST}{d}", "p", f"q{d}", items) for d in range(3)])

        threads = [threading.Thread(target=write, args=(t,)) for t in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for d in range(3):
            got = banks[0].get(f"{DIST}{d}", range(80))
            assert sorted(got) == list(range(63))
            assert {s.answer for s in got.values()} <= {"t0", "t1", "t2"}
        for b in set(banks):
            b.close()

    # -- runs ---------------------------------------------------------------------------------
    def test_run_records(self, bank: SampleBank) -> None:
        config: dict[str, Any] = {"name": "r", "grid": [1, 2.5, None], "nested": {"k": "✓"}}
        assert bank.runs() == []
        bank.start_run("run1", "first", 500, config)
        (rec,) = bank.runs()
        assert set(rec) == set(RUN_FIELDS)
        assert (rec["id"], rec["name"], rec["status"]) == ("run1", "first", "running")
        assert (rec["budget"], rec["spent"], rec["result"]) == (500, 0, None)
        assert rec["config"] == config
        assert isinstance(rec["created"], float) and isinstance(rec["updated"], float)

        rec["config"]["name"] = "changed by the caller"
        assert bank.runs()[0]["config"] == config  # a fresh copy each time

        bank.update_run("run1", spent=120)
        (rec,) = bank.runs()
        assert (rec["status"], rec["spent"], rec["result"]) == ("running", 120, None)
        result = {"policy": {"c0": {"prompt": "p", "n": 3}}, "acr": 0.75, "ci": [0.5, None]}
        bank.update_run("run1", status="done", spent=480, result=result)
        (rec,) = bank.runs()
        assert (rec["status"], rec["spent"], rec["result"]) == ("done", 480, result)
        bank.update_run("run1", status="stopped")
        assert bank.runs()[0]["spent"] == 480 and bank.runs()[0]["result"] == result

        bank.update_run("never-started", status="done", spent=1)
        assert [r["id"] for r in bank.runs()] == ["run1"]

    def test_start_run_again_resumes_and_keeps_the_record(self, bank: SampleBank) -> None:
        bank.start_run("run1", "first", 500, {"v": 1})
        bank.update_run("run1", status="interrupted", spent=120)
        (before,) = bank.runs()
        bank.start_run("run1", "renamed", 900, {"v": 2})
        (rec,) = bank.runs()
        assert rec["status"] == "running" and rec["created"] == before["created"]
        assert (rec["name"], rec["budget"], rec["config"], rec["spent"]) == (
            "first",
            500,
            {"v": 1},
            120,
        )

    def test_runs_are_listed_oldest_first(self, bank: SampleBank) -> None:
        for i in range(3):
            bank.start_run(f"run{i}", f"name{i}", 10, {})
        recs = bank.runs()
        assert {r["id"] for r in recs} == {"run0", "run1", "run2"}
        created = [r["created"] for r in recs]
        assert created == sorted(created)

    def test_run_records_keep_their_data_identity(self, bank: SampleBank) -> None:
        bank.start_run("run1", "first", 10, {}, "pool-a")
        assert bank.runs()[0]["data"] == "pool-a"
        bank.start_run("run1", "first", 10, {})  # resumed without saying: kept
        assert bank.runs()[0]["data"] == "pool-a"
        bank.start_run("run1", "first", 10, {}, "pool-b")  # resumed on other data: updated
        assert bank.runs()[0]["data"] == "pool-b"
        bank.start_run("run2", "second", 10, {})
        assert bank.runs()[1]["data"] is None

    # -- claims -------------------------------------------------------------------------------
    def test_claims_are_exclusive_renewable_released_and_end_when_stored(
        self, bank: SampleBank
    ) -> None:
        assert bank.claim(DIST, [0, 1, 2], "a", 60.0) == [0, 1, 2]
        assert bank.claim(DIST, [3, 1, 2], "b", 60.0) == [3]  # in the order given
        assert bank.claim(DIST, [1, 0], "a", 60.0) == [1, 0]  # an owner renews its own
        assert bank.claim(DIST, [], "a", 60.0) == []
        bank.release(DIST, [3], "a")  # not a's: kept
        assert bank.claim(DIST, [3], "a", 60.0) == []
        bank.release(DIST, [0], "a")
        assert bank.claim(DIST, [0, 1], "b", 60.0) == [0]
        bank.put(DIST, "p", "q", [(1, _sample("stored"))])
        assert bank.claim(DIST, [1], "a", 60.0) == []  # stored: nothing left to claim
        assert bank.claim(DIST, [1], "b", 60.0) == []
        assert bank.claim(DIST + "2", [0], "c", 60.0) == [0]  # per distribution

    def test_holders_name_the_owners_of_live_claims(self, bank: SampleBank) -> None:
        bank.claim(DIST, [0, 1], "a", 60.0)
        bank.claim(DIST, [2], "b", -1.0)  # lapsed
        bank.put(DIST, "p", "q", [(1, _sample("stored"))])
        assert bank.holders(DIST, [0, 1, 2, 3]) == {0: "a"}
        bank.release(DIST, [0], "a")
        assert bank.holders(DIST, [0]) == {}

    def test_a_lapsed_claim_is_free_for_others(self, bank: SampleBank) -> None:
        assert bank.claim(DIST, [5, 6], "dead", -1.0) == [5, 6]  # lapsed at once
        assert bank.claim(DIST, [5, 6], "alive", 60.0) == [5, 6]
        assert bank.claim(DIST, [5, 6], "dead", 60.0) == []

    def test_concurrent_claims_never_give_one_index_twice(self, storage: str) -> None:
        banks = [self.open(storage) for _ in range(4)] if self.persistent else []
        if not banks:
            shared = self.open(storage)
            banks = [shared] * 4
        start = threading.Barrier(len(banks))
        got: list[list[int]] = [[] for _ in banks]

        def claim(t: int) -> None:
            start.wait()
            for lo in range(0, 40, 5):
                got[t] += banks[t].claim(DIST, range(lo, lo + 8), f"owner{t}", 60.0)

        threads = [threading.Thread(target=claim, args=(t,)) for t in range(len(banks))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for b in set(banks):
            b.close()
        owned = [set(ids) for ids in got]  # an owner re-claiming its own indices renews them
        assert sorted(i for ids in owned for i in ids) == list(range(43))  # one owner each

    def test_wait_returns_what_other_claimants_stored(self, bank: SampleBank) -> None:
        bank.put(DIST, "p", "q", [(2, _sample("x"))])
        assert asyncio.run(bank.wait(DIST, [1, 2], 0.0)) == {2: _sample("x")}

    # -- lifetime -----------------------------------------------------------------------------
    def test_close_is_idempotent_and_the_bank_is_a_context_manager(self, storage: str) -> None:
        bank = self.open(storage)
        with bank as entered:
            assert entered is bank
            assert isinstance(bank.url, str) and bank.url
        bank.close()
        bank.close()

    def test_resume_after_close_keeps_samples_and_runs(self, storage: str) -> None:
        self._need_persistence()
        with self.open(storage) as bank:
            bank.put(DIST, "p", "q", SAMPLES.items())
            bank.start_run("run1", "first", 500, {"v": 1})
            bank.update_run("run1", status="interrupted", spent=42)
            runs = bank.runs()
            url = bank.url
        with self.open(storage) as again:
            assert again.get(DIST, list(SAMPLES)) == SAMPLES
            assert again.runs() == runs
            again.put(DIST, "p", "q", [(0, _sample("later"))])
            assert again.get(DIST, [0]) == {0: SAMPLES[0]}
        with self.open(url) as by_url:  # a bank's url names its storage
            assert by_url.get(DIST, [0]) == {0: SAMPLES[0]}

    def test_concurrent_writers_store_each_index_once_with_its_first_value(
        self, bank: SampleBank
    ) -> None:
        self._check_concurrent_writers([bank] * 6)

    def test_two_bank_objects_on_one_storage_share_samples(self, storage: str) -> None:
        self._need_persistence()
        with self.open(storage) as one, self.open(storage) as two:
            self._check_concurrent_writers([one, two] * 3)
            one.start_run("run1", "first", 10, {})
            assert [r["id"] for r in two.runs()] == ["run1"]

    def _check_concurrent_writers(self, banks: list[SampleBank]) -> None:
        """Thread ``t`` writes its own indices ``100*t..`` and the shared ``0..19`` in small
        batches, reading back after each: every index ends up stored with one writer's value,
        and no reader ever saw another value for it."""
        start = threading.Barrier(len(banks))
        shared = list(range(20))
        own = [list(range(100 * (t + 1), 100 * (t + 1) + 20)) for t in range(len(banks))]
        seen: list[dict[int, Sample]] = [{} for _ in banks]
        errors: list[BaseException] = []

        def write(t: int, bank: SampleBank) -> None:
            try:
                start.wait()
                for lo in range(0, 20, 4):
                    batch = [*own[t][lo : lo + 4], *shared[lo : lo + 4]]
                    bank.put(DIST, "p", "q", [(i, _sample(f"t{t}:{i}")) for i in batch])
                    seen[t].update(bank.get(DIST, batch))
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(t, b)) for t, b in enumerate(banks)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        final = banks[0].get(DIST, [*shared, *(i for ids in own for i in ids)])
        for t, ids in enumerate(own):
            assert {i: final.get(i) for i in ids} == {i: _sample(f"t{t}:{i}") for i in ids}
        for i in shared:
            assert final[i].answer in {f"t{t}:{i}" for t in range(len(banks))}
        for t, got in enumerate(seen):
            assert len(got) == 40
            assert all(final[i] == s for i, s in got.items()), f"thread {t} saw a replaced value"

    def test_foreign_storage_is_refused_and_left_untouched(self, tmp_path: Path) -> None:
        foreign = self.foreign_storages(tmp_path)
        if not foreign:
            pytest.skip("no foreign storage to try for this bank")
        before = _snapshot(tmp_path)
        for url in foreign:
            with pytest.raises(BankError):
                self.open(url)
            assert _snapshot(tmp_path) == before, url
