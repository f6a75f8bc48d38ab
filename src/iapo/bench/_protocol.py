"""The paper's protocol: algorithms × budgets × R paired runs on reshuffled 80/20 splits.

Run r draws a train/test split of the queries from (seed, r). Every algorithm and budget of run r
learns on the same training queries (paired runs) and is scored by the **exact** ACR of its
policy on the test queries, ``mean_c Q_test(c, π(c))``, from the ground-truth table of the test
split (computed once per run from per-cell exact utilities). The oracle-train ACR is the test ACR
of the policy that is optimal on the training table; the oracle-test ACR is the test table's
optimum. Runs are spread over a process pool; every random stream is derived from
(seed, run, algorithm), so results do not depend on the number of workers or their order.
"""

from __future__ import annotations

import copy
import math
import multiprocessing as mp
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from iapo import algorithms
from iapo.adaptive import ArmLayout
from iapo.algorithms import Algorithm, AlgorithmEntry
from iapo.bench._sim import EncodedPool
from iapo.errors import BudgetError, ConfigError
from iapo.problem import Problem, split_queries

__all__ = [
    "ADAPTIVE_SUFFIX",
    "DEFAULT_ALGORITHMS",
    "DEFAULT_BUDGETS",
    "default_reference",
    "execute_runs",
    "run_algorithm",
    "run_single",
    "seed_key",
    "split_for_run",
]

TEST_FRACTION = 0.2
DEFAULT_BUDGETS = (1000, 2000, 5000, 10_000, 20_000, 50_000)


#: What ``iapo bench`` runs when no algorithms are named (registry names, in table order).
DEFAULT_ALGORITHMS = (
    "psst_any",
    "psst",
    "psst_paired_blocks",
    "psst_paper",
    "psst_k1",
    "psst_k4",
    "psst_k8",
    "uniform",
    "sequential_halving",
    "ucb",
    "epsilon_greedy",
    "softmax",
    "triple_n1",
    "triple_nrandom",
)


def default_reference(labels: Sequence[str]) -> str:
    """The algorithm paired tests compare against when none is named: the default algorithm
    (``psst_any``) when benchmarked, else strict ``psst``."""
    return "psst_any" if "psst_any" in labels else "psst"


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _label_id(label: str) -> int:
    return zlib.crc32(label.encode())


def split_for_run(queries: tuple[str, ...], seed: int, run: int) -> tuple[tuple[str, ...], ...]:
    """(train, test) of run ``run``: an 80/20 split seeded by (seed, run)."""
    return split_queries(queries, TEST_FRACTION, _seed(seed, run))


def _drive(algo: Algorithm, sim: EncodedPool, rng: np.random.Generator) -> None:
    p = algo.problem
    while batch := algo.ask():
        algo.tell_estimates(sim.simulate_lazy(batch, p.method, rng, adaptive=p.adaptive))


def seed_key(entry: AlgorithmEntry) -> int:
    """The part of a run's seeds that depends on the algorithm: its group (or its name)."""
    return _label_id(entry.group or entry.name)


