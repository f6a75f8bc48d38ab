"""benchmarks/bench_variance.py: the variance-ratio CI and the random-query designs (b)–(d),
checked against brute force (a bootstrap) and exact variance decompositions."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from iapo.bench import BenchResult, build_environment, encode_pool

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


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPT.parent / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_script_writes_json_that_section_3_renders_with_n_max_rows(
    bv: ModuleType, tmp_path: Path
) -> None:
    """mcqa-gpt35 has N_max = 10: measured at n = 32 and at n = 10, whose rows lack N = 16."""
    out = tmp_path / "estimators.json"
    bv.main(
        ["--envs", "mcqa-gpt35", "--cells", "6", "--pulls", "30", "--random-pulls", "600",
         "--no-timing", "--out", str(out)]
    )  # fmt: skip
    data = json.loads(out.read_text())
    assert [t["n_per_pull"] for t in data["estimators"]] == [32, 10]
    assert [r["N"] for r in data["estimators"][1]["random_query"]["rows"]] == [2, 4, 8]
    text = _load_script("estimators_section").estimators(out)
    row = next(x for x in text.splitlines() if "(d)" not in x and "| 10 (= N_max) |" in x)
    assert row.rstrip(" |").split(" | ")[-1] == "—"  # N = 16 is not an arm at N_max = 10
    assert "1 vs 2" in text and "16 vs 32" in text


def _bench(acr: dict[str, dict[int, list[float]]]) -> BenchResult:
    """A stored benchmark with the given per-run ACRs (label → budget → runs)."""
    budgets = sorted(next(iter(acr.values())))
    runs = len(next(iter(next(iter(acr.values())).values())))
    data = {
        "env": {"name": "toy", "contexts": [{"name": "c"}]},
        "protocol": {"budgets": budgets, "runs": runs},
        "algorithms": [{"label": a, "title": a, "min_budget": 0} for a in acr],
        "runs": [
            {
                "run": i,
                "oracle_train": 1.0,
                "oracle_test": 1.0,
                "results": {
                    a: {str(b): {"acr": v[b][i], "found": "1", "cpu_s": 0.0} for b in budgets}
                    for a, v in acr.items()
                },
            }
            for i in range(runs)
        ],
    }
    res = BenchResult(data)
    res.resummarise()
    return res


def test_end_to_end_counts_significant_identical_and_not_significant_cells() -> None:
    rng = np.random.default_rng(0)
    u = {b: list(rng.random(30)) for b in (1000, 2000, 5000)}
    blocks = {
        1000: [x - 0.1 for x in u[1000]],  # worse in every run: significant, U-stat better
        2000: list(u[2000]),  # identical in every run
        5000: [x + e for x, e in zip(u[5000], rng.normal(0, 0.01, 30), strict=True)],  # noise
    }
    res = _bench({"psst": u, "psst_blocks": blocks})
    text = _load_script("estimators_section").end_to_end({"toy": res}, 0.05)
    p = res.summary["algorithms"]["psst_blocks"]["5000"]["vs_reference"]["p"]
    assert p >= 0.05  # the noise cell is not significant at this seed
    assert "| toy | 30 | 3 | 1 | 0 | 1 | 1 |" in text
    assert "1 of 3 (environment, budget) cells differ significantly" in text
