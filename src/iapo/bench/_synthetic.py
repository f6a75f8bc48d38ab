"""Seeded synthetic environments of the paper's kind, as pools with exact cell distributions.

* :func:`synth_bernoulli` (majority vote): each (prompt, query) cell answers correctly with
  probability s, else one of ``wrong_answers`` wrong answers. Queries fall into difficulty tiers
  (easy, medium, hard); per prompt and tier, s is drawn from a Beta whose mean and concentration
  depend on the prompt. Half of the prompts are *consistent* (concentrated: s is similar on every
  query of a tier), the other half *erratic* (diffuse: s near 1 on some queries, near 0 on
  others) with a higher mean. Erratic prompts lead at N = 1; majority voting amplifies every
  s > 1/2 towards 1 and every s < 1/2 towards 0, so consistent prompts overtake them at larger N:
  the erratic prompts are "deceiving".
* :func:`synth_categorical` (Best-of-N): each cell is a categorical over a few outcome vectors of
  two objectives (helpful, harmless) in [0, 1]. Prompts trade helpfulness against harmlessness
  (different contexts prefer different prompts); *safe* prompts have a high mean and a small
  spread, *diverse* prompts a lower mean and a wide spread: safe prompts lead at N = 1, diverse
  ones win once the best of several samples is kept.

Costs are per completion, in [0, 1], fixed per prompt (verbose prompts cost more). The cost unit
is already normalised: benchmarks use the costs as they are.
"""

from __future__ import annotations

import numpy as np

from iapo.contexts import context_grid
from iapo.pools import Cell, Pool
from iapo.types import Context, Sample

__all__ = ["bernoulli_contexts", "categorical_contexts", "synth_bernoulli", "synth_categorical"]

#: Difficulty tiers: shift of a prompt's mean success probability on the tier's queries.
TIERS = {"easy": 0.15, "medium": 0.0, "hard": -0.15}


def synth_bernoulli(
    n_prompts: int = 32, n_queries: int = 100, seed: int = 0, *, wrong_answers: int = 1
) -> Pool:
    """Synth-Bernoulli: a majority-vote pool (32 prompts × 100 queries by default)."""
    rng = np.random.default_rng(seed)
    prompts = tuple(f"p{i:02d}" for i in range(n_prompts))
    queries = tuple(f"q{j:03d}" for j in range(n_queries))
    tiers = rng.choice(list(TIERS), size=n_queries)
    erratic = np.zeros(n_prompts, dtype=bool)
    erratic[rng.permutation(n_prompts)[: n_prompts // 2]] = True
    mean = rng.uniform(0.45, 0.65, size=n_prompts) + np.where(erratic, 0.06, 0.0)
    conc = np.where(
        erratic,
        rng.uniform(0.6, 1.5, size=n_prompts),  # diffuse: bimodal-ish success probabilities
        rng.uniform(8.0, 30.0, size=n_prompts),  # concentrated: consistent
    )
    cost = rng.uniform(0.1, 1.0, size=n_prompts)
    cells = {}
    for i, p in enumerate(prompts):
        tier_mean = {t: float(np.clip(mean[i] + shift, 0.05, 0.95)) for t, shift in TIERS.items()}
        for j, q in enumerate(queries):
            m = tier_mean[str(tiers[j])]
            succ = float(rng.beta(m * conc[i], (1 - m) * conc[i]))
            succ = min(max(succ, 1e-6), 1 - 1e-6)
            outcomes = [Sample("gold", {}, float(cost[i]))]
            weights = [succ]
            for w in range(wrong_answers):
                outcomes.append(Sample(f"wrong{w}", {}, float(cost[i])))
                weights.append((1 - succ) / wrong_answers)
            cells[(p, q)] = Cell(p, q, "gold", tuple(outcomes), np.array(weights))
    return Pool(
        ("accuracy",),
        prompts,
        queries,
        cells,
        "normalised",
        {
            "name": f"synth-bernoulli-{seed}",
            "sha256": f"synth-bernoulli-{seed}",
            "description": "Synth-Bernoulli (majority vote): per-query success probabilities "
            "drawn per difficulty tier; half the prompts consistent, half erratic",
            "erratic": [p for p, e in zip(prompts, erratic, strict=True) if e],
        },
    )


def synth_categorical(
    n_prompts: int = 32, n_queries: int = 100, seed: int = 0, *, outcomes: int = 4
) -> Pool:
    """Synth-Categorical: a Best-of-N pool over (helpful, harmless) (32 × 100 by default)."""
    rng = np.random.default_rng(seed)
    prompts = tuple(f"p{i:02d}" for i in range(n_prompts))
    queries = tuple(f"q{j:03d}" for j in range(n_queries))
    diverse = np.zeros(n_prompts, dtype=bool)
    diverse[rng.permutation(n_prompts)[: n_prompts // 2]] = True
    # helpful vs harmless trade-off: prompts lie near the line h + s = 1.1, safe ones higher
    helpful = rng.uniform(0.3, 0.8, size=n_prompts)
    harmless = 1.1 - helpful + rng.normal(0.0, 0.05, size=n_prompts)
    centre = np.stack([helpful, harmless], axis=1) - np.where(diverse, 0.12, 0.0)[:, None]
    spread = np.where(
        diverse, rng.uniform(0.18, 0.3, size=n_prompts), rng.uniform(0.02, 0.06, size=n_prompts)
    )
    difficulty = rng.normal(0.0, 0.08, size=(n_queries, 1))
    cost = rng.uniform(0.1, 1.0, size=n_prompts)
    cells = {}
    for i, p in enumerate(prompts):
        for j, q in enumerate(queries):
            vec = np.clip(
                centre[i] + difficulty[j] + rng.normal(0, spread[i], size=(outcomes, 2)), 0, 1
            )
            probs = rng.dirichlet(np.full(outcomes, 2.0))
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
        {
            "name": f"synth-categorical-{seed}",
            "sha256": f"synth-categorical-{seed}",
            "description": "Synth-Categorical (Best-of-N): per cell a categorical over "
            f"{outcomes} (helpful, harmless) vectors; half the prompts safe, half diverse",
            "diverse": [p for p, d in zip(prompts, diverse, strict=True) if d],
        },
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
