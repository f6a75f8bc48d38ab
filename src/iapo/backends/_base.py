"""The backend interface: where completions come from."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from iapo.types import Sample

__all__ = ["KEY_SCHEMA", "Backend", "stable_key"]

#: Version of the cache-key layout. Bump it when what a key covers changes, so that old bank
#: entries are never mistaken for new ones.
KEY_SCHEMA = 1


def stable_key(payload: Any) -> str:
    """A short, stable hash of a JSON-serialisable payload (sorted keys, no whitespace)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class Backend(ABC):
    """A source of i.i.d. scored completions for (prompt id, query id).

    ``cache_key`` names the sampling distribution: everything that determines it (model, the full
    rendered messages, every sampling parameter, scorers, key schema) and nothing else. The sample
    bank stores completion ``i`` of a distribution under ``(cache_key, i)``, so a re-run or a
    resumed run never pays twice and distinct samples are never collapsed into one.
    """

    #: A short human-readable description for logs and results (never a secret).
    name: str = "backend"

    @abstractmethod
    def cache_key(self, prompt: str, query: str) -> str:
        """The distribution's key (see class doc)."""

    @abstractmethod
    async def sample(self, prompt: str, query: str, indices: Sequence[int]) -> list[Sample]:
        """Completions number ``indices`` of (prompt, query), in that order, scored.

        Raise :class:`iapo.errors.PermanentBackendError` for failures retrying cannot fix.
        """

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

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections, stop servers."""
