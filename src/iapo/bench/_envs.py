"""Benchmark environments: a pool, a strategy, a context set and N_max, with a name.

Named environments are the synthetic generators of the paper's kind and the real pools (the
built-in ones ship with iapo; the others are imported from the shared data, ``../shared`` next to
the repository, or ``--shared DIR``); any pool file works too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from iapo.bench._synthetic import (
    bernoulli_contexts,
    categorical_contexts,
    synth_bernoulli,
    synth_categorical,
)
from iapo.contexts import context_grid
from iapo.errors import ConfigError, InputError
from iapo.pools import (
    Cell,
    Pool,
    import_renze,
    import_renze_configs,
    import_tot_game24,
    load_pool,
    pool_from_cells,
)
from iapo.strategies import BestOfN, MajorityVote, Strategy
from iapo.types import Context

__all__ = [
    "ENVIRONMENTS",
    "Environment",
    "build_environment",
    "find_shared",
]

#: Cost weights of the three cost contexts (costs normalised to [0, 1] by the pool's maximum):
#: cost-blind, cost-aware, cost-averse; the values of ``examples/*.yaml``.
MV_COST_WEIGHTS = (0.0, 0.2, 1.0)
BON_COST_WEIGHTS = (0.0, 0.05, 0.2)
CCOT_MODELS = {"gpt-35-turbo": "gpt35", "gpt-4": "gpt4"}
RENZE_ALL = "renze-temperature-all"


@dataclass(frozen=True)
class Environment:
    """What a benchmark runs on. ``pool`` costs are already scaled (normalised)."""

    name: str
    pool: Pool
    strategy: Strategy
    contexts: tuple[Context, ...]
    n_max: int
    description: str
    cost_scale: float = 1.0
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "strategy": self.strategy.name,
            "objectives": list(self.strategy.objectives),
            "prompts": list(self.pool.prompts),
            "queries": len(self.pool.queries),
            "n_max": self.n_max,
            "contexts": [c.to_dict() for c in self.contexts],
            "cost_unit": self.pool.cost_unit,
            "cost_scale": self.cost_scale,
            "source": self.source,
            **self.meta,
        }


def find_shared(shared: str | Path | None = None) -> Path | None:
    """The shared data folder (holding ``data/pools``): ``shared``, ``$IAPO_SHARED``, then
    ``../shared`` from the working directory and from the repository this file lives in."""
    if shared is not None:
        if (Path(shared) / "data" / "pools").is_dir():
            return Path(shared)
        raise ConfigError(f"no data/pools folder under {shared}: point --shared at the shared data")
    candidates: list[Path] = []
    if os.environ.get("IAPO_SHARED"):
        candidates.append(Path(os.environ["IAPO_SHARED"]))
    candidates.append(Path.cwd().parent / "shared")
    candidates.append(Path(__file__).resolve().parents[4] / "shared")
    for c in candidates:
        if (c / "data" / "pools").is_dir():
            return c
    return None


def _need_shared(shared: str | Path | None, name: str, sub: str) -> Path:
    root = find_shared(shared)
    path = root / "data" / "pools" / sub if root is not None else None
    if path is None or not path.exists():
        raise ConfigError(
            f"environment {name!r} needs the shared data (data/pools/{sub}), not found here: "
            "pass --shared DIR (the folder holding data/pools) or set IAPO_SHARED"
        )
    return path


def _normalised(pool: Pool) -> tuple[Pool, float]:
    """Costs divided by the pool's largest per-sample cost (``cost.normalize: max``)."""
    top = pool.max_cost()
    scale = 1.0 / top if top > 0 else 1.0
    return pool.scale_costs(scale), scale


def _cost_contexts(strategy: Strategy, weights: Sequence[float]) -> tuple[Context, ...]:
    objs = strategy.objectives
    w = {o: [round(1.0 / len(objs), 12)] for o in objs}
    return tuple(context_grid(w, list(weights)))


def _from_pool(
    name: str,
    pool: Pool,
    description: str,
    source: str,
    *,
    n_max: int | None = None,
    strategy: str | None = None,
    cost_weights: Sequence[float] | None = None,
    cost_normalize: str = "max",
) -> Environment:
    arrays = pool.arrays  # no per-cell objects: a large pool read from a file has none
    has_gold = bool(np.all(arrays.gold >= 0))
    kind = strategy or ("majority_vote" if pool.objectives == ("accuracy",) else "best_of_n")
    if kind == "majority_vote":
        if not has_gold:
            raise ConfigError(f"{source}: majority voting needs a gold answer in every cell")
        strat: Strategy = MajorityVote()
        weights = MV_COST_WEIGHTS if cost_weights is None else cost_weights
    elif kind == "best_of_n":
        if pool.objectives == ("accuracy",):
            raise ConfigError(f"{source}: best_of_n needs scored samples; this pool has none")
        strat = BestOfN(pool.objectives)
        weights = BON_COST_WEIGHTS if cost_weights is None else cost_weights
    else:
        raise ConfigError(f"unknown strategy {kind!r}: use majority_vote or best_of_n")
    cells = np.arange(arrays.n_cells, dtype=np.int64)
    smallest = int(arrays.cell_sums(arrays.weight, cells).min()) if arrays.n_cells else 0
    nm = n_max if n_max is not None else max(1, min(32, smallest))
    scaled, scale = _normalised(pool) if cost_normalize == "max" else (pool, 1.0)
    return Environment(
        name,
        scaled,
        strat,
        _cost_contexts(strat, weights),
        nm,
        description,
        scale,
        source,
        {"recorded_samples_per_cell": smallest, "cost_normalize": cost_normalize},
    )


