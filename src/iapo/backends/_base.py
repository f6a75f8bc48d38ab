"""The backend interface: where completions come from."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from iapo.errors import ConfigError
from iapo.types import Query, Sample

__all__ = ["DEFAULT_CONCURRENCY", "KEY_SCHEMA", "Backend", "OnSamples", "stable_key"]

#: Version of the cache-key layout. Bump it when what a key covers changes, so that old bank
#: entries are never mistaken for new ones.
KEY_SCHEMA = 1
#: Samples worth having in flight at once when a backend does not say otherwise.
DEFAULT_CONCURRENCY = 8

#: ``await on_samples([(index, sample), ...])``: told of completions as soon as they arrived.
OnSamples = Callable[[Sequence[tuple[int, Sample]]], Awaitable[None]]


def stable_key(payload: Any) -> str:
    """A short, stable hash of a JSON-serialisable payload (sorted keys, no whitespace)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class Backend(ABC):
    """A source of i.i.d. scored completions for (prompt id, query id).

    Contracts (checked for every built-in by :class:`iapo.testing.BackendSuite`):

    * ``cache_key(prompt, query)`` names the sampling distribution: everything that determines it
      (model, the full rendered messages, every sampling parameter, scorers, key schema) and
      nothing else. It is a pure function of the backend's settings and its arguments: the same
      arguments give the same key, in this process and in a backend built the same way in
      another. The sample bank stores completion ``i`` of a distribution under
      ``(cache_key, i)``, so a re-run or a resumed run never pays twice and distinct samples are
      never collapsed into one.
    * ``sample(prompt, query, indices)`` returns one sample per index, in order. Indices are
      i.i.d. draws; a backend that can reproduce a draw (replay, a seeded endpoint) returns the
      same sample for an index however the indices are batched.
    * ``sample_each(prompt, query, indices, on_samples)`` returns what ``sample`` returns and,
      before returning, awaits ``on_samples([(i, sample), ...])`` for every index exactly once,
      as soon as its completion has arrived (the sampler stores them then, so a kill loses
      none already paid for).
    * A ``reproducible`` backend draws sample ``i`` again at no cost and identically (a replayed
      pool): the bank stores it without its text and ``restore`` re-derives what was left out.
    * ``max_cost``, when not ``None``, bounds the cost of every sample ``sample`` returns for
      (prompt, query).
    * A backend is an async context manager: ``async with backend:`` closes it on exit.
      ``aclose()`` may be called any number of times (the second call does nothing).
    """

    #: A short human-readable description for logs and results (never a secret).
    name: str = "backend"
    #: Whether sample ``i`` can be drawn again for free, identically (see the class doc): the
    #: bank then keeps no text for it, and concurrent runs need not claim it.
    reproducible: bool = False

    @abstractmethod
    def cache_key(self, prompt: str, query: str) -> str:
        """The distribution's key (see the class doc)."""

    @abstractmethod
    async def sample(self, prompt: str, query: str, indices: Sequence[int]) -> list[Sample]:
        """Completions number ``indices`` of (prompt, query), in that order, scored.

        Raise :class:`iapo.errors.PermanentBackendError` for failures retrying cannot fix.
        """

    async def sample_each(
        self, prompt: str, query: str, indices: Sequence[int], on_samples: OnSamples
    ) -> list[Sample]:
        """:meth:`sample`, telling ``on_samples`` of the completions once they arrived.
        Default: :meth:`sample`, then all at once; a backend whose completions land one by one
        (fan-out) overrides it to report each as it lands."""
        out = await self.sample(prompt, query, indices)
        if len(out) == len(indices):
            await on_samples(list(zip(indices, out, strict=True)))
        return out

    def restore(self, prompt: str, query: str, index: int, sample: Sample) -> Sample:
        """Sample ``index`` of (prompt, query) as read from the bank, completed with what a
        ``reproducible`` backend left out when it was stored (its text). Default: unchanged."""
        return sample

    def max_cost(self, prompt: str, query: str) -> float | None:
        """An upper bound on one completion's cost (None: unbounded, so no cost cap can hold)."""
        return None

    def recost(self, sample: Sample) -> Sample:
        """``sample`` with its cost recomputed under the current cost settings (a stored sample
        keeps its usage, so a changed price table applies to it too). Default: unchanged."""
        return sample

    def gold(self, query: str) -> str | None:
        """The query's reference answer, if the backend knows it."""
        return None

    @property
    def anomalies(self) -> Mapping[str, int]:
        """What the backend's endpoint did wrong so far, by kind (e.g. usage above the request's
        worst case, more choices than asked: see :mod:`iapo.chat_client`); a study's account
        reports what a run saw. Default: nothing."""
        return {}

    @property
    def concurrency(self) -> int:
        """How many samples it is useful to have in flight at once (a live backend's request
        slots). Default: :data:`DEFAULT_CONCURRENCY`."""
        return DEFAULT_CONCURRENCY

    def describe(self) -> dict[str, Any]:
        """Facts about what serves the samples beyond :attr:`name` and the configuration (a
        local model's file hash, runtime, threads, …) for results and pool provenance:
        JSON-serialisable, never a secret. Default: nothing (``{}``)."""
        return {}

    def add_query(self, query: Query) -> None:
        """Make ``query`` (a question nobody recorded) answerable by ``sample`` under its id,
        replacing a query of the same id. A policy in production asks new questions this way.

        Default: raise :class:`~iapo.errors.ConfigError`, for backends that can only answer the
        questions they were built with (a recorded pool).
        """
        raise ConfigError(
            f"{self.name} cannot answer new questions: use a live backend "
            "(Policy.load(result, backend=...))",
            field="backend",
        )

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections, stop servers. Idempotent: a second call does nothing."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
