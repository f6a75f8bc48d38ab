"""The sections of a run configuration that are plain settings: contexts, algorithm, split, cost,
price and prompts (each a strict pydantic model: unknown keys refused, frozen)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from iapo.adaptive import adaptive_ids
from iapo.contexts import context_grid
from iapo.types import Context

__all__ = [
    "MAX_BUDGET",
    "MAX_CAP",
    "MAX_PRICE",
    "MAX_SEED",
    "MAX_WEIGHT",
    "AlgorithmConfig",
    "ContextSpec",
    "ContextsConfig",
    "CostConfig",
    "ExecutionConfig",
    "FiniteFloat",
    "GridSpec",
    "PriceConfig",
    "PromptConfig",
    "Seed",
    "SplitConfig",
    "StrictModel",
    "Weight",
]


class StrictModel(BaseModel):
    """The base of every config model: unknown keys are refused, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]

#: The largest budget a run may have, in completions. Ten million completions is four orders of
#: magnitude above the studies iapo is built for (hundreds to thousands) and beyond what a study
#: pays for at any current price; above it the run's bookkeeping (one record per pull, held in
#: memory by ``estimate`` and the run) would grow past a gigabyte, and near 10^18 past SQLite's
#: integers. ``iapo bench`` simulates without configs and is not bound by it.
MAX_BUDGET = 10**7
#: Seeds are non-negative and fit a signed 64-bit integer (SQLite, numpy).
MAX_SEED = 2**63 - 1
#: The largest objective weight, cost weight and cost scale: with scores and costs bounded too
#: (``iapo.pools``), no utility, sum or square the engine forms can overflow to infinity.
MAX_WEIGHT = 1e6
#: The largest price (dollars per million tokens) and spend cap.
MAX_PRICE = 1e6
MAX_CAP = 1e15

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
#: An objective's weight in a context: finite, ≥ 0 and ≤ MAX_WEIGHT (a context trades the
#: objectives off; to prefer less of something, score its opposite).
Weight = Annotated[float, Field(ge=0, le=MAX_WEIGHT, allow_inf_nan=False)]


class ContextSpec(StrictModel):
    name: str | None = Field(None, min_length=1)
    weights: dict[str, Weight] = Field(default_factory=dict)
    cost_weight: Weight = 0.0


class GridSpec(StrictModel):
    weights: dict[str, Annotated[list[Weight], Field(min_length=1)]] = Field(default_factory=dict)
    complement: str | None = None
    cost_weight: list[Weight] = Field(default_factory=lambda: [0.0], min_length=1)


class ContextsConfig(StrictModel):
    """Either ``list`` (explicit contexts) or ``grid``."""

    items: list[ContextSpec] | None = Field(None, alias="list")
    grid: GridSpec | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ContextsConfig:
        if (self.items is None) == (self.grid is None):
            raise ValueError("give exactly one of 'list' or 'grid'")
        if self.items is not None and not self.items:
            raise ValueError("the context list is empty: give at least one context")
        return self

    def build(self, default_objective: str | None) -> list[Context]:
        if self.grid is not None:
            weights = dict(self.grid.weights)
            if not weights and self.grid.complement is None and default_objective:
                weights = {default_objective: [1.0]}
            return context_grid(weights, self.grid.cost_weight, self.grid.complement)
        from iapo.contexts import context_name

        out = []
        assert self.items is not None
        for spec in self.items:
            w = dict(spec.weights) or ({default_objective: 1.0} if default_objective else {})
            out.append(Context(spec.name or context_name(w, spec.cost_weight), w, spec.cost_weight))
        return out


class AlgorithmConfig(StrictModel):
    name: str = "psst_any"
    estimator: Literal["ustat", "blocks"] = "ustat"
    params: dict[str, Any] = Field(default_factory=dict)


class AdaptiveConfig(StrictModel):
    """Adaptive majority-vote arms (issue #15): for every prompt and N_max' = 2..n_max, one arm
    per rule that draws ``batch`` samples at a time until the rule stops (at most N_max')."""

    rules: list[str] = Field(min_length=1)
    batch: int = Field(1, ge=1, le=256)

    @model_validator(mode="after")
    def _rules(self) -> AdaptiveConfig:
        try:
            adaptive_ids(self.rules, self.batch)
        except ValueError as exc:
            raise ValueError(
                f"rules: {exc} (rules: decided, beta:T, dirichlet:T, window:W)"
            ) from None
        return self

    def ids(self) -> tuple[str, ...]:
        """The arm ids ``"<rule>/b<batch>"``."""
        return adaptive_ids(self.rules, self.batch)


class SplitConfig(StrictModel):
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    seed: Seed = 0


class CostConfig(StrictModel):
    """How a sample's cost enters utilities: ``cost · scale``; ``normalize: max`` divides by the
    pool's largest per-sample cost so costs lie in [0, 1]."""

    normalize: Literal["none", "max"] = "max"
    scale: FiniteFloat = Field(1.0, gt=0, le=MAX_WEIGHT)
    #: Never spend more than this (in the backend's cost unit: tokens, or dollars with a price).
    cap: FiniteFloat | None = Field(None, gt=0, le=MAX_CAP)


class ExecutionConfig(StrictModel):
    """Where completions are drawn: ``local`` (in the run's process, the default) or
    ``distributed`` (each pull's missing samples are published as tasks in the bank, which
    ``iapo worker --storage URL CONFIG`` processes draw from their own endpoints; the run waits
    for them). ``max_attempts``: failed attempts before a task, and the run, fail; ``poll``:
    seconds between the run's looks at its tasks. (A task's lease is the worker's ``--ttl``.)"""

    mode: Literal["local", "distributed"] = "local"
    max_attempts: int = Field(3, ge=1, le=100)
    poll: FiniteFloat = Field(0.2, gt=0, le=60)


class PriceConfig(StrictModel):
    """Dollars per million tokens; with a price, a sample's cost is in dollars."""

    prompt: FiniteFloat = Field(0.0, ge=0, le=MAX_PRICE)
    completion: FiniteFloat = Field(0.0, ge=0, le=MAX_PRICE)


class PromptConfig(StrictModel):
    id: str = Field(min_length=1)
    system: str | None = None
    template: str = "{question}"
