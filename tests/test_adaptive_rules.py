"""Stopping rules of adaptive majority voting: ids, parameters, exact posterior probabilities,
and the `decided` rule's promise (never changes the fixed-N_max vote) proved exhaustively."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

from iapo.adaptive import (
    AdaptiveScheme,
    Beta,
    Decided,
    Dirichlet,
    Fixed,
    VoteState,
    Window,
    credit_of,
    parse_rule,
    parse_scheme,
    run_sequence,
    run_sequences,
    vote_state,
)
from iapo.adaptive._rules import beta_prob, dirichlet_prob
from iapo.strategies import vote_credit

ALPHABET = ("g", "x", "y", None)


def test_ids_round_trip() -> None:
    for rule in [Fixed(), Decided(), Beta(0.95), Beta(0.8), Dirichlet(0.9), Window(3)]:
        assert parse_rule(rule.id) == rule
        for b, n in [(1, 10), (3, 10), (4, 64)]:
            sc = AdaptiveScheme(rule, n, b)
            assert parse_scheme(sc.id) == sc
    assert Beta(0.95).id == "beta:0.95" and Window(4).id == "window:4"
    assert parse_rule("beta") == Beta(0.95) and parse_rule("window") == Window(4)


@pytest.mark.parametrize(
    "text", ["beta:1.0", "beta:0.3", "dirichlet:x", "window:0", "window:2.5", "median", "decided:3"]
)
def test_bad_rules(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rule(text)


def test_bad_schemes() -> None:
    for text in ["decided/b0/n10", "decided/b2/n0", "decided/2/10", "decided/b2"]:
        with pytest.raises(ValueError):
            parse_scheme(text)
    assert AdaptiveScheme(Decided(), 10, 4).boundaries() == (4, 8, 10)
    assert AdaptiveScheme(Decided(), 3, 5).boundaries() == (3,)
    assert [AdaptiveScheme(Decided(), 10, 4).next_batch(k) for k in (0, 8, 10)] == [4, 2, 0]


def test_vote_state_and_run() -> None:
    s = vote_state(["a", "b", None, "b", "b"], 10)
    assert s == VoteState((3, 1), 1, 5, 10, 2)
    assert vote_state(["a", None], 10).run == 0
    assert vote_state([], 10) == VoteState((), 0, 0, 10, 0)


@pytest.mark.parametrize("top,second", [(0, 0), (1, 0), (3, 0), (4, 0), (5, 2), (7, 6), (12, 3)])
def test_beta_prob_is_the_beta_tail(top: int, second: int) -> None:
    assert beta_prob(top, second) == pytest.approx(
        stats.beta.sf(0.5, top + 1, second + 1), abs=1e-12
    )


@pytest.mark.parametrize(
    "counts", [(1, 0), (4, 0), (3, 1, 0), (5, 2, 2, 0), (2, 2, 0), (6, 3, 1, 1, 0), (9, 0)]
)
def test_dirichlet_prob_matches_quadrature(counts: tuple[int, ...]) -> None:
    a = [c + 1 for c in counts]

    def f(x: float) -> float:
        dens = math.exp((a[0] - 1) * math.log(x) - x - math.lgamma(a[0])) if x > 0 else 0.0
        return dens * float(np.prod([special.gammainc(ai, x) for ai in a[1:]]))

    val, _ = integrate.quad(f, 0, np.inf, epsabs=1e-13, epsrel=1e-12)
    assert dirichlet_prob(counts) == pytest.approx(val, abs=1e-9)


def test_dirichlet_with_one_answer_seen_is_beta() -> None:
    for v in range(8):
        state = VoteState((v,), 0, v, 20)
        assert Dirichlet(0.9).stop(state) == Beta(0.9).stop(state)
        assert dirichlet_prob((v, 0)) == pytest.approx(beta_prob(v, 0), abs=1e-15)
    # two leaders tied: at most 1/2, never stops
    assert dirichlet_prob((3, 3, 0)) < 0.5
    assert not Dirichlet(0.5).stop(VoteState((3, 3), 0, 6, 20))


def test_window_rule() -> None:
    sc = AdaptiveScheme(Window(3), 9, 3)  # ESC: window = batch
    assert run_sequence(sc, list("aaabbbccc"), "a") == (1.0, 3)
    assert run_sequence(sc, list("abaaaabbb"), "a") == (1.0, 6)
    # the vote is over every sample drawn, not the window: b wins 3 to 2
    assert run_sequence(sc, ["a", "a", None, *"bbbaaa"], "a") == (0.0, 6)
    sc2 = AdaptiveScheme(Window(3), 9, 2)  # the window may span batches
    assert run_sequence(sc2, list("babbaaaab"), "b") == (0.0, 8)  # samples 5-8 span two batches


def test_credit_of_matches_vote_credit() -> None:
    for n in range(0, 6):
        for seq in itertools.product(ALPHABET, repeat=n):
            for gold in ("g", "x", "z", None):
                for rule in ("fractional", "half"):
                    assert credit_of(seq, gold, rule) == vote_credit(seq, gold, rule)  # type: ignore[arg-type]


def _plurality(seq: tuple[str | None, ...]) -> frozenset[str]:
    counts: dict[str, int] = {}
    for a in seq:
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
    top = max(counts.values(), default=0)
    return frozenset(a for a, c in counts.items() if c == top)


@pytest.mark.parametrize("n_max", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("batch", [1, 2, 3, 4])
def test_decided_never_changes_the_vote_exhaustively(n_max: int, batch: int) -> None:
    """Over every sequence of N_max answers (3 answers + abstention): the stopped vote's
    plurality set (hence its credit for every gold, and its answer) is the full vote's."""
    sc = AdaptiveScheme(Decided(), n_max, batch)
    for seq in itertools.product(ALPHABET, repeat=n_max):
        full = _plurality(seq)
        _, drawn = run_sequence(sc, list(seq), "g")
        assert _plurality(seq[:drawn]) == full
        for gold in ("g", "x", "y", "z"):
            assert credit_of(seq[:drawn], gold) == credit_of(seq, gold)
            assert credit_of(seq[:drawn], gold, "half") == credit_of(seq, gold, "half")


