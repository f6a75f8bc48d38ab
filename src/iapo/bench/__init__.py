"""``iapo bench``: the paper's protocol on a pool or a synthetic environment.

Algorithms × budgets × R paired runs; each run reshuffles an 80/20 train/test split of the
queries (seeded), every algorithm learns on the training queries through a fast replay simulator,
and its policy is scored by its **exact** ACR on the test queries. The result holds every run's
numbers (JSON), a Markdown table (ACR mean ± SEM, paired Wilcoxon p-values against PSST, the
oracle ceilings, optimal-arm fractions, CPU time) and a plot (ACR vs budget).

    from iapo.bench import run_benchmark
    res = run_benchmark("synth-bernoulli", quick=True)
    print(res.markdown())
"""

from __future__ import annotations

from iapo.bench._benchmark import run_benchmark
from iapo.bench._cli import register_cli
from iapo.bench._envs import ENVIRONMENTS, Environment, build_environment, find_shared
from iapo.bench._protocol import (
    DEFAULT_ALGORITHMS,
    DEFAULT_BUDGETS,
    execute_runs,
    feasible_budgets,
)
from iapo.bench._ray import execute_runs_ray
from iapo.bench._report import summarise
from iapo.bench._result import BenchResult
from iapo.bench._sim import EncodedPool, encode_pool
from iapo.bench._synthetic import (
    bernoulli_contexts,
    categorical_contexts,
    synth_bernoulli,
    synth_categorical,
)

__all__ = [
    "DEFAULT_ALGORITHMS",
    "DEFAULT_BUDGETS",
    "ENVIRONMENTS",
    "BenchResult",
    "EncodedPool",
    "Environment",
    "bernoulli_contexts",
    "build_environment",
    "categorical_contexts",
    "encode_pool",
    "execute_runs",
    "execute_runs_ray",
    "feasible_budgets",
    "find_shared",
    "register_cli",
    "run_benchmark",
    "summarise",
    "synth_bernoulli",
    "synth_categorical",
]
