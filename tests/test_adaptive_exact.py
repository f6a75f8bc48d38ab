"""Exact ground truth of adaptive arms on categorical cells, against brute-force enumeration of
every sequence of N_max draws (weighted by its probability), and against mv_exact."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from iapo.adaptive import (
    AdaptiveScheme,
    Beta,
    Decided,
    Dirichlet,
    Fixed,
    StopRule,
    Window,
    adaptive_exact,
    adaptive_exact_cells,
    run_sequence,
)
from iapo.estimators import mv_exact
from iapo.pools import Cell, full_cell, load_pool
from iapo.setups import builtin_pool_path
from iapo.strategies import MajorityVote, exact_cell_utilities
from iapo.types import Context, Sample

RULES: list[StopRule] = [
    Fixed(),
    Decided(),
    Beta(0.8),
    Beta(0.95),
    Dirichlet(0.7),
    Dirichlet(0.9),
    Window(1),
    Window(2),
    Window(3),
]

#: (class probabilities, gold column): abstention is the rest of the mass.
CELLS = [
    ([0.4, 0.3, 0.2], 0),  # abstention 0.1
    ([0.5, 0.5], 1),  # ties everywhere
    ([0.25, 0.25, 0.25, 0.25], 2),  # four answers, no abstention
    ([0.9, 0.05], 0),  # skewed
    ([0.3, 0.3], 0),  # 40 % abstention
    ([0.6, 0.4], -1),  # gold never answered: credit 0, samples still count
    ([0.0, 0.7, 0.3], 0),  # gold has probability 0
    ([1.0], 0),  # unanimous
    ([0.2], 0),  # mostly abstaining
]


def _brute(probs: list[float], gold: int, sc: AdaptiveScheme, tie: str) -> tuple[float, float]:
    p = [*probs, max(0.0, 1.0 - sum(probs))]
    labels: list[int | None] = [*range(len(probs)), None]
    credit = samples = 0.0
    for seq in itertools.product(range(len(p)), repeat=sc.n_max):
        w = float(np.prod([p[i] for i in seq]))
        if w == 0.0:
            continue
        c, n = run_sequence(sc, [labels[i] for i in seq], gold if gold >= 0 else None, tie)  # type: ignore[arg-type]
        credit += w * c
        samples += w * n
    return credit, samples


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
@pytest.mark.parametrize("n_max,batch", [(4, 1), (5, 2), (5, 3), (4, 4), (3, 5), (6, 4)])
def test_exact_matches_enumeration(rule: StopRule, n_max: int, batch: int) -> None:
    sc = AdaptiveScheme(rule, n_max, batch)
    cells = CELLS if n_max <= 5 else CELLS[:2]  # 6 draws of 4 classes: 4096 sequences each
    width = max(len(p) for p, _ in cells)
    probs = np.zeros((len(cells), width))
    for r, (p, _) in enumerate(cells):
        probs[r, : len(p)] = p
    gold = np.array([g for _, g in cells])
    for tie in ("fractional", "half"):
        ex = adaptive_exact(probs, gold, sc, tie)  # type: ignore[arg-type]
        for r, (p, g) in enumerate(cells):
            c, s = _brute(p, g, sc, tie)
            assert ex.credit[r] == pytest.approx(c, abs=1e-12)
            assert ex.samples[r] == pytest.approx(s, abs=1e-12)
            # one row alone gives the same numbers as in a batch of rows
            one = adaptive_exact(probs[r : r + 1], gold[r : r + 1], sc, tie)  # type: ignore[arg-type]
            assert one.credit[0] == pytest.approx(ex.credit[r], abs=1e-14)


def test_fixed_rule_is_mv_exact() -> None:
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(5), size=40)[:, :4]  # 4 answers + abstention
    probs[:5, 1:] = 0.0  # a few unanimous-or-abstain cells
    gold = rng.integers(-1, 4, size=40)
    for n_max in (1, 7, 12):
        ref = mv_exact(probs, gold, n_max)[:, -1]
        for batch in (1, 3):
            ex = adaptive_exact(probs, gold, AdaptiveScheme(Fixed(), n_max, batch))
            np.testing.assert_allclose(ex.credit, ref, atol=1e-12)
            np.testing.assert_allclose(ex.samples, n_max, atol=1e-12)


def test_decided_keeps_the_credit_and_saves_samples() -> None:
    rng = np.random.default_rng(7)
    probs = rng.dirichlet(np.ones(4) * 0.7, size=60)[:, :3]
    gold = rng.integers(0, 3, size=60)
    for n_max, batch in [(10, 1), (10, 3), (15, 2)]:
        fixed = mv_exact(probs, gold, n_max)[:, -1]
        for tie in ("fractional", "half"):
            ex = adaptive_exact(probs, gold, AdaptiveScheme(Decided(), n_max, batch), tie)  # type: ignore[arg-type]
            ref = mv_exact(probs, gold, n_max, tie)[:, -1]  # type: ignore[arg-type]
            np.testing.assert_allclose(ex.credit, ref, atol=1e-12)
        assert np.all(ex.samples <= n_max + 1e-9)
        del fixed
    skewed = adaptive_exact(np.array([[0.95, 0.05]]), np.array([0]), AdaptiveScheme(Decided(), 10))
    assert skewed.samples[0] < 7.0  # a lead of 6 after 6 votes: most queries stop there


def test_cells_and_wald_cost() -> None:
    """Pool cells: answers summed over outcomes; expected cost = E[samples] × mean cost, checked
    by enumeration with answer-dependent costs (Wald's identity)."""
    outcomes = [
        Sample("A", {}, 1.0),
        Sample("A", {}, 3.0),
        Sample("B", {}, 0.5),
        Sample(None, {}, 2.0),
    ]
    cell = full_cell("p", "q", "A", outcomes)
    compact = Cell(
        "p",
        "q",
        "B",
        (Sample("A", {}, 0.7), Sample("B", {}, 0.7), Sample(None, {}, 0.7)),
        np.array([2.0, 1.0, 1.0]),
    )
    for sc in [AdaptiveScheme(Beta(0.8), 4, 1), AdaptiveScheme(Window(2), 5, 2)]:
        ex = adaptive_exact_cells([cell, compact], sc)
        direct = adaptive_exact(np.array([[0.5, 0.25], [0.5, 0.25]]), np.array([0, 1]), sc)
        np.testing.assert_allclose(ex.credit, direct.credit, atol=1e-14)
        np.testing.assert_allclose(ex.samples, direct.samples, atol=1e-14)
        assert ex.cost[1] == pytest.approx(0.7 * ex.samples[1])
        cost = credit = 0.0
        for seq in itertools.product(range(4), repeat=sc.n_max):
            w = 0.25**sc.n_max
            answers = [outcomes[i].answer for i in seq]
            c, n = run_sequence(sc, answers, "A")
            credit += w * c
            cost += w * sum(outcomes[i].cost for i in seq[:n])
        assert ex.credit[0] == pytest.approx(credit, abs=1e-12)
        assert ex.cost[0] == pytest.approx(cost, abs=1e-12)


def test_larger_sizes_are_consistent() -> None:
    """N_max 32 and 64 on two-answer cells (the synthetic environments): fixed = mv_exact,
    decided keeps the credit; every rule stops by N_max."""
    s = np.linspace(0.05, 0.95, 19)
    probs = np.column_stack([s, 1.0 - s])
    gold = np.zeros(len(s), dtype=np.int64)
    for n_max in (32, 64):
        ref = mv_exact(probs, gold, n_max)[:, -1]
        dec = adaptive_exact(probs, gold, AdaptiveScheme(Decided(), n_max, 4))
        np.testing.assert_allclose(dec.credit, ref, atol=1e-10)
        for rule in (Beta(0.95), Dirichlet(0.95), Window(4)):
            ex = adaptive_exact(probs, gold, AdaptiveScheme(rule, n_max, 2))
            assert np.all(ex.samples <= n_max + 1e-9) and np.all(ex.samples >= 2 - 1e-9)
            assert np.all((ex.credit >= -1e-12) & (ex.credit <= 1 + 1e-12))


def test_state_guard() -> None:
    probs = np.full((1, 12), 1.0 / 12)
    with pytest.raises(ValueError, match="too large"):
        adaptive_exact(probs, np.array([0]), AdaptiveScheme(Decided(), 64, 1))
    with pytest.raises(ValueError, match="gold_index"):
        adaptive_exact(probs, np.array([12]), AdaptiveScheme(Decided(), 4, 1))


def test_real_pool_decided_is_the_fixed_vote() -> None:
    """The built-in Renze pool (5 prompts × 100 queries, 10 samples per cell): `decided` has the
    exact N_max accuracy of `exact_cell_utilities` on every cell, with fewer expected samples;
    `fixed` has exactly N_max samples and cost N_max × mean cost."""
    pool = load_pool(builtin_pool_path("mcqa-gpt35-comprehensive"))
    ctx = [Context("blind", {"accuracy": 1.0}, 0.0)]
    n_max = 10
    ref = exact_cell_utilities(pool, MajorityVote(), ctx, n_max)[:, :, 0, -1].ravel()
    cells = [pool.cell(p, q) for p in pool.prompts for q in pool.queries]
    dec = adaptive_exact_cells(cells, AdaptiveScheme(Decided(), n_max, 2))
    np.testing.assert_allclose(dec.credit, ref, atol=1e-12)
    assert np.all(dec.samples <= n_max + 1e-9) and dec.samples.mean() < 8.0
    fixed = adaptive_exact_cells(cells, AdaptiveScheme(Fixed(), n_max, 3))
    np.testing.assert_allclose(fixed.credit, ref, atol=1e-12)
    mean_cost = np.array([c.mean_cost() for c in cells])
    np.testing.assert_allclose(fixed.cost, n_max * mean_cost, rtol=1e-12)
