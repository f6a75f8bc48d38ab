"""Exploration algorithms behind one ask/tell interface."""

from __future__ import annotations

from typing import Any

from iapo.algorithms._base import Algorithm, ArmStats, RoundTrace
from iapo.algorithms._baselines import UCB, EpsilonGreedy, SequentialHalving, Triple, Uniform
from iapo.algorithms._psst import PSST, PSSTTopK, halve
from iapo.problem import Problem

__all__ = [
    "ALGORITHMS",
    "PSST",
    "UCB",
    "Algorithm",
    "ArmStats",
    "EpsilonGreedy",
    "PSSTTopK",
    "RoundTrace",
    "SequentialHalving",
    "Triple",
    "Uniform",
    "create",
    "halve",
]

#: Name → (class, fixed parameters). Names are what configs and ``iapo bench`` accept.
ALGORITHMS: dict[str, tuple[type[Algorithm], dict[str, Any]]] = {
    "psst": (PSST, {}),
    "psst_topk": (PSSTTopK, {}),
    "uniform": (Uniform, {}),
    "sequential_halving": (SequentialHalving, {}),
    "triple": (Triple, {"n": "one"}),
    "triple_n1": (Triple, {"n": "one"}),
    "triple_nrandom": (Triple, {"n": "random"}),
    "ucb": (UCB, {}),
    "epsilon_greedy": (EpsilonGreedy, {}),
}


def create(name: str, problem: Problem, budget: int, seed: int = 0, **params: Any) -> Algorithm:
    """Instantiate algorithm ``name`` (see :data:`ALGORITHMS`) with extra ``params``."""
    try:
        cls, fixed = ALGORITHMS[name]
    except KeyError:
        raise ValueError(
            f"unknown algorithm {name!r}: use one of {', '.join(sorted(ALGORITHMS))}"
        ) from None
    return cls(problem, budget, seed, **{**fixed, **params})
