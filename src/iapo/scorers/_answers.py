"""Scorers on the extracted answer: ``exact_match`` (a verifier against gold) and ``agreement``
(self-consistency within a pull, a weak proxy)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from iapo.answers import Extractor, get_extractor, normalize_number, normalize_text
from iapo.types import Query

__all__ = ["AgreementScorer", "ExactMatchScorer", "agreement", "exact_match"]


def _norm_answer(answer: str | None) -> str | None:
    """Numbers by :func:`normalize_number` (``"1,000"`` == ``"1000.0"``), else casefolded text."""
    if answer is None:
        return None
    num = normalize_number(answer)
    return num if num is not None else normalize_text(answer)


class ExactMatchScorer:
    """1.0 if the extracted answer equals the query's gold after normalisation, else 0.0.

    Numbers compare by value spelling (``"1,000"`` == ``"1000.0"``), anything else casefolded
    with whitespace collapsed. An abstention (nothing extracted) scores 0.0. A query without gold
    raises ``ValueError``: this is a verifier, and there is nothing to verify against.
    """

    def __init__(self, extract: Extractor) -> None:
        self.extract = extract
        self.id = f"exact_match({extract.id})@1"

    def __repr__(self) -> str:
        return f"ExactMatchScorer({self.extract.id!r})"

    async def score(self, texts: Sequence[str], query: Query) -> list[float]:
        gold = _norm_answer(query.gold)
        if gold is None:
            raise ValueError(f"query {query.id!r} has no gold answer to match against")
        return [1.0 if _norm_answer(self.extract(t)) == gold else 0.0 for t in texts]


def exact_match(extract: Extractor | str | Mapping[str, Any]) -> ExactMatchScorer:
    """A verifier: does the answer ``extract`` reads match the query's gold? (see the class)."""
    return ExactMatchScorer(get_extractor(extract))


class AgreementScorer:
    """For each completion, the fraction of the *other* completions of the same pull whose
    extracted answer equals its own (normalised as in :class:`ExactMatchScorer`).

    0.0 for an abstention and for a pull of one completion. A **weak proxy**: self-consistency,
    not correctness. Its scores depend on the pull they were drawn in, so they are not i.i.d.
    across pulls of different N (see the module doc on the U-statistic).
    """

    def __init__(self, extract: Extractor) -> None:
        self.extract = extract
        self.id = f"agreement({extract.id})@1"

    def __repr__(self) -> str:
        return f"AgreementScorer({self.extract.id!r})"

    async def score(self, texts: Sequence[str], query: Query) -> list[float]:
        answers = [_norm_answer(self.extract(t)) for t in texts]
        others = len(answers) - 1
        out = []
        for a in answers:
            if a is None or others == 0:
                out.append(0.0)
            else:
                out.append((sum(1 for b in answers if b == a) - 1) / others)
        return out


def agreement(extract: Extractor | str | Mapping[str, Any]) -> AgreementScorer:
    """Self-consistency within a pull; a weak proxy (see :class:`AgreementScorer`)."""
    return AgreementScorer(get_extractor(extract))
