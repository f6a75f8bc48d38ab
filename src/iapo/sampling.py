"""The read-through sampler: look in the sample bank, draw what is missing, store it.

Every completion anyone draws (a study, ``iapo record``, a deployed policy) goes through
:class:`CachedSampler`, so the bank stays the single source of truth: completion ``i`` of a
distribution is drawn once, stored under ``(backend.cache_key(prompt, query), i)`` as soon as it
arrives, and read back by every later request for the same index.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace

from iapo._bankio import BankIO
from iapo.backends import Backend
from iapo.bank import CLAIM_TTL, SampleBank
from iapo.types import Sample

__all__ = ["CachedSampler"]

#: How often a sampler waiting for another run's claimed samples looks in the bank (seconds).
WAIT_POLL = 0.05


def _dead_here(owner: str, host: str) -> bool:
    """Whether ``owner`` names a sampler on ``host`` whose process no longer exists."""
    parts = owner.split("/")
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


class _Slots:
    """At most ``capacity`` samples in flight; a request takes what it needs at once (capped)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.used = 0
        self._cond = asyncio.Condition()

    async def acquire(self, n: int) -> int:
        n = min(n, self.capacity)
        async with self._cond:
            await self._cond.wait_for(lambda: self.used + n <= self.capacity)
            self.used += n
        return n

    async def release(self, n: int) -> None:
        async with self._cond:
            self.used -= n
            self._cond.notify_all()


class CachedSampler:
    """Samples of ``backend`` through ``bank`` (None: straight from the backend, nothing stored).

    ``max_in_flight`` bounds the samples requested from the backend at once (None: unbounded;
    the backend's own client still enforces its concurrency). Bounding it keeps what an
    interruption loses (drawn but not yet banked) small.

    With a bank, every bank call goes through the sampler's :class:`~iapo._bankio.BankIO` (in
    order, a batch at a time, in the loop's executor: a busy bank never blocks the event loop;
    completions waiting together are written in one transaction), each completion is stored as
    soon as the backend reports it
    (:meth:`~iapo.backends.Backend.sample_each`), and a backend that is not ``reproducible``
    has each missing index claimed first (:meth:`~iapo.bank.SampleBank.claim`, renewed every
    ``claim_ttl / 3`` seconds while it is drawn): concurrent samplers on one bank, in any
    process, never request the same index twice; they wait for each other's instead. A claim
    of a process that died is released at once if it ran on this host (a resumed run does not
    wait), else when its lease lapses (``claim_ttl``). A
    ``reproducible`` backend's samples are stored without their text (``backend.restore``
    re-derives it on read).
    """

    def __init__(
        self,
        backend: Backend,
        bank: SampleBank | None,
        *,
        max_in_flight: int | None = None,
        claim_ttl: float = CLAIM_TTL,
    ) -> None:
        self.backend = backend
        self.bank = bank
        self.claim_ttl = claim_ttl
        #: This sampler's name in the bank's claims: host, process id, and a random part.
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex}"
        self._dead: set[str] = set()
        self._slots = _Slots(max_in_flight) if max_in_flight is not None else None
        self._io = BankIO(bank) if bank is not None else None

    async def draw(
        self,
        prompt: str,
        query: str,
        indices: Sequence[int],
        *,
        on_stored: Callable[[int], None] | None = None,
    ) -> tuple[list[Sample], int]:
        """Completions number ``indices`` of (prompt, query), in that order and re-costed under
        the backend's current cost settings, and how many of them this sampler drew fresh.

        ``on_stored(k)`` is told how many were already in the bank before anything is drawn.
        """
        backend = self.backend
        dist = backend.cache_key(prompt, query)
        io = self._io
        stored = await io.call(io.bank.get, dist, indices) if io is not None else {}
        if on_stored is not None:
            on_stored(len(stored))
        fresh = 0
        while missing := [i for i in indices if i not in stored]:
            # a slot first, then the claims: a sampler never holds claims while it queues
            async with self._slot(len(missing)), self._lease(dist, missing) as mine:
                if mine:
                    stored.update(await self._draw(prompt, query, dist, mine))
                    fresh += len(mine)
            if not mine and io is not None:  # all claimed by other runs: wait for them
                await io.call(self._free_dead_claims, io.bank, dist, missing)
                stored.update(await io.bank.wait(dist, missing, WAIT_POLL))
        out = [stored[i] for i in indices]
        if io is not None:
            out = [backend.restore(prompt, query, i, s) for i, s in zip(indices, out, strict=True)]
        return [backend.recost(s) for s in out], fresh

    def _free_dead_claims(self, bank: SampleBank, dist: str, indices: list[int]) -> None:
        """Release the claims of samplers in processes of this host that have died (a killed
        run resumed at once need not wait for its old leases to lapse); others lapse."""
        host = socket.gethostname()
        dead: dict[str, list[int]] = {}
        for i, owner in bank.holders(dist, indices).items():
            if owner in self._dead or _dead_here(owner, host):
                self._dead.add(owner)
                dead.setdefault(owner, []).append(i)
        for owner, idx in dead.items():
            bank.release(dist, idx, owner)

    async def _draw(self, prompt: str, query: str, dist: str, mine: list[int]) -> dict[int, Sample]:
        """Draw ``mine`` (claimed by the caller, if claims apply), storing each completion as it
        lands."""
        io, backend = self._io, self.backend
        strip = backend.reproducible

        async def keep(items: Sequence[tuple[int, Sample]]) -> None:
            if io is not None:
                banked = [(i, replace(s, text=None) if strip else s) for i, s in items]
                await io.put((dist, prompt, query, banked))

        fresh = await backend.sample_each(prompt, query, mine, keep)
        if len(fresh) != len(mine):
            raise RuntimeError(
                f"backend returned {len(fresh)} completions for {len(mine)} requested"
            )
        return dict(zip(mine, fresh, strict=True))

    @contextlib.asynccontextmanager
    async def _slot(self, n: int) -> AsyncIterator[None]:
        if self._slots is None:
            yield
            return
        units = await self._slots.acquire(n)
        try:
            yield
        finally:
            await self._slots.release(units)

    @contextlib.asynccontextmanager
    async def _lease(self, dist: str, wanted: list[int]) -> AsyncIterator[list[int]]:
        """Claim what of ``wanted`` no other run holds and hold it while drawing (renewed in the
        background), then release what was not stored: a failed or cancelled draw frees its
        indices at once, and so does a cancellation that lands while the claim is in flight."""
        io = self._io
        if io is None or self.backend.reproducible:
            yield list(wanted)
            return
        bank = io.bank
        job = asyncio.ensure_future(io.call(bank.claim, dist, wanted, self.owner, self.claim_ttl))
        try:
            mine = await asyncio.shield(job)
        except BaseException:  # cancelled while claiming: the claim may still have been taken
            with contextlib.suppress(Exception):
                taken = await job
                await asyncio.shield(io.call(bank.release, dist, taken, self.owner))
            raise
        if not mine:
            yield mine
            return

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.claim_ttl / 3)
                await io.call(bank.claim, dist, mine, self.owner, self.claim_ttl)

        renewer = asyncio.ensure_future(renew())
        try:
            yield mine
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            with contextlib.suppress(Exception):
                await asyncio.shield(io.call(bank.release, dist, mine, self.owner))
