"""Building the context set: an explicit list, or a grid over objective weights and cost weights."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from iapo.fmt import weight
from iapo.types import Context

__all__ = ["context_grid", "context_name"]


def context_name(weights: Mapping[str, float], cost_weight: float) -> str:
    """A readable name such as ``helpful=0.3,harmless=0.7,cost=0.2``."""
    parts = [f"{k}={weight(v)}" for k, v in weights.items()]
    parts.append(f"cost={weight(cost_weight)}")
    return ",".join(parts)


def context_grid(
    weights: Mapping[str, Sequence[float]],
    cost_weights: Sequence[float],
    complement: str | None = None,
) -> list[Context]:
    """The product of each objective's weight list and the cost weights.

    With ``complement``, that objective gets ``1 − Σ`` of the others' weights (e.g. helpful
    w ∈ {0.1,…,0.9} and harmless 1 − w); combinations where it would be negative are skipped.
    """
    names = list(weights)
    out: list[Context] = []
    for combo in itertools.product(*(weights[n] for n in names)):
        w = {n: float(v) for n, v in zip(names, combo, strict=True)}
        if complement is not None:
            rest = round(1.0 - sum(w.values()), 12)
            if rest < 0:
                continue
            w[complement] = rest
        for cw in cost_weights:
            out.append(Context(context_name(w, float(cw)), w, float(cw)))
    return out