def _synth_bernoulli(seed: int, **_: Any) -> Environment:
    pool = synth_bernoulli(seed=seed)
    return Environment(
        "synth-bernoulli",
        pool,
        MajorityVote(),
        tuple(bernoulli_contexts()),
        32,
        f"Synth-Bernoulli (seed {seed}): majority vote, 32 prompts × 100 queries (easy/medium/"
        "hard tiers), N_max 32, 3 cost contexts; costs per sample in [0.1, 1]",
        source=f"iapo.bench.synth_bernoulli(seed={seed})",
    )


def _synth_categorical(seed: int, **_: Any) -> Environment:
    pool = synth_categorical(seed=seed)
    return Environment(
        "synth-categorical",
        pool,
        BestOfN(("helpful", "harmless")),
        tuple(categorical_contexts()),
        32,
        f"Synth-Categorical (seed {seed}): Best-of-N over (helpful, harmless), 32 prompts × 100 "
        "queries, N_max 32, 27 contexts (9 weight pairs × 3 cost levels)",
        source=f"iapo.bench.synth_categorical(seed={seed})",
    )


def _synth_large(n_prompts: int, n_max: int) -> Callable[..., Environment]:
    name = f"synth-{n_prompts}x{n_max}"

    def build(seed: int, **_: Any) -> Environment:
        pool = synth_bernoulli(n_prompts=n_prompts, seed=seed, plant_decoy=True)
        planted = pool.meta["planted"]
        return Environment(
            name,
            pool,
            MajorityVote(),
            tuple(bernoulli_contexts()),
            n_max,
            f"Synth-Bernoulli at the paper's scale (seed {seed}): majority vote, {n_prompts} "
            f"prompts × 100 queries, N_max {n_max}, 3 cost contexts; costs per sample in "
            f"[0.1, 1]; a planted deceiving prompt ({planted['decoy']} leads at N = 1, the "
            f"consistent {planted['champion']} wins at large N)",
            source=f"iapo.bench.synth_bernoulli(n_prompts={n_prompts}, seed={seed}, "
            "plant_decoy=True)",
            meta={"planted": planted},
        )

    return build


def _renze_all(seed: int, shared: str | Path | None = None, **kw: Any) -> Environment:
    d = _need_shared(shared, RENZE_ALL, "renze-mcqa")
    path = d / "temperature_pool.jsonl"
    pool = import_renze_configs(path, exam="comprehensive-100", study="temperature")
    kw.setdefault("n_max", 10)
    env = _from_pool(
        RENZE_ALL,
        pool,
        f"Renze & Guven temperature study, all {len(pool.prompts)} (model, prompt, temperature) "
        "configs on comprehensive-100 as one arm set (arm = (config, N)): 9 models × "
        "chain_of_thought × T 0.0-1.0, gpt-35-turbo × 4 more prompts × T 0.0-1.0, and "
        "gpt-35-turbo chain_of_thought at T 1.1-1.6; majority vote against gold, 10 recorded "
        "samples per cell, N_max 10; cost = output tokens per sample, not priced: the nine "
        "models' list prices changed during 2024 and differ by host (Azure, Vertex, vendor "
        "APIs), and no dated primary price list covering all nine could be checked, so no "
        "per-model price is applied; normalised to [0, 1] by the largest; 3 cost "
        f"contexts. Data: {pool.meta['source']}; {pool.meta['license']}",
        f"{path} (import_renze_configs, exam comprehensive-100)",
        **kw,
    )
    env.meta["license"] = pool.meta["license"]
    env.meta["cost"] = "output_tokens"
    return env


def _builtin(name: str, file: str, description: str) -> Callable[..., Environment]:
    def build(seed: int, shared: str | Path | None = None, **kw: Any) -> Environment:
        from iapo.setups import builtin_pool_path

        path = builtin_pool_path(file)
        pool = load_pool(path)
        return _from_pool(name, pool, description, f"builtin:{file}", **kw)

    return build


def _game24(seed: int, shared: str | Path | None = None, **kw: Any) -> Environment:
    d = _need_shared(shared, "tot-game24", "tot-logs")
    pool = import_tot_game24(d)
    return _from_pool(
        "tot-game24",
        pool,
        "ToT Game of 24 (puzzles 900-999): Best-of-N on correctness (0/1), selecting with the gold "
        "answer (a perfect verifier), arms = (model/prompt, "
        "N) over gpt-4/standard, gpt-4/cot, gpt-3.5-turbo/cot; 100 recorded samples per cell, "
        "N_max 32; cost = output tokens normalised to [0, 1]; 3 cost contexts",
        f"{d} (import_tot_game24)",
        **kw,
    )