@pytest.mark.parametrize("n_max", [2, 3, 4, 5])
def test_decided_stops_as_soon_as_the_vote_is_determined(n_max: int) -> None:
    """The converse: where `decided` continues, some continuation changes the plurality set (a
    new answer "z" included), so no rule that waits less keeps the promise."""
    alphabet = (*ALPHABET, "z")
    for n in range(1, n_max):
        for prefix in itertools.product(ALPHABET, repeat=n):
            stop = Decided().stop(vote_state(prefix, n_max))
            finals = {
                _plurality(prefix + rest) for rest in itertools.product(alphabet, repeat=n_max - n)
            }
            assert stop == (len(finals) == 1)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c", "d", None]), min_size=1, max_size=40),
    st.integers(1, 7),
)
def test_decided_property(seq: list[str | None], batch: int) -> None:
    sc = AdaptiveScheme(Decided(), len(seq), batch)
    _, drawn = run_sequence(sc, seq, "a")
    assert drawn <= len(seq)
    assert _plurality(tuple(seq[:drawn])) == _plurality(tuple(seq))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(-1, 3), min_size=8, max_size=8), min_size=1, max_size=12),
    st.sampled_from(
        [Decided(), Beta(0.8), Dirichlet(0.7), Window(2), Window(3), Fixed(), Beta(0.95)]
    ),
    st.integers(1, 4),
    st.integers(1, 8),
    st.sampled_from(["fractional", "half"]),
)
def test_run_sequences_is_run_sequence(
    rows: list[list[int]], rule: object, batch: int, n_max: int, tie: str
) -> None:
    labels = np.array(rows, dtype=np.int64)
    gold = np.array([i % 5 - 1 for i in range(len(rows))], dtype=np.int64)
    costs = np.arange(labels.size, dtype=float).reshape(labels.shape) / 7.0
    sc = AdaptiveScheme(rule, n_max, batch)  # type: ignore[arg-type]
    credit, drawn, spent = run_sequences(sc, labels, gold, costs, tie)  # type: ignore[arg-type]
    for r, row in enumerate(rows):
        seq = [a if a >= 0 else None for a in row]
        g = int(gold[r]) if gold[r] >= 0 else None
        c, n = run_sequence(sc, seq, g, tie)  # type: ignore[arg-type]
        assert credit[r] == c and drawn[r] == n
        assert spent[r] == pytest.approx(costs[r, :n].sum())


def test_beta_needs_four_unanimous_votes_at_095() -> None:
    # P(Beta(v + 1, 1) > 1/2) = 1 - 2^-(v+1): 0.9375 at v = 3, 0.96875 at v = 4
    assert float(Fraction(15, 16)) == beta_prob(3, 0)
    sc = AdaptiveScheme(Beta(0.95), 10, 1)
    assert run_sequence(sc, ["a"] * 10, "a") == (1.0, 4)
    assert run_sequence(AdaptiveScheme(Decided(), 10, 1), ["a"] * 10, "a") == (1.0, 6)
