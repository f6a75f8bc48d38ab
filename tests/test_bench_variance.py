"""benchmarks/bench_variance.py: the variance-ratio CI and the random-query designs (b)–(d),
checked against brute force (a bootstrap) and exact variance decompositions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from iapo.bench import build_environment, encode_pool

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_variance.py"


@pytest.fixture(scope="module")
def bv() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_variance", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_variance"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_ratio_ci_is_the_ratio_of_mean_group_variances_and_its_se_matches_a_bootstrap(
    bv: ModuleType,
) -> None:
    rng = np.random.default_rng(3)
    g, m = 5, 4000
    u = rng.normal(size=(g, m)) * np.arange(1, g + 1)[:, None]
    b = u + 0.6 * rng.normal(size=(g, m))  # paired: blocks = U-stat + extra noise
    r = bv.ratio_ci(u, b)
    want = np.var(b, axis=1, ddof=1).mean() / np.var(u, axis=1, ddof=1).mean()
    assert r["ratio"] == pytest.approx(want, rel=1e-12)
    assert r["var_ustat"] == pytest.approx(np.var(u, axis=1, ddof=1).mean(), rel=1e-12)
    # brute force: resample the pull indices (shared by all groups), recompute the ratio
    boot = []
    for _ in range(400):
        i = rng.integers(m, size=m)
        boot.append(np.var(b[:, i], axis=1, ddof=1).mean() / np.var(u[:, i], axis=1, ddof=1).mean())
    se_delta = (r["ci_high"] - r["ci_low"]) / (2 * bv.Z95)
    assert se_delta == pytest.approx(float(np.std(boot, ddof=1)), rel=0.15)
    assert r["ci_low"] < r["ratio"] < r["ci_high"]


def test_ratio_ci_of_a_constant_quantity_is_one_with_no_width(bv: ModuleType) -> None:
    z = np.zeros((2, 10))
    r = bv.ratio_ci(z, z)
    assert (r["ratio"], r["ci_low"], r["ci_high"]) == (1.0, 1.0, 1.0)


def test_random_query_variances_match_the_exact_decomposition_on_two_class_majority_vote(
    bv: ModuleType,
) -> None:
    """Two answer classes, N = 2: both estimators are the pull's mean correctness, so per pull
    Var = Var_q(Q_q) + E_q[Q_q(1 − Q_q)] / 32 with Q_q the cell's accuracy (prompt on a random
    query); for a prompt pair on the SAME query, Var_q(Q_pq − Q_p'q) + E_q[both binomial terms]
    / 32. A design that drew the two prompts' queries independently would miss the pairing."""
    env = build_environment("synth-bernoulli")
    ctx = next(c for c in env.contexts if c.cost_weight == 0.0)
    sim = encode_pool(env.pool, env.strategy, [ctx], bv.N_PULL)
    prompts = sim.prompts[:6]
    sim = encode_pool(env.pool, env.strategy, [ctx], bv.N_PULL, prompts=prompts)
    out = bv.random_query(sim, total_pulls=6 * 6000, max_pairs=100, seed=1)
    acc = sim.exact[:, :, 0, 0]  # (P, Q): accuracy at N = 1
    binom = acc * (1 - acc) / bv.N_PULL
    row = next(r for r in out["random_query"]["rows"] if r["N"] == 2)
    want = float((acc.var(axis=1) + binom.mean(axis=1)).mean())
    assert row["var_ustat"] == pytest.approx(want, rel=0.04)
    assert row["ratio"] == 1.0  # the same numbers, not only the same variance
    a, b = np.triu_indices(len(prompts), 1)
    row = next(r for r in out["prompt_difference"]["rows"] if r["N"] == 2)
    want = float(((acc[a] - acc[b]).var(axis=1) + (binom[a] + binom[b]).mean(axis=1)).mean())
    unpaired = float(
        (acc[a].var(axis=1) + acc[b].var(axis=1)).mean() + (binom[a] + binom[b]).mean()
    )
    assert abs(unpaired - want) > 0.1 * want  # the check can tell pairing apart
    assert row["var_ustat"] == pytest.approx(want, rel=0.04)
    assert out["prompt_difference"]["pairs"] == len(a)
    # Q(1) = Q(2) for two classes with half credit for a tie: the difference is constant
    row = next(r for r in out["n_difference"]["rows"] if (r["k"], r["k2"]) == (1, 2))
    assert (row["var_ustat"], row["ratio"]) == (0.0, 1.0)
