"""An adaptive voting scheme (rule, N_max, batch b) and its definition on one ordered sequence.

The scheme draws batches of ``b`` samples (the last one smaller when b does not divide N_max),
and after each batch asks its rule whether to stop; it always stops at N_max. The vote is the
plurality of *all* samples drawn (DESIGN §1: credit 1/t for t tied answers that include gold,
abstentions never win). :func:`run_sequence` is that definition, sample by sample in Python (the
reference of the tests and of deploy); :func:`run_sequences` is the same, vectorised over rows.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from iapo.adaptive._rules import StopRule, VoteState, parse_rule, vote_state
from iapo.estimators import TieCredit, check_tie_credit, vote_credit

__all__ = ["AdaptiveScheme", "credit_of", "parse_scheme", "run_sequence", "run_sequences"]

ABSTAIN = -1


@dataclass(frozen=True)
class AdaptiveScheme:
    """Adaptive majority voting: up to ``n_max`` samples in batches of ``batch``, stopped by
    ``rule``. ``id`` (e.g. ``decided/b2/n10``) is stable; :func:`parse_scheme` reads it back."""

    rule: StopRule
    n_max: int
    batch: int = 1

    def __post_init__(self) -> None:
        if not (isinstance(self.n_max, int) and self.n_max >= 1):
            raise ValueError(f"n_max must be an integer >= 1, got {self.n_max!r}")
        if not (isinstance(self.batch, int) and self.batch >= 1):
            raise ValueError(f"batch must be an integer >= 1, got {self.batch!r}")

    @property
    def id(self) -> str:
        return f"{self.rule.id}/b{self.batch}/n{self.n_max}"

    def __str__(self) -> str:
        return self.id

    def boundaries(self) -> tuple[int, ...]:
        """The sample counts after which the rule is asked: b, 2b, …, and N_max."""
        return (*range(self.batch, self.n_max, self.batch), self.n_max)

    def next_batch(self, drawn: int) -> int:
        """How many samples to draw next after ``drawn`` (0 once N_max is reached)."""
        return max(0, min(self.batch, self.n_max - drawn))

    def should_stop(self, answers: Sequence[Hashable | None]) -> bool:
        """After a batch: stop with these answers (None abstains)? Always at N_max."""
        if len(answers) >= self.n_max:
            return True
        return bool(self.rule.stop(self.state(answers)))

    def state(self, answers: Sequence[Hashable | None]) -> VoteState:
        s = vote_state(answers, self.n_max)
        cap = self.rule.memory
        return VoteState(s.counts, s.abstain, s.n, s.n_max, min(s.run, cap))


def parse_scheme(text: str) -> AdaptiveScheme:
    """The scheme of an :attr:`AdaptiveScheme.id` (``rule/b<batch>/n<n_max>``)."""
    parts = text.strip().split("/")
    if len(parts) != 3 or not parts[1].startswith("b") or not parts[2].startswith("n"):
        raise ValueError(f"bad adaptive scheme {text!r}: expected RULE/bBATCH/nNMAX")
    try:
        batch, n_max = int(parts[1][1:]), int(parts[2][1:])
    except ValueError:
        raise ValueError(f"bad adaptive scheme {text!r}: expected RULE/bBATCH/nNMAX") from None
    return AdaptiveScheme(parse_rule(parts[0]), n_max, batch)


#: The vote's credit (:func:`iapo.estimators.vote_credit`: 1/t — or 0.5 under ``half`` — when
#: gold is among the t answers tied at the top; None abstains).
credit_of = vote_credit


def run_sequence(
    scheme: AdaptiveScheme,
    answers: Sequence[Hashable | None],
    gold: Hashable | None,
    tie_credit: TieCredit = "fractional",
) -> tuple[float, int]:
    """(credit, samples drawn) of the scheme on the first samples of ``answers`` (at least
    N_max of them, in the order they would be drawn)."""
    if len(answers) < scheme.n_max:
        raise ValueError(f"need at least n_max = {scheme.n_max} answers, got {len(answers)}")
    for n in scheme.boundaries():
        if scheme.should_stop(answers[:n]):
            return credit_of(answers[:n], gold, tie_credit), n
    raise AssertionError("unreachable: the scheme stops at n_max")


def run_sequences(
    scheme: AdaptiveScheme,
    labels: NDArray[np.int64],
    gold: NDArray[np.int64],
    costs: NDArray[np.float64] | None = None,
    tie_credit: TieCredit = "fractional",
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]:
    """:func:`run_sequence` of every row of ``labels`` (rows, ≥ N_max; integer answers, -1
    abstains; ``gold`` (rows,), -1: none): (credit, samples drawn, cost of the samples drawn),
    each (rows,). The rule is asked once per distinct state."""
    tie_credit = check_tie_credit(tie_credit)
    labels = np.asarray(labels, dtype=np.int64)
    gold = np.asarray(gold, dtype=np.int64)
    rows, n = labels.shape
    if n < scheme.n_max:
        raise ValueError(f"need at least n_max = {scheme.n_max} answers per row, got {n}")
    seq = labels[:, : scheme.n_max]
    cost = np.zeros(seq.shape) if costs is None else np.asarray(costs, float)[:, : scheme.n_max]
    # dense codes per row: 0..L-1 for answers, L for abstention
    srt = np.sort(np.where(seq < 0, np.iinfo(np.int64).max, seq), axis=1)
    code = np.empty_like(seq)
    for r in range(rows):  # small loop: codes of the row's distinct answers
        uniq = np.unique(srt[r][srt[r] != np.iinfo(np.int64).max])
        code[r] = np.where(seq[r] < 0, scheme.n_max, np.searchsorted(uniq, seq[r]))
    gold_code = np.full(rows, -1, dtype=np.int64)
    hit = (seq == gold[:, None]) & (gold[:, None] >= 0)
    has = hit.any(axis=1)
    gold_code[has] = code[has, hit[has].argmax(axis=1)]
    counts = np.zeros((rows, scheme.n_max + 1), dtype=np.int64)
    run = np.zeros(rows, dtype=np.int64)
    last = np.full(rows, -1, dtype=np.int64)
    done = np.zeros(rows, dtype=bool)
    drawn = np.zeros(rows, dtype=np.int64)
    credit = np.zeros(rows)
    memo: dict[tuple[tuple[int, ...], int, int], bool] = {}
    every = np.arange(rows)
    ends = set(scheme.boundaries())
    for i in range(scheme.n_max):
        c = code[:, i]
        counts[every, c] += 1
        ans = c < scheme.n_max
        run = np.where(ans, np.where(c == last, run + 1, 1), 0)
        last = np.where(ans, c, -1)
        if i + 1 not in ends:
            continue
        live = np.flatnonzero(~done)
        votes = counts[live, : scheme.n_max]
        key_arr = -np.sort(-votes, axis=1)
        capped = np.minimum(run[live], scheme.rule.memory)
        stop = np.zeros(len(live), dtype=bool)
        for j in range(len(live)):
            key = (tuple(int(v) for v in key_arr[j] if v > 0), int(capped[j]), i + 1)
            hit_memo = memo.get(key)
            if hit_memo is None:
                st = VoteState(key[0], i + 1 - sum(key[0]), i + 1, scheme.n_max, key[1])
                hit_memo = memo[key] = i + 1 >= scheme.n_max or bool(scheme.rule.stop(st))
            stop[j] = hit_memo
        fin = live[stop]
        if fin.size:
            v = counts[fin, : scheme.n_max]
            top = v.max(axis=1)
            ties = (v == top[:, None]).sum(axis=1)
            g = np.where(gold_code[fin] >= 0, v[np.arange(fin.size), gold_code[fin]], 0)
            win = (g > 0) & (g == top)
            share = np.where(ties > 1, 0.5, 1.0) if tie_credit == "half" else 1.0 / ties
            credit[fin] = np.where(win, share, 0.0)
            drawn[fin] = i + 1
            done[fin] = True
    csum = np.cumsum(cost, axis=1)
    spent = csum[every, drawn - 1]
    return credit, drawn, spent
