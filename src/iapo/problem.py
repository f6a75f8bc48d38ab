"""The optimisation problem an algorithm solves: prompts × N ≤ n_max, contexts, a strategy."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from iapo.adaptive import ArmLayout
from iapo.strategies import Method, Strategy
from iapo.types import Arm, Context

__all__ = ["Problem", "split_queries"]


@dataclass(frozen=True)
class Problem:
    """What to optimise. ``queries`` are the training queries the algorithm may pull.

    ``adaptive``: adaptive majority-vote arms (``"<rule>/b<batch>"``, issue #15) next to the
    fixed ones, for every prompt and N_max' = 2..n_max; :attr:`layout` says where they sit."""

    prompts: tuple[str, ...]
    queries: tuple[str, ...]
    n_max: int
    contexts: tuple[Context, ...]
    strategy: Strategy
    method: Method = "ustat"
    adaptive: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ValueError("at least one prompt is needed")
        if not self.queries:
            raise ValueError("at least one training query is needed")
        if self.n_max < 1:
            raise ValueError("n_max must be at least 1")
        if not self.contexts:
            raise ValueError("at least one context is needed")
        if len(set(self.prompts)) != len(self.prompts):
            raise ValueError("prompt ids must be unique")
        if self.adaptive and (self.strategy.name != "majority_vote" or self.method != "ustat"):
            raise ValueError("adaptive arms need majority_vote and the ustat estimator")

    @cached_property
    def layout(self) -> ArmLayout:
        return ArmLayout(self.n_max, tuple(self.adaptive))

    @property
    def arms(self) -> list[Arm]:
        lay = self.layout
        cols = [int(c) for c in np.flatnonzero(lay.valid)]
        return [lay.arm(p, c) for p in self.prompts for c in cols]

    def with_n_max(self, n_max: int) -> Problem:
        return replace(self, n_max=n_max)


def split_queries(
    queries: tuple[str, ...], test_fraction: float, seed: int
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A seeded random split into (train, test); test gets ⌊fraction·|Q|⌋ queries."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(queries))
    n_test = math.floor(test_fraction * len(queries))
    test = tuple(queries[i] for i in sorted(perm[:n_test]))
    train = tuple(queries[i] for i in sorted(perm[n_test:]))
    return train, test
