"""Aggregation strategies: majority vote and Best-of-N."""

from __future__ import annotations

from iapo.strategies._base import Method, Strategy
from iapo.strategies._bon import BestOfN
from iapo.strategies._majority import ACCURACY, MajorityVote, vote_credit

__all__ = [
    "ACCURACY",
    "BestOfN",
    "MajorityVote",
    "Method",
    "Strategy",
    "get_strategy",
    "vote_credit",
]


def get_strategy(name: str, objectives: tuple[str, ...] | None = None) -> Strategy:
    """The strategy called ``name`` ('majority_vote' or 'best_of_n')."""
    if name == MajorityVote.name:
        return MajorityVote()
    if name == BestOfN.name:
        if not objectives:
            raise ValueError("best_of_n needs at least one objective")
        return BestOfN(objectives)
    raise ValueError(f"unknown strategy {name!r}: use 'majority_vote' or 'best_of_n'")
