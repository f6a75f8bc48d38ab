"""Aggregation strategies (majority vote, Best-of-N): utilities, their estimators, ground truth."""

from __future__ import annotations

from iapo.estimators import TIE_CREDITS, TieCredit, vote_credit
from iapo.strategies._base import Method, ProfileCache, Strategy, net_utility
from iapo.strategies._bon import BestOfN
from iapo.strategies._majority import ACCURACY, MajorityVote
from iapo.strategies._truth import (
    encode_outcomes,
    exact_adaptive_utilities,
    exact_cell_utilities,
)

__all__ = [
    "ACCURACY",
    "TIE_CREDITS",
    "BestOfN",
    "MajorityVote",
    "Method",
    "ProfileCache",
    "Strategy",
    "TieCredit",
    "encode_outcomes",
    "exact_adaptive_utilities",
    "exact_cell_utilities",
    "get_strategy",
    "net_utility",
    "vote_credit",
]


def get_strategy(
    name: str, objectives: tuple[str, ...] | None = None, tie_credit: TieCredit = "fractional"
) -> Strategy:
    """The strategy called ``name`` ('majority_vote' or 'best_of_n'); ``tie_credit`` is
    majority vote's tie rule (:data:`TIE_CREDITS`; Best-of-N accepts only the default)."""
    if name == MajorityVote.name:
        return MajorityVote(tie_credit=tie_credit)
    if tie_credit != "fractional":
        raise ValueError(f"tie_credit {tie_credit!r} applies to majority_vote only: drop it")
    if name == BestOfN.name:
        if not objectives:
            raise ValueError("best_of_n needs at least one objective")
        return BestOfN(objectives)
    raise ValueError(f"unknown strategy {name!r}: use 'majority_vote' or 'best_of_n'")
