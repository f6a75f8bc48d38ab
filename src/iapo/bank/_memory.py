"""An in-memory sample bank: for tests and ``storage: "memory:"`` (nothing outlives the process)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from iapo.bank._base import PutGroup, RunRecord, SampleBank
from iapo.bank._memory_queue import MemoryQueue
from iapo.fmt import strict_json
from iapo.types import Sample

__all__ = ["MEMORY_URL", "MemoryBank"]

#: The storage URL of an in-memory bank; each opening gives a new, empty bank.
MEMORY_URL = "memory:"


class MemoryBank(MemoryQueue, SampleBank):
    """A :class:`SampleBank` in dicts behind one lock: thread-safe, gone when closed or dropped.

    Run configs and results are kept as JSON text, so they round-trip exactly as in a SQLite
    bank (and an unserialisable one fails at once, as there).
    """

    url = MEMORY_URL

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, dict[int, Sample]] = {}
        self._runs: dict[str, dict[str, Any]] = {}
        self._claims: dict[tuple[str, int], tuple[str, float]] = {}  # -> (owner, expires)
        self._init_queue()

    def get(self, dist: str, indices: Sequence[int]) -> dict[int, Sample]:
        """The stored samples of ``dist`` among ``indices``."""
        return self.get_many([(dist, indices)])[0]

    def get_many(self, wanted: Sequence[tuple[str, Sequence[int]]]) -> list[dict[int, Sample]]:
        """The stored samples of each ``(dist, indices)``, read at one moment."""
        with self._lock:
            out = []
            for dist, indices in wanted:
                stored = self._samples.get(dist, {})
                out.append({i: stored[i] for i in indices if i in stored})
            return out

    def put(self, dist: str, prompt: str, query: str, items: Iterable[tuple[int, Sample]]) -> None:
        """Store samples (an index already stored keeps its first value)."""
        self.put_many([(dist, prompt, query, list(items))])

    def put_many(self, groups: Iterable[PutGroup], *, texts: bool = True) -> None:
        """Store every group's samples at one moment (an index already stored keeps its first
        value; without their texts if not ``texts``)."""
        copies = [
            (
                dist,
                [
                    (
                        i,
                        Sample(
                            answer=s.answer,
                            scores=dict(s.scores),
                            cost=float(s.cost),
                            text=s.text if texts else None,
                            usage=dict(s.usage),
                        ),
                    )
                    for i, s in items
                ],
            )
            for dist, _, _, items in groups
        ]
        with self._lock:
            for dist, samples in copies:
                stored = self._samples.setdefault(dist, {})
                for i, s in samples:
                    stored.setdefault(i, s)
                    self._claims.pop((dist, i), None)

    def claim(self, dist: str, indices: Sequence[int], owner: str, ttl: float) -> list[int]:
        """Lease the free indices (neither stored nor leased by another live owner)."""
        now = time.time()
        with self._lock:
            stored = self._samples.get(dist, {})
            mine = []
            for i in indices:
                held = self._claims.get((dist, i))
                if i in stored or (held is not None and held[0] != owner and held[1] > now):
                    continue
                self._claims[(dist, i)] = (owner, now + ttl)
                mine.append(i)
            return mine

    def holders(self, dist: str, indices: Sequence[int]) -> dict[int, str]:
        """The owners of the live leases among ``indices``."""
        now = time.time()
        with self._lock:
            held = {i: self._claims.get((dist, i)) for i in indices}
        return {i: h[0] for i, h in held.items() if h is not None and h[1] > now}

    def release(self, dist: str, indices: Sequence[int], owner: str) -> None:
        """End ``owner``'s leases on ``indices``."""
        with self._lock:
            for i in indices:
                held = self._claims.get((dist, i))
                if held is not None and held[0] == owner:
                    del self._claims[(dist, i)]

    def start_run(
        self,
        run_id: str,
        name: str,
        budget: int,
        config: dict[str, Any],
        data: str | None = None,
    ) -> None:
        """Record a run as running (a known id: only status, ``updated`` and ``data`` change)."""
        text = strict_json(config)
        now = time.time()
        with self._lock:
            rec = self._runs.get(run_id)
            if rec is not None:
                rec.update(status="running", updated=now)
                if data is not None:
                    rec["data"] = data
                return
            self._runs[run_id] = {
                "id": run_id,
                "name": name,
                "status": "running",
                "created": now,
                "updated": now,
                "budget": budget,
                "spent": 0,
                "config": text,
                "result": None,
                "data": data,
            }

    def update_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        spent: int | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        """Set the given fields of a recorded run (an unknown id is ignored)."""
        changes: dict[str, Any] = {"updated": time.time()}
        if status is not None:
            changes["status"] = status
        if spent is not None:
            changes["spent"] = spent
        if result is not None:
            changes["result"] = strict_json(result)
        with self._lock:
            rec = self._runs.get(run_id)
            if rec is not None:
                rec.update(changes)

    def runs(self) -> list[RunRecord]:
        """Every recorded run, oldest first."""
        with self._lock:
            recs = [dict(r) for r in self._runs.values()]
        recs.sort(key=lambda r: r["created"])
        for rec in recs:
            rec["config"] = json.loads(rec["config"])
            rec["result"] = json.loads(rec["result"]) if rec["result"] is not None else None
        return recs

    def close(self) -> None:
        """Nothing to release (idempotent); the bank's contents go with the object."""
