"""In-memory pool: recorded completions per (prompt, query) cell, as categorical distributions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from iapo.types import Sample

__all__ = ["Cell", "Pool"]


@dataclass(frozen=True, eq=False)
class Cell:
    """The recorded outcomes of one (prompt, query).

    ``outcomes[i]`` occurs with weight ``weights[i]`` (a count). The full pool form gives one
    outcome per recorded sample with weight 1; the compact form gives one outcome per distinct
    answer with its count. Replay draws i.i.d. outcomes with probability ∝ weight.
    """

    prompt: str
    query: str
    gold: str | None
    outcomes: tuple[Sample, ...]
    weights: NDArray[np.float64]

    @property
    def probs(self) -> NDArray[np.float64]:
        return self.weights / self.weights.sum()

    @property
    def size(self) -> float:
        """Number of recorded samples (sum of weights)."""
        return float(self.weights.sum())

    def mean_cost(self) -> float:
        return float(np.dot(self.probs, [o.cost for o in self.outcomes]))


@dataclass(frozen=True, eq=False)
class Pool:
    """A complete grid of cells over ``prompts × queries``.

    ``objectives`` are the score names the samples carry (for majority voting the only objective
    is ``accuracy``, computed from answers and gold). ``meta`` keeps provenance: source, licence,
    description.
    """

    objectives: tuple[str, ...]
    prompts: tuple[str, ...]
    queries: tuple[str, ...]
    cells: Mapping[tuple[str, str], Cell]
    cost_unit: str = "unit"
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cells", MappingProxyType(dict(self.cells)))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    def cell(self, prompt: str, query: str) -> Cell:
        return self.cells[(prompt, query)]

    def gold(self, query: str) -> str | None:
        return self.cells[(self.prompts[0], query)].gold

    def subset(
        self, prompts: Iterable[str] | None = None, queries: Iterable[str] | None = None
    ) -> Pool:
        ps = tuple(prompts) if prompts is not None else self.prompts
        qs = tuple(queries) if queries is not None else self.queries
        return Pool(
            objectives=self.objectives,
            prompts=ps,
            queries=qs,
            cells={(p, q): self.cells[(p, q)] for p in ps for q in qs},
            cost_unit=self.cost_unit,
            meta=self.meta,
        )

    def scale_costs(self, factor: float) -> Pool:
        """A copy with every cost multiplied by ``factor`` (e.g. to normalise costs to [0, 1])."""
        cells = {
            key: Cell(
                c.prompt,
                c.query,
                c.gold,
                tuple(
                    Sample(o.answer, o.scores, o.cost * factor, o.text, o.usage) for o in c.outcomes
                ),
                c.weights,
            )
            for key, c in self.cells.items()
        }
        return Pool(self.objectives, self.prompts, self.queries, cells, self.cost_unit, self.meta)

    def max_cost(self) -> float:
        return max((o.cost for c in self.cells.values() for o in c.outcomes), default=0.0)
