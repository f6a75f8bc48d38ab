"""Stopping rules of adaptive majority voting (docs/adaptive.md).

A rule sees what a live sampler sees after a batch: the vote counts of the answers drawn so far
(no labels, no gold), the number of abstentions, the number of samples drawn, N_max, and the
length of the trailing run of equal answers (for ``window``). It answers stop / continue. Every
rule is a frozen dataclass with validated parameters and a stable string :attr:`id`
(``decided``, ``beta:0.95``, ``dirichlet:0.95``, ``window:4``, ``fixed``) that
:func:`parse_rule` reads back.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import ClassVar, Protocol

__all__ = [
    "Beta",
    "Decided",
    "Dirichlet",
    "Fixed",
    "StopRule",
    "VoteState",
    "Window",
    "parse_rule",
    "vote_state",
]


@dataclass(frozen=True)
class VoteState:
    """What a sampler knows after ``n`` samples.

    ``counts``: the vote counts of the distinct non-abstaining answers seen, descending;
    ``abstain``: abstentions; ``n = sum(counts) + abstain``; ``run``: the length of the trailing
    run of equal non-abstaining answers (0 if the last sample abstained), possibly capped at the
    rule's :attr:`StopRule.memory` (a rule never looks further back than that).
    """

    counts: tuple[int, ...]
    abstain: int
    n: int
    n_max: int
    run: int = 0


def vote_state(answers: Sequence[Hashable | None], n_max: int) -> VoteState:
    """The :class:`VoteState` of a sequence of answers (None abstains), uncapped run."""
    counts = Counter(a for a in answers if a is not None)
    run = 0
    if answers and answers[-1] is not None:
        last = answers[-1]
        for a in reversed(answers):
            if a != last:
                break
            run += 1
    return VoteState(
        tuple(sorted(counts.values(), reverse=True)),
        len(answers) - sum(counts.values()),
        len(answers),
        n_max,
        run,
    )


class StopRule(Protocol):
    """A stopping rule: ``stop(state)`` after a batch; ``memory`` = how far back it looks in the
    sequence (0: counts only; w: the trailing run up to w); ``id``: its stable name."""

    @property
    def id(self) -> str: ...

    @property
    def memory(self) -> int: ...

    def stop(self, state: VoteState) -> bool: ...


def _check_threshold(name: str, threshold: float) -> None:
    if not (isinstance(threshold, (int, float)) and 0.5 <= float(threshold) < 1.0):
        raise ValueError(f"{name}: threshold must lie in [0.5, 1), got {threshold!r}")


@dataclass(frozen=True)
class Fixed:
    """Never stop early: the fixed-N_max vote (the plain arm (p, N_max), for comparison)."""

    memory: ClassVar[int] = 0

    @property
    def id(self) -> str:
        return "fixed"

    def stop(self, state: VoteState) -> bool:
        return state.n >= state.n_max


@dataclass(frozen=True)
class Decided:
    """Stop when no continuation of the remaining ``r = N_max - n`` samples can change the
    fixed-N_max vote's plurality set (hence its credit for every gold and its answer): ``r = 0``,
    or a unique leader whose lead over the runner-up (0 if none) exceeds ``r``. With ``r > 0`` a
    tie at the top is never decided (one more vote for a tied answer breaks it), and a lead of
    exactly ``r`` is not (the runner-up, or an answer not seen yet, could tie)."""

    memory: ClassVar[int] = 0

    @property
    def id(self) -> str:
        return "decided"

    def stop(self, state: VoteState) -> bool:
        left = state.n_max - state.n
        if left <= 0:
            return True
        c = state.counts
        if not c:
            return False
        second = c[1] if len(c) > 1 else 0
        return c[0] - second > left


@lru_cache(maxsize=65536)
def beta_prob(top: int, second: int) -> float:
    """P(p_1 > p_2) under the Beta(top + 1, second + 1) posterior of the leader's share among
    the two leading answers (uniform prior), exactly: ``P(Bin(top + second + 1, ½) ≤ top)``."""
    m = top + second + 1
    return float(Fraction(sum(math.comb(m, i) for i in range(top + 1)), 2**m))


@dataclass(frozen=True)
class Beta:
    """Adaptive-Consistency's Beta criterion (Aggarwal et al. 2023): stop when
    ``P(p_leader > p_runner-up) > threshold`` under Beta(v1 + 1, v2 + 1) (v2 = 0 with one answer
    seen), computed exactly (:func:`beta_prob`). Abstentions are ignored."""

    threshold: float = 0.95
    memory: ClassVar[int] = 0

    def __post_init__(self) -> None:
        _check_threshold("beta", self.threshold)

    @property
    def id(self) -> str:
        return f"beta:{self.threshold:g}"

    def stop(self, state: VoteState) -> bool:
        if state.n >= state.n_max:
            return True
        c = state.counts
        if not c:
            return False
        return beta_prob(c[0], c[1] if len(c) > 1 else 0) > self.threshold


@lru_cache(maxsize=65536)
def dirichlet_prob(counts: tuple[int, ...]) -> float:
    """P(the first component is the largest) under Dirichlet(1 + counts[0], …, 1 + counts[-1]),
    exactly (rational arithmetic): with independent G_i ~ Gamma(a_i), ``∫ f_{a_1}(x) Π_{i>1}
    F_{a_i}(x) dx`` where ``F_a(x) = 1 − e^{−x} P_a(x)``, ``P_a = Σ_{k<a} x^k / k!``; expanding
    the product by the number s of ``e^{−x} P`` factors taken, each term integrates in closed
    form: ``∫ x^{a_1 − 1 + k} e^{−(1 + s)x} / (a_1 − 1)! dx = (a_1 − 1 + k)! / ((a_1 − 1)!
    (1 + s)^{a_1 + k})``."""
    a1 = counts[0] + 1
    polys: list[list[Fraction]] = []
    for c in counts[1:]:
        polys.append([Fraction(1, math.factorial(k)) for k in range(c + 1)])
    # elem[s]: Σ over s-subsets of the product of their P polynomials (coefficient lists)
    elem: list[list[Fraction]] = [[Fraction(1)]]
    for p in polys:
        new = [list(e) for e in elem] + [[]]
        for s in range(len(elem)):
            prod = [Fraction(0)] * (len(elem[s]) + len(p) - 1)
            for i, x in enumerate(elem[s]):
                if x:
                    for j, y in enumerate(p):
                        prod[i + j] += x * y
            tgt = new[s + 1]
            if len(tgt) < len(prod):
                tgt.extend([Fraction(0)] * (len(prod) - len(tgt)))
            for i, v in enumerate(prod):
                tgt[i] += v
        elem = new
    total = Fraction(0)
    base = math.factorial(a1 - 1)
    for s, poly in enumerate(elem):
        sign = -1 if s % 2 else 1
        for k, coef in enumerate(poly):
            if coef:
                term = Fraction(math.factorial(a1 - 1 + k), base * (1 + s) ** (a1 + k))
                total += sign * coef * term
    return float(total)


@dataclass(frozen=True)
class Dirichlet:
    """Adaptive-Consistency's Dirichlet criterion: stop when the posterior probability that the
    current leader is the mode exceeds ``threshold``, under a uniform Dirichlet prior over the
    answers seen **plus one pseudo-answer standing for every answer not seen yet** (count 0):
    Dirichlet(1 + v_1, …, 1 + v_m, 1). The pseudo-answer keeps one seen answer from being
    certain (without it one sample would stop the vote); with one answer seen the rule equals
    ``beta``. Computed exactly, no sampling (:func:`dirichlet_prob`). Abstentions are ignored."""

    threshold: float = 0.95
    memory: ClassVar[int] = 0

    def __post_init__(self) -> None:
        _check_threshold("dirichlet", self.threshold)

    @property
    def id(self) -> str:
        return f"dirichlet:{self.threshold:g}"

    def stop(self, state: VoteState) -> bool:
        if state.n >= state.n_max:
            return True
        if not state.counts:
            return False
        return dirichlet_prob((*state.counts, 0)) > self.threshold


@dataclass(frozen=True)
class Window:
    """Early-Stopping Self-Consistency (Li et al. 2024): stop after a batch when the last ``w``
    samples are one and the same (non-abstaining) answer. Checked at batch ends only; with
    batch ``b = w`` this is ESC's window, otherwise the last w samples may span batches."""

    w: int = 4

    def __post_init__(self) -> None:
        if not (isinstance(self.w, int) and self.w >= 1):
            raise ValueError(f"window: w must be an integer >= 1, got {self.w!r}")

    @property
    def memory(self) -> int:
        return self.w

    @property
    def id(self) -> str:
        return f"window:{self.w}"

    def stop(self, state: VoteState) -> bool:
        return state.n >= state.n_max or state.run >= self.w


def parse_rule(text: str) -> StopRule:
    """The rule named by ``text``: ``fixed``, ``decided``, ``beta[:t]``, ``dirichlet[:t]``,
    ``window[:w]`` (defaults: t = 0.95, w = 4). ``parse_rule(rule.id) == rule``."""
    name, _, arg = text.strip().partition(":")
    try:
        if name == "fixed" and not arg:
            return Fixed()
        if name == "decided" and not arg:
            return Decided()
        if name == "beta":
            return Beta(float(arg)) if arg else Beta()
        if name == "dirichlet":
            return Dirichlet(float(arg)) if arg else Dirichlet()
        if name == "window":
            return Window(int(arg)) if arg else Window()
    except ValueError as e:
        raise ValueError(f"bad stopping rule {text!r}: {e}") from None
    raise ValueError(
        f"unknown stopping rule {text!r}: use fixed, decided, beta:T, dirichlet:T or window:W"
    )
