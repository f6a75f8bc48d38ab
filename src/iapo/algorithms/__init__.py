"""Exploration algorithms behind one ask/tell interface, and the one registry of their names.

``create(name, problem, budget, seed, **params)`` builds a registered algorithm (configs and
``iapo bench`` accept the same names); ``register_algorithm`` adds one; ``registry()`` lists them.
A new algorithm subclasses :class:`Algorithm` and should pass
:class:`iapo.testing.AlgorithmSuite`.
"""

from __future__ import annotations

from iapo.algorithms._base import Algorithm, ArmStats, RoundTrace
from iapo.algorithms._baselines import (
    UCB,
    EpsilonGreedy,
    SequentialHalving,
    Softmax,
    Triple,
    Uniform,
)
from iapo.algorithms._budget import PSSTAny
from iapo.algorithms._estimates import ArrayEstimates, Estimates, PullEstimates
from iapo.algorithms._paper import PSSTPaper
from iapo.algorithms._psst import PSST, PSSTTopK, halve
from iapo.algorithms._registry import AlgorithmEntry, create, get, register_algorithm, registry

__all__ = [
    "PSST",
    "UCB",
    "Algorithm",
    "AlgorithmEntry",
    "ArmStats",
    "ArrayEstimates",
    "EpsilonGreedy",
    "Estimates",
    "PSSTAny",
    "PSSTPaper",
    "PSSTTopK",
    "PullEstimates",
    "RoundTrace",
    "SequentialHalving",
    "Softmax",
    "Triple",
    "Uniform",
    "create",
    "get",
    "halve",
    "register_algorithm",
    "registry",
]
