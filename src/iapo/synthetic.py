"""Seeded synthetic environments of the paper's kind, as pools with exact cell distributions.

* :func:`synth_bernoulli` (majority vote): each (prompt, query) cell answers correctly with
  probability p, else one wrong answer. Per prompt, p is drawn per difficulty tier from a Beta whose
  mean and concentration depend on the prompt: concentrated prompts are consistent, diffuse ones
  are right on some queries and wrong on others — the source of "deceiving" prompts.
* :func:`synth_categorical` (Best-of-N): each cell is a categorical over a few outcome vectors of
  two objectives (helpful, harmless) in [0, 1].

Costs are per completion, in [0, 1], fixed per prompt (verbose prompts cost more).
"""

from __future__ import annotations

import numpy as np

from iapo.contexts import context_grid
from iapo.pools import Cell, Pool
from iapo.types import Context, Sample

__all__ = ["bernoulli_contexts", "categorical_contexts", "synth_bernoulli", "synth_categorical"]

TIERS = {"easy": 0.15, "medium": 0.0, "hard": -0.15}


def synth_bernoulli(
    n_prompts: int = 32, n_queries: int = 100, seed: int = 0, *, wrong_answers: int = 1
) -> Pool:
    rng = np.random.default_rng(seed)
    prompts = tuple(f"p{i:02d}" for i in range(n_prompts))
    queries = tuple(f"q{j:03d}" for j in range(n_queries))
    tiers = rng.choice(list(TIERS), size=n_queries)
    mean = rng.uniform(0.35, 0.75, size=n_prompts)
    conc = np.exp(rng.uniform(np.log(0.5), np.log(20.0), size=n_prompts))
    cost = rng.uniform(0.1, 1.0, size=n_prompts)
    cells = {}
    for i, p in enumerate(prompts):
        for j, q in enumerate(queries):
            m = float(np.clip(mean[i] + TIERS[str(tiers[j])], 0.02, 0.98))
            succ = float(rng.beta(m * conc[i], (1 - m) * conc[i]))
            outcomes = [Sample("gold", {}, float(cost[i]))]
            weights = [succ]
            for w in range(wrong_answers):
                outcomes.append(Sample(f"wrong{w}", {}, float(cost[i])))
                weights.append((1 - succ) / wrong_answers)
            cells[(p, q)] = Cell(p, q, "gold", tuple(outcomes), np.array(weights) + 1e-12)
    return Pool(
        ("accuracy",),
        prompts,
        queries,
        cells,
        "normalised",
        {"name": f"synth-bernoulli-{seed}", "sha256": f"synth-bernoulli-{seed}"},
    )


def synth_categorical(
    n_prompts: int = 32, n_queries: int = 100, seed: int = 0, *, outcomes: int = 4
) -> Pool:
    rng = np.random.default_rng(seed)
    prompts = tuple(f"p{i:02d}" for i in range(n_prompts))
    queries = tuple(f"q{j:03d}" for j in range(n_queries))
    centre = rng.uniform(0.2, 0.8, size=(n_prompts, 2))
    spread = rng.uniform(0.02, 0.3, size=n_prompts)
    cost = rng.uniform(0.1, 1.0, size=n_prompts)
    cells = {}
    for i, p in enumerate(prompts):
        for q in queries:
            vec = np.clip(centre[i] + rng.normal(0, spread[i], size=(outcomes, 2)), 0, 1)
            probs = rng.dirichlet(np.ones(outcomes))
            outs = tuple(
                Sample(None, {"helpful": float(v[0]), "harmless": float(v[1])}, float(cost[i]))
                for v in vec
            )
            cells[(p, q)] = Cell(p, q, None, outs, probs + 1e-12)
    return Pool(
        ("helpful", "harmless"),
        prompts,
        queries,
        cells,
        "normalised",
        {"name": f"synth-categorical-{seed}", "sha256": f"synth-categorical-{seed}"},
    )


def bernoulli_contexts() -> list[Context]:
    """The paper's 3 cost levels for majority voting."""
    return context_grid({"accuracy": [1.0]}, [0.0, 0.01, 0.05])


def categorical_contexts() -> list[Context]:
    """9 helpful/harmless weight pairs × 3 cost levels = 27 contexts."""
    return context_grid(
        {"helpful": [round(0.1 * i, 1) for i in range(1, 10)]},
        [0.0, 0.01, 0.05],
        complement="harmless",
    )