def _ccot(exam: str) -> Callable[..., Environment]:
    def build(seed: int, shared: str | Path | None = None, **kw: Any) -> Environment:
        d = _need_shared(shared, f"ccot-{exam}", "renze-mcqa")
        path = d / "concise_cot_pool.jsonl"
        cells: list[Cell] = []
        common: set[str] | None = None
        parts = []
        for model, short in CCOT_MODELS.items():
            pool = import_renze(path, model=model, exam=f"{exam}-100", study="concise_cot")
            parts.append((short, pool))
            common = set(pool.queries) if common is None else common & set(pool.queries)
        for short, pool in parts:
            for p in pool.prompts:
                for q in pool.queries:
                    if common is not None and q in common:
                        c = pool.cell(p, q)
                        cells.append(Cell(f"{short}/{p}", q, c.gold, c.outcomes, c.weights))
        merged = pool_from_cells(cells, objectives=("accuracy",), cost_unit="output_tokens")
        return _from_pool(
            f"ccot-{exam}",
            merged,
            f"Renze & Guven concise-CoT study, exam {exam} (100 questions), temperature 1.0: "
            "majority vote, arms = (model/prompt, N) over {gpt-3.5, gpt-4} × {baseline, "
            "chain_of_thought, composite, concise}; 10 recorded samples per cell, N_max 10; "
            "cost = output tokens normalised to [0, 1]; 3 cost contexts",
            f"{path} (import_renze, study concise_cot)",
            **kw,
        )

    return build


#: Named environments → builder(seed, shared=..., n_max=..., ...).
ENVIRONMENTS: dict[str, Callable[..., Environment]] = {
    "synth-bernoulli": _synth_bernoulli,
    "synth-categorical": _synth_categorical,
    "synth-48x32": _synth_large(48, 32),
    "synth-200x64": _synth_large(200, 64),
    "mcqa-gpt35": _builtin(
        "mcqa-gpt35",
        "mcqa-gpt35-comprehensive",
        "Renze & Guven temperature study: gpt-3.5-turbo on comprehensive-100 at T = 0.7, "
        "majority vote over 5 prompts (baseline, domain_expert, self_recitation, "
        "chain_of_thought, composite); 10 recorded samples per cell, N_max 10; cost = output "
        "tokens normalised to [0, 1]; 3 cost contexts",
    ),
    "tot-writing": _builtin(
        "tot-writing",
        "tot-writing",
        "ToT creative writing, GPT-4 at T = 1.0: Best-of-N on the judge's coherence score, "
        "2 prompts (standard, cot); 10 recorded samples per cell, N_max 10; cost = output "
        "tokens normalised to [0, 1]; 3 cost contexts",
    ),
    "tot-game24": _game24,
    "ccot-aqua-rat": _ccot("aqua-rat"),
    "ccot-lsat-ar": _ccot("lsat-ar"),
    "ccot-sat-math": _ccot("sat-math"),
    "ccot-logiqa-en": _ccot("logiqa-en"),
    "ccot-medmcqa-dev": _ccot("medmcqa-dev"),
    RENZE_ALL: _renze_all,
}


def build_environment(
    env: str,
    *,
    seed: int = 0,
    shared: str | Path | None = None,
    n_max: int | None = None,
    strategy: str | None = None,
    cost_weights: Sequence[float] | None = None,
    cost_normalize: str | None = None,
) -> Environment:
    """The environment called ``env`` (see :data:`ENVIRONMENTS`) or built from a pool file.

    ``seed`` seeds the synthetic generators; ``n_max``, ``strategy`` and ``cost_weights``
    override the defaults for pools (N_max = the smallest recorded sample count, at most 32);
    ``cost_normalize`` "none" keeps a pool's recorded costs ("max", the default, divides them by
    the pool's largest).
    """
    kw: dict[str, Any] = {}
    if n_max is not None:
        kw["n_max"] = n_max
    if strategy is not None:
        kw["strategy"] = strategy
    if cost_weights is not None:
        kw["cost_weights"] = tuple(cost_weights)
    if cost_normalize is not None:
        kw["cost_normalize"] = cost_normalize
    if env in ENVIRONMENTS:
        builder = ENVIRONMENTS[env]
        if env.startswith("synth-"):
            e = builder(seed)
            if n_max is not None and n_max != e.n_max:
                e = Environment(
                    e.name,
                    e.pool,
                    e.strategy,
                    e.contexts,
                    n_max,
                    e.description,
                    source=e.source,
                    meta=e.meta,
                )
            return e
        return builder(seed, shared=shared, **kw)
    path = Path(env)
    if not path.is_file():
        raise ConfigError(
            f"unknown environment {env!r}: use one of {', '.join(ENVIRONMENTS)} or a pool file"
        )
    try:
        pool = load_pool(path)
    except InputError:
        raise
    return _from_pool(
        path.stem,
        pool,
        f"pool file {path.name}: {pool.meta.get('description', '')}",
        str(path),
        **kw,
    )