def run_algorithm(
    spec: AlgorithmEntry,
    problem: Problem,
    budgets: Sequence[int],
    sim: EncodedPool,
    seed: int,
) -> dict[int, tuple[dict[str, Any], float, Algorithm]]:
    """Run ``spec`` at each budget; return budget → (policy, CPU seconds, final algorithm).

    The algorithm's seed and the simulator's random stream depend on ``seed`` only, not on the
    budget. For algorithms with ``one_pull_per_step`` (UCB, ε-greedy) one trajectory at the
    largest budget serves the smaller ones exactly: a run with budget b makes the same choices
    as the long one while ``b - spent ≥ N_max`` (every N is affordable in both), so the long run
    is copied (algorithm and random streams) just before that point and the copy finishes with
    budget b. The result equals a fresh run with budget b; its CPU time is that of the shared
    prefix plus the copy's.
    """
    algo_seed, sim_seed = _seed(seed, 0), _seed(seed, 1)
    out: dict[int, tuple[dict[str, Any], float, Algorithm]] = {}
    if not budgets:
        return out
    order = sorted(set(budgets))
    name = spec.name.removesuffix(ADAPTIVE_SUFFIX) if spec.adaptive else spec.name
    if not spec.cls.one_pull_per_step:
        for b in order:
            t0 = time.process_time()
            algo = algorithms.create(name, problem, b, algo_seed)
            _drive(algo, sim, np.random.default_rng(sim_seed))
            out[b] = (algo.policy(), time.process_time() - t0, algo)
        return out
    t0 = time.process_time()
    first = algorithms.create(name, problem, order[-1], algo_seed)
    algo, rng = first, np.random.default_rng(sim_seed)
    pending = order[:-1]
    side = 0.0  # CPU time spent on copies, not part of the long run
    memo = {id(first.problem): first.problem}  # the problem (and pool) stay shared
    while True:
        while pending and pending[0] - algo.spent < problem.n_max:
            b = pending.pop(0)
            t1 = time.process_time()
            fork = copy.deepcopy(algo, dict(memo))
            fork_rng = copy.deepcopy(rng)
            fork.budget = b
            _drive(fork, sim, fork_rng)
            policy = fork.policy()
            t2 = time.process_time()
            out[b] = (policy, (t1 - t0 - side) + (t2 - t1), fork)
            side += t2 - t1
        batch = algo.ask()
        if not batch:
            break
        p = algo.problem
        algo.tell_estimates(sim.simulate_lazy(batch, p.method, rng, adaptive=p.adaptive))
    out[order[-1]] = (algo.policy(), time.process_time() - t0 - side, algo)
    return out


@dataclass
class _State:
    sim: EncodedPool
    specs: tuple[AlgorithmEntry, ...]
    budgets: dict[str, tuple[int, ...]]  # label → feasible budgets
    seed: int
    runs_for: dict[str, int] = field(default_factory=dict)  # label → runs (default: all)


_STATE: _State | None = None


def _init(state: _State) -> None:
    global _STATE
    _STATE = state


Finished = dict[int, tuple[dict[str, Any], float, Algorithm]]


def _policy_twin(
    spec: AlgorithmEntry, budgets: Sequence[int], done: dict[str, tuple[AlgorithmEntry, Finished]]
) -> Finished | None:
    """``spec``'s results from an exploration already run in this run, if one is exactly what
    ``spec`` would do: same class, estimator and seed group, parameters differing only in the
    class's ``policy_params`` (TRIPLE N=random after TRIPLE N=1), every budget available."""
    pp = spec.cls.policy_params
    if not spec.group or not pp:
        return None
    mine = spec.all_params
    for other, got in done.values():
        theirs = other.all_params
        if (
            other.cls is spec.cls
            and other.group == spec.group
            and other.estimator == spec.estimator
            and other.adaptive == spec.adaptive
            and {k: v for k, v in mine.items() if k not in pp}
            == {k: v for k, v in theirs.items() if k not in pp}
            and set(budgets) <= set(got)
        ):
            change = {k: v for k, v in mine.items() if k in pp}
            return {
                b: (got[b][2].with_policy(**change).policy(), got[b][1], got[b][2]) for b in budgets
            }
    return None


