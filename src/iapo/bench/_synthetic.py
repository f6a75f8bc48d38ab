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

import math

import numpy as np
from numpy.typing import NDArray

from iapo.contexts import context_grid
from iapo.pools import Cell, Pool
from iapo.types import Context, Sample

__all__ = ["bernoulli_contexts", "categorical_contexts", "synth_bernoulli", "synth_categorical"]

#: Difficulty tiers: shift of a prompt's mean success probability on the tier's queries.
TIERS = {"easy": 0.15, "medium": 0.0, "hard": -0.15}
#: Planted decoy (``synth_bernoulli(plant_decoy=True)``): success probability DECOY_HIGH on some
#: queries and DECOY_LOW on the rest, as many high ones as put its N = 1 accuracy DECOY_MARGIN
#: above every other prompt's; majority voting takes it towards the share of high queries.
DECOY_HIGH = 0.97
DECOY_LOW = 0.3
DECOY_MARGIN = 0.03
#: Planted champion: consistent (this Beta concentration) at the best mean of any prompt.
CHAMPION_CONC = 40.0


def synth_bernoulli(
    n_prompts: int = 32,
    n_queries: int = 100,
    seed: int = 0,
    *,
    wrong_answers: int = 1,
    plant_decoy: bool = False,
) -> Pool:
    """Synth-Bernoulli: a majority-vote pool (32 prompts × 100 queries by default).

    ``plant_decoy`` guarantees a deceiving prompt however many prompts compete (with many
    prompts the N = 1 leader is otherwise often also the best at large N). Two prompts are
    replaced, their success probabilities drawn from a separate generator (seeded ``(seed, 1)``)
    so that every other cell is exactly the unplanted pool's: the *champion* (the consistent
    prompt with the highest mean) becomes consistent (:data:`CHAMPION_CONC`) at the highest mean
    of any prompt, and wins at large N; the *decoy* (the erratic prompt with the highest mean)
    gets :data:`DECOY_HIGH` on a random share of the queries and :data:`DECOY_LOW` on the rest,
    the share chosen so that its N = 1 accuracy leads every other prompt's by
    :data:`DECOY_MARGIN` (by construction, not by chance), while majority voting takes it
    towards that share, below the champion. The decoy costs what the champion costs. Both are
    named in ``meta["planted"]``."""
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
    succ = np.array(
        [
            [_beta(rng, mean[i], conc[i], str(tiers[j])) for j in range(n_queries)]
            for i in range(n_prompts)
        ]
    )
    planted: dict[str, str] = {}
    if plant_decoy and erratic.any() and (~erratic).any():
        at = _plant(succ, erratic, mean, cost, [str(t) for t in tiers], seed)
        planted = {role: prompts[i] for role, i in at.items()}
    succ = np.clip(succ, 1e-6, 1 - 1e-6)
    cells = {}
    for i, p in enumerate(prompts):
        for j, q in enumerate(queries):
            s_ij = float(succ[i, j])
            outcomes = [Sample("gold", {}, float(cost[i]))]
            weights = [s_ij]
            for w in range(wrong_answers):
                outcomes.append(Sample(f"wrong{w}", {}, float(cost[i])))
                weights.append((1 - s_ij) / wrong_answers)
            cells[(p, q)] = Cell(p, q, "gold", tuple(outcomes), np.array(weights))
    name = f"synth-bernoulli-{seed}"
    if planted:
        name = f"synth-bernoulli-{n_prompts}x{n_queries}-decoy-{seed}"
    return Pool(
        ("accuracy",),
        prompts,
        queries,
        cells,
        "normalised",
        {
            "name": name,
            "sha256": name,
            "description": "Synth-Bernoulli (majority vote): per-query success probabilities "
            "drawn per difficulty tier; half the prompts consistent, half erratic",
            "erratic": [p for p, e in zip(prompts, erratic, strict=True) if e],
            **({"planted": planted} if planted else {}),
        },
    )


def _plant(
    succ: NDArray[np.float64],
    erratic: NDArray[np.bool_],
    mean: NDArray[np.float64],
    cost: NDArray[np.float64],
    tiers: list[str],
    seed: int,
) -> dict[str, int]:
    """Replace the decoy's and the champion's rows of ``succ`` (and the decoy's cost) in place;
    their indices (see :func:`synth_bernoulli`)."""
    side = np.random.default_rng([seed, 1])
    decoy = int(np.flatnonzero(erratic)[np.argmax(mean[erratic])])
    champ = int(np.flatnonzero(~erratic)[np.argmax(mean[~erratic])])
    top = float(mean.max())
    succ[champ] = [_beta(side, top, CHAMPION_CONC, t) for t in tiers]
    others = np.delete(succ, decoy, axis=0).mean(axis=1)
    target = float(others.max()) + DECOY_MARGIN
    n_q = succ.shape[1]
    high = min(n_q, math.ceil((target - DECOY_LOW) / (DECOY_HIGH - DECOY_LOW) * n_q))
    succ[decoy] = DECOY_LOW
    succ[decoy, side.permutation(n_q)[:high]] = DECOY_HIGH
    cost[decoy] = cost[champ]
    return {"decoy": decoy, "champion": champ}


def _beta(rng: np.random.Generator, mean: float, conc: float, tier: str) -> float:
    """A success probability on a query of ``tier`` for a prompt of this mean and concentration."""
    m = float(np.clip(mean + TIERS[tier], 0.05, 0.95))
    return float(rng.beta(m * conc, (1 - m) * conc))


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
