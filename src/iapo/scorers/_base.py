"""The scorer protocol and running a pull's scorers together."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from iapo.aio import gather_or_cancel
from iapo.errors import BackendError
from iapo.types import Query

__all__ = ["Scorer", "score_texts"]


@runtime_checkable
class Scorer(Protocol):
    """Scores every completion of one pull: ``await scorer.score(texts, query)`` → one float each.

    ``id`` names the scoring in cache keys; change it (bump its ``@N`` suffix) whenever the
    scores would change.
    """

    @property
    def id(self) -> str: ...

    async def score(self, texts: Sequence[str], query: Query) -> list[float]: ...


async def _run_one(name: str, scorer: Scorer, texts: Sequence[str], query: Query) -> list[float]:
    where = f"scorer {name!r} ({scorer.id}) on query {query.id!r}"
    try:
        raw = await scorer.score(texts, query)
    except BackendError:
        raise  # a misconfigured or failing endpoint says so itself
    except Exception as exc:
        raise ValueError(f"{where} failed: {type(exc).__name__}: {exc}") from exc
    if len(raw) != len(texts):
        raise ValueError(f"{where} returned {len(raw)} scores for {len(texts)} texts")
    out = []
    for i, value in enumerate(raw):
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: score {i} is not a number: {value!r}") from None
        if not math.isfinite(x):
            raise ValueError(f"{where}: score {i} is not finite: {x}")
        out.append(x)
    return out


async def score_texts(
    scorers: Mapping[str, Scorer], texts: Sequence[str], query: Query
) -> dict[str, list[float]]:
    """Every scorer on all ``texts`` of one pull, concurrently: ``{name: [score per text]}``.

    Raises ``ValueError`` naming the scorer (an exception, a wrong count, a non-finite score) or
    the scorer's own :class:`~iapo.errors.BackendError`; the other scorers are then cancelled.
    """
    if not scorers or not texts:
        return {name: [] for name in scorers}
    names = list(scorers)
    results = await gather_or_cancel(_run_one(n, scorers[n], texts, query) for n in names)
    return dict(zip(names, results, strict=True))
