"""Aggregation strategies (majority vote, Best-of-N): utilities, their estimators, ground truth."""

from __future__ import annotations

from iapo.strategies._base import Method, ProfileCache, Strategy, net_utility
from iapo.strategies._bon import BestOfN
from iapo.strategies._majority import ACCURACY, MajorityVote, vote_credit
from iapo.strategies._truth import exact_cell_utilities

__all__ = [
    "ACCURACY",
    "BestOfN",
    "MajorityVote",
    "Method",
    "ProfileCache",
    "Strategy",
    "exact_cell_utilities",
    "get_strategy",
    "net_utility",
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