def run_single(run: int, state: _State | None = None) -> dict[str, Any]:
    """Run ``run`` of the protocol: one split, every algorithm at every feasible budget."""
    st = state if state is not None else _STATE
    if st is None:
        raise RuntimeError("worker not initialised")
    sim = st.sim
    train, test = split_for_run(sim.queries, st.seed, run)
    qi = sim.query_index
    q_train = sim.q_table([qi[q] for q in train])
    q_test = sim.q_table([qi[q] for q in test])
    n_ctx = len(sim.contexts)
    flat_test = q_test.reshape(n_ctx, -1)
    flat_train = q_train.reshape(n_ctx, -1)
    best_train = flat_train.max(axis=1)
    oracle_train_arm = flat_train.argmax(axis=1)
    problem = Problem(sim.prompts, train, sim.n_max, sim.contexts, sim.strategy)
    lay = ArmLayout(sim.n_max, sim.adaptive)
    samples_test = sim.samples_table([qi[q] for q in test]) if sim.adaptive else None
    results: dict[str, dict[str, dict[str, Any]]] = {}
    finished: dict[str, tuple[AlgorithmEntry, Finished]] = {}
    for spec in st.specs:
        if run >= st.runs_for.get(spec.name, run + 1):
            continue
        budgets = st.budgets.get(spec.name, ())
        got = _policy_twin(spec, budgets, finished)
        if got is None:
            try:
                seed = _seed(st.seed, run, seed_key(spec))
                got = run_algorithm(spec, _problem_for(spec, problem, sim), budgets, sim, seed)
            except BudgetError:  # min_budget said yes but the run said no
                got = {}
            finished[spec.name] = (spec, got)
        per: dict[str, dict[str, Any]] = {}
        for b, (policy, cpu, algo) in got.items():
            arms = [
                sim.prompt_index[policy[c.name].prompt] * lay.width + lay.column(policy[c.name])
                for c in sim.contexts
            ]
            vals = flat_test[np.arange(n_ctx), arms]
            on_train = flat_train[np.arange(n_ctx), arms] >= best_train - 1e-9
            per[str(b)] = {
                "acr": float(vals.mean()),
                "found": "".join("1" if f else "0" for f in on_train),
                "cpu_s": cpu,
                "spent": int(algo.spent),  # completions actually asked for (may pass b)
                "arms": arms,
            }
            if samples_test is not None:  # expected samples of each context's arm on test
                per[str(b)]["samples"] = [float(x) for x in samples_test.ravel()[arms]]
        results[spec.name] = per
    return {
        "run": run,
        "test": sorted(qi[q] for q in test),
        "oracle_train": float(flat_test[np.arange(n_ctx), oracle_train_arm].mean()),
        "oracle_test": float(flat_test.max(axis=1).mean()),
        "results": results,
    }


#: The label of an algorithm run with the adaptive arms (``iapo bench --adaptive``).
ADAPTIVE_SUFFIX = "+adaptive"


def _problem_for(spec: AlgorithmEntry, problem: Problem, sim: EncodedPool) -> Problem:
    """The problem ``spec`` runs on: with the simulator's adaptive arms for an adaptive twin."""
    return replace(problem, adaptive=sim.adaptive) if spec.adaptive else problem


def feasible_budgets(
    sim: EncodedPool, specs: Iterable[AlgorithmEntry], budgets: Sequence[int]
) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """Per algorithm: the budgets it can run with, and its minimum budget."""
    n_train = len(sim.queries) - math.floor(TEST_FRACTION * len(sim.queries))
    if n_train < 1:
        raise ConfigError("too few queries for an 80/20 split: the pool needs at least 2")
    problem = Problem(sim.prompts, sim.queries[:n_train], sim.n_max, sim.contexts, sim.strategy)
    ok: dict[str, tuple[int, ...]] = {}
    need: dict[str, int] = {}
    for s in specs:
        need[s.name] = s.min_budget(_problem_for(s, problem, sim))
        ok[s.name] = tuple(b for b in budgets if b >= need[s.name])
    return ok, need


ProgressFn = Callable[[int, int, float], None]


def execute_runs(
    sim: EncodedPool,
    specs: Sequence[AlgorithmEntry],
    budgets: dict[str, tuple[int, ...]],
    runs: int,
    seed: int,
    workers: int,
    progress: ProgressFn | None = None,
    runs_for: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """All runs, in run order (the same whatever ``workers`` is)."""
    state = _State(sim, tuple(specs), budgets, seed, dict(runs_for or {}))
    out: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    if workers <= 1:
        for r in range(runs):
            out.append(run_single(r, state))
            if progress:
                progress(r + 1, runs, time.perf_counter() - t0)
        return out
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods and sys.platform != "darwin" else "spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init, initargs=(state,)) as ex:
        futures = [ex.submit(run_single, r) for r in range(runs)]
        for done, _ in enumerate(as_completed(futures), start=1):
            if progress:
                progress(done, runs, time.perf_counter() - t0)
        out = [f.result() for f in futures]
    return out


def arm_values(q: NDArray[np.float64], arms: Sequence[int]) -> NDArray[np.float64]:
    """Q of the chosen flat arm per context, from a (C, P, n_max) table."""
    flat = q.reshape(q.shape[0], -1)
    return np.asarray(flat[np.arange(q.shape[0]), list(arms)], dtype=np.float64)
