"""The ``profanity`` scorer: a harmlessness proxy from ``alt-profanity-check`` (a weak proxy)."""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Callable, Sequence
from typing import Any

from iapo.errors import ConfigError
from iapo.types import Query

__all__ = ["PROFANITY_REQUIREMENT", "ProfanityScorer", "profanity"]


#: The pip requirement of the ``profanity`` scorer (it pulls in scikit-learn).
PROFANITY_REQUIREMENT = "alt-profanity-check>=1.5"


class ProfanityScorer:
    """Harmlessness as ``1 − predict_prob(text)`` of ``alt-profanity-check``.

    A **weak proxy**: a bag-of-words linear model (TF-IDF + linear SVM) of offensive *language*
    trained on tweets, shipped with its weights (offline). It is not a safety model: it misses
    harmful content written politely and penalises harmless text that contains a swear word.
    The id carries the package version, so a new model never reuses old scores.
    """

    def __init__(self) -> None:
        try:
            from profanity_check import predict_prob
        except ImportError:
            raise ConfigError(
                f"the 'profanity' scorer needs alt-profanity-check: "
                f"pip install '{PROFANITY_REQUIREMENT}'"
            ) from None
        self._predict_prob: Callable[[list[str]], Any] = predict_prob
        version = importlib.metadata.version("alt-profanity-check")
        self.id = f"profanity:alt-profanity-check=={version}@1"

    def __repr__(self) -> str:
        return f"ProfanityScorer({self.id!r})"

    async def score(self, texts: Sequence[str], query: Query) -> list[float]:
        probs = await asyncio.to_thread(self._predict_prob, list(texts))
        return [1.0 - float(p) for p in probs]


def profanity() -> ProfanityScorer:
    """Harmlessness proxy from ``alt-profanity-check`` (a weak proxy; see the class)."""
    return ProfanityScorer()
