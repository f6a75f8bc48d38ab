"""The optimisation problem an algorithm solves: prompts × N ≤ n_max, contexts, a strategy."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from iapo.strategies import Method, Strategy
from iapo.types import Arm, Context

__all__ = ["Problem", "split_queries"]


@dataclass(frozen=True)
class Problem:
    """What to optimise. ``queries`` are the training queries the algorithm may pull."""

    prompts: tuple[str, ...]
    queries: tuple[str, ...]
    n_max: int
    contexts: tuple[Context, ...]
    strategy: Strategy
    method: Method = "ustat"

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

    @property
    def arms(self) -> list[Arm]:
        return [Arm(p, n) for p in self.prompts for n in range(1, self.n_max + 1)]

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
