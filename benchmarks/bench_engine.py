"""Engine speed: one PSST run at T = 50k on a 48-prompt × N_max 32 × 27-context environment.

Three implementations of the same algorithm (PSST, Algorithm 1, U-statistic estimates, shared
pulls across contexts and scales, stockpiling) on the same Best-of-N environment
(``synth_categorical(n_prompts=48)``, 27 helpful/harmless/cost contexts, 80 training queries),
timed in the same process:

* ``iapo + simulator``: iapo's PSST fed by the vectorised replay simulator of ``iapo bench``
  (``tell_estimates``); the simulator's own share is reported separately: the rest is the engine.
* ``iapo tell()``: iapo's PSST fed :class:`~iapo.types.PullResult` objects (what ``iapo run``
  does with a real backend): the strategy builds the estimates from the samples.
* ``plain Python``: a straightforward per-arm implementation (dicts of running sums, a Python
  loop per pull, context and N computing the same U-statistic).

Run: ``.venv/bin/python benchmarks/bench_engine.py --out docs/bench/engine.json``
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import platform
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from iapo import __version__, algorithms
from iapo.bench import categorical_contexts, encode_pool, synth_categorical
from iapo.problem import Problem
from iapo.strategies import BestOfN
from iapo.types import PullResult

BUDGET = 50_000
N_MAX = 32
PROMPTS = 48


def plain_psst(
    cum: list[list[list[float]]],
    select: list[list[list[list[float]]]],
    cost: list[list[list[float]]],
    cost_weight: list[float],
    train: list[int],
    n_prompts: int,
    n_max: int,
    budget: int,
    seed: int,
) -> dict[int, tuple[int, int]]:
    """PSST written per arm in plain Python. Returns context → (prompt, N)."""
    rnd = random.Random(seed)
    n_ctx = len(cost_weight)
    weights = {
        n: [[math.comb(i, k - 1) / math.comb(n, k) for k in range(1, n + 1)] for i in range(n)]
        for n in range(1, n_max + 1)
    }  # weights[n][i][k-1]: P(the (i+1)-th smallest of n is the max of a random k-subset)
    total: dict[tuple[int, int, int], float] = {}
    count: dict[tuple[int, int, int], int] = {}
    active = {
        c: [(p, n) for p in range(n_prompts) for n in range(1, n_max + 1)] for c in range(n_ctx)
    }
    rounds = max(1, math.ceil(math.log2(n_prompts * n_max)))
    for _ in range(rounds):
        live: dict[int, int] = {}
        for arms in active.values():
            for p, n in arms:
                live[p] = max(live.get(p, 0), n)
        pulls = int((budget / rounds) // sum(live.values()))
        queries: list[int] = []
        while len(queries) < pulls:
            queries += rnd.sample(train, min(len(train), pulls - len(queries)))
        for p, n in live.items():
            w = weights[n]
            for q in queries:
                cp, sp, cs = cum[p][q], select[p][q], cost[p][q]
                draws = [bisect.bisect_right(cp, rnd.random()) for _ in range(n)]
                mean_cost = sum(cs[i] for i in draws) / n
                for c in range(n_ctx):
                    scores = sorted(sp[i][c] for i in draws)
                    for k in range(1, n + 1):
                        val = sum(w[i][k - 1] * scores[i] for i in range(k - 1, n))
                        key = (c, p, k)
                        total[key] = total.get(key, 0.0) + val - cost_weight[c] * k * mean_cost
                        count[key] = count.get(key, 0) + 1
        for c, arms in active.items():

            def rank(arm: tuple[int, int], c: int = c) -> tuple[float, int, int]:
                key = (c, arm[0], arm[1])
                return (-total[key] / count[key], arm[1], arm[0])

            arms.sort(key=rank)
            del arms[math.ceil(len(arms) / 2) :]
    return {c: arms[0] for c, arms in active.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    pool = synth_categorical(n_prompts=PROMPTS, seed=0)
    contexts = tuple(categorical_contexts())
    strategy = BestOfN(("helpful", "harmless"))
    sim = encode_pool(pool, strategy, contexts, N_MAX)
    train = pool.queries[:80]
    problem = Problem(pool.prompts, train, N_MAX, contexts, strategy)

    # 1. iapo + the vectorised simulator
    best, sim_share, policy_fast = math.inf, 0.0, {}
    for rep in range(args.repeat):
        spent_sim = 0.0
        t0 = time.perf_counter()
        algo = algorithms.create("psst", problem, BUDGET, rep)
        rng = np.random.default_rng(rep)
        while batch := algo.ask():
            t1 = time.perf_counter()
            est = sim.simulate(batch, "ustat", rng, narrow=True)
            spent_sim += time.perf_counter() - t1
            algo.tell_estimates(est)
        policy_fast = algo.policy()
        wall = time.perf_counter() - t0
        if wall < best:
            best, sim_share = wall, spent_sim
    completions = algo.spent

    # 2. iapo through tell() with PullResult objects
    t0 = time.perf_counter()
    algo = algorithms.create("psst", problem, BUDGET, 0)
    rng = np.random.default_rng(0)
    probs = {k: c.probs for k, c in pool.cells.items()}
    sample_time = 0.0
    while batch := algo.ask():
        t1 = time.perf_counter()
        results = []
        for r in batch:
            cell = pool.cell(r.prompt, r.query)
            idx = rng.choice(len(cell.outcomes), size=r.n, p=probs[(r.prompt, r.query)])
            results.append(PullResult(r, tuple(cell.outcomes[i] for i in idx), None))
        sample_time += time.perf_counter() - t1
        algo.tell(results)
    tell_wall = time.perf_counter() - t0

    # 3. plain per-arm Python
    n_p, n_q = len(pool.prompts), len(pool.queries)
    cum = [[[float(x) for x in sim.cum[p, q] if x <= 1.0] for q in range(n_q)] for p in range(n_p)]
    select = [[sim.codes[p, q].tolist() for q in range(n_q)] for p in range(n_p)]  # (V, C) scores
    cost = [[sim.cost[p, q].tolist() for q in range(n_q)] for p in range(n_p)]
    t0 = time.perf_counter()
    plain = plain_psst(
        cum,
        select,
        cost,
        [c.cost_weight for c in contexts],
        list(range(80)),
        n_p,
        N_MAX,
        BUDGET,
        0,
    )
    plain_wall = time.perf_counter() - t0

    # the policies' exact ACR on all queries (both implementations should be comparable)
    q = sim.q_table(range(n_q))
    acr_fast = float(
        np.mean(
            [
                q[ci, sim.prompt_index[a.prompt], a.n - 1]
                for ci, a in enumerate(policy_fast[c.name] for c in contexts)
            ]
        )
    )
    acr_plain = float(np.mean([q[c, p, n - 1] for c, (p, n) in plain.items()]))
    engine = best - sim_share
    result: dict[str, Any] = {
        "environment": f"synth_categorical(n_prompts={PROMPTS}, seed=0), 27 contexts, "
        f"N_max {N_MAX}, 80 training queries",
        "budget": BUDGET,
        "completions": completions,
        "arms": PROMPTS * N_MAX,
        "contexts": len(contexts),
        "iapo_simulator_s": best,
        "iapo_simulator_sim_share_s": sim_share,
        "iapo_engine_s": engine,
        "iapo_engine_ms_per_completion": engine / completions * 1e3,
        "iapo_tell_s": tell_wall,
        "iapo_tell_sampling_s": sample_time,
        "iapo_tell_ms_per_completion": (tell_wall - sample_time) / completions * 1e3,
        "plain_python_s": plain_wall,
        "ratio_plain_over_iapo_simulator": plain_wall / best,
        "ratio_plain_over_iapo_tell": plain_wall / tell_wall,
        "acr_all_queries_iapo": acr_fast,
        "acr_all_queries_plain": acr_plain,
        "oracle_acr_all_queries": float(q.reshape(len(contexts), -1).max(axis=1).mean()),
        "repeat": args.repeat,
        "versions": {"iapo": __version__, "python": platform.python_version()},
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
