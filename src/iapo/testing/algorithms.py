"""``AlgorithmSuite``: the conformance tests every exploration algorithm must pass.

Subclass it in a test module (the class name must start with ``Test``) and say how to build
your algorithm; pytest then runs every ``test_*`` method on a small built-in problem::

    from iapo.testing import AlgorithmSuite

    class TestMyAlgorithm(AlgorithmSuite):
        def make(self, problem, budget, seed):
            return MyAlgorithm(problem, budget, seed)

The problem (4 prompts × N ≤ 4, 10 training queries, two cost contexts, majority vote) and the
pulls (a seeded fake LLM: :func:`fake_puller`) need no network and run in well under a second per
test. Override :meth:`AlgorithmSuite.problem` for another problem (``suite_problem(adaptive=
("decided/b1",))`` adds adaptive majority-vote arms: the policy must then name arms of the
problem's layout), and set
``seed_matters = False`` for an algorithm that uses no randomness. Importing this module does not
import pytest: the tests do, when they run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from iapo.algorithms import Algorithm
from iapo.contexts import context_grid
from iapo.errors import BudgetError
from iapo.problem import Problem
from iapo.strategies import MajorityVote
from iapo.types import Arm, PullRequest, PullResult, Sample

__all__ = ["AlgorithmSuite", "Puller", "fake_puller", "suite_problem"]

Puller = Callable[[Sequence[PullRequest]], list[PullResult]]


def suite_problem(adaptive: Sequence[str] = ()) -> Problem:
    """4 prompts × N ≤ 4 on 10 training queries, contexts cost weight 0 and 0.3, majority vote;
    ``adaptive``: adaptive arm ids (``"<rule>/b<batch>"``) next to the fixed arms."""
    contexts = tuple(context_grid({"accuracy": [1.0]}, [0.0, 0.3]))
    prompts = tuple(f"p{i}" for i in range(4))
    queries = tuple(f"q{j}" for j in range(10))
    return Problem(prompts, queries, 4, contexts, MajorityVote(), adaptive=tuple(adaptive))


def fake_puller(problem: Problem, seed: int = 0) -> Puller:
    """A seeded fake LLM: ``pull(batch) -> results``, the same answers for the same sequence of
    batches. Prompt i answers query j correctly ("A") with a probability that depends on (i, j),
    else "B", "C" or nothing; a completion costs 0.1·(i + 1)."""
    rng = np.random.default_rng(seed)
    index = {p: i for i, p in enumerate(problem.prompts)}
    qindex = {q: j for j, q in enumerate(problem.queries)}

    def pull(batch: Sequence[PullRequest]) -> list[PullResult]:
        out = []
        for r in batch:
            i, j = index[r.prompt], qindex.get(r.query, 0)
            success = 0.2 + 0.6 * ((3 * i + 7 * j) % 10) / 9
            cost = 0.1 * (i + 1)
            samples = tuple(Sample(_answer(x, success), {}, cost) for x in rng.random(r.n))
            out.append(PullResult(r, samples, "A"))
        return out

    return pull


def _answer(u: float, success: float) -> str | None:
    """Gold "A" below ``success``, nothing above 0.95, else "B" or "C"."""
    if u < success:
        return "A"
    if u > 0.95:
        return None
    return "B" if u < (success + 0.95) / 2 else "C"


def _raises(exc: type[BaseException], match: str | None = None) -> Any:
    import pytest  # only when the suite runs: importing iapo.testing needs no pytest

    return pytest.raises(exc, match=match)


class AlgorithmSuite:
    """Conformance tests of the :class:`~iapo.algorithms.Algorithm` contract.

    Implement :meth:`make`. Checked: the budget is never exceeded (each batch and in total;
    for an algorithm with ``may_overspend``: never past its ``max_spend``, and ``spent`` counts
    exactly the completions asked for, the overspend included),
    the same seed gives the same batches and policy, different seeds can differ,
    ``min_budget`` is tight (it runs to a policy; one less is refused before anything is spent),
    the policy covers every context with a valid arm, and ask/tell misuse raises the documented
    errors without changing the algorithm's state.
    """

    #: False for an algorithm that uses no randomness (the different-seeds test is skipped).
    seed_matters: ClassVar[bool] = True

    def make(self, problem: Problem, budget: int, seed: int) -> Algorithm:
        """A fresh algorithm for ``problem`` with this budget and seed."""
        raise NotImplementedError("subclass AlgorithmSuite and implement make()")

    def problem(self) -> Problem:
        """The problem the tests run on (default: :func:`suite_problem`)."""
        return suite_problem()

    def min_budget(self, problem: Problem) -> int:
        """The algorithm's smallest budget on ``problem`` (default: its ``min_budget``)."""
        algo = self.make(problem, 10**9, 0)
        return type(algo).min_budget(problem, **algo.params())

    # -- helpers --------------------------------------------------------------------------
    def drive(
        self, algo: Algorithm, pull: Puller
    ) -> tuple[list[list[PullRequest]], dict[str, Arm]]:
        """Run ``algo`` to the end, checking each batch; return its batches and policy."""
        p = algo.problem
        batches: list[list[PullRequest]] = []
        limit = self.spend_limit(algo)
        while batch := algo.ask():
            cost = sum(r.n for r in batch)
            assert algo.spent + cost <= limit, f"a batch of {cost} passes the budget"
            for r in batch:
                assert r.prompt in p.prompts and r.query in p.queries, r
                assert 1 <= r.n <= p.n_max, r
            batches.append(list(batch))
            algo.tell(pull(batch))
            assert len(batches) <= 100_000, "the algorithm never finishes"
        assert algo.ask() == [], "ask() after the end must keep returning []"
        return batches, algo.policy()

    @staticmethod
    def spend_limit(algo: Algorithm) -> int:
        """What ``algo`` may ask for in total: its budget, or its ``max_spend`` for an
        algorithm that declares ``may_overspend``."""
        if type(algo).may_overspend:
            return type(algo).max_spend(algo.problem, algo.budget, **algo.params())
        return algo.budget

    def check_policy(self, problem: Problem, policy: dict[str, Arm]) -> None:
        assert set(policy) == {c.name for c in problem.contexts}
        for arm in policy.values():
            assert arm.prompt in problem.prompts and 1 <= arm.n <= problem.n_max, arm
            problem.layout.column(arm)  # an arm of this problem (adaptive ones included)

    # -- the tests ------------------------------------------------------------------------
    def test_budget_is_never_exceeded(self) -> None:
        problem = self.problem()
        need = self.min_budget(problem)
        for extra in (0, 57, 400):
            algo = self.make(problem, need + extra, 1)
            batches, policy = self.drive(algo, fake_puller(problem, extra))
            asked = sum(r.n for b in batches for r in b)
            # spent is the truth: every completion asked for, over the budget included
            assert asked == algo.spent <= self.spend_limit(algo)
            if not type(algo).may_overspend:
                assert algo.spent <= need + extra
            self.check_policy(problem, policy)

    def test_same_seed_same_batches_and_policy(self) -> None:
        problem = self.problem()
        budget = self.min_budget(problem) + 200
        first = self.drive(self.make(problem, budget, 3), fake_puller(problem, 3))
        again = self.drive(self.make(problem, budget, 3), fake_puller(problem, 3))
        assert first == again

    def test_different_seeds_can_differ(self) -> None:
        if not self.seed_matters:
            return
        problem = self.problem()
        budget = self.min_budget(problem) + 200
        runs = {
            repr(self.drive(self.make(problem, budget, seed), fake_puller(problem, 0))[0])
            for seed in range(4)
        }
        assert len(runs) > 1, "four seeds gave the same batches"

    def test_min_budget_is_tight(self) -> None:
        problem = self.problem()
        need = self.min_budget(problem)
        algo = self.make(problem, need, 0)
        batches, policy = self.drive(algo, fake_puller(problem))
        assert batches, "the smallest budget must fund at least one pull"
        assert algo.spent == sum(r.n for b in batches for r in b) <= self.spend_limit(algo)
        self.check_policy(problem, policy)
        with _raises(BudgetError, match=f"smallest budget that works is {need}"):
            short = self.make(problem, need - 1, 0)
            short.ask()  # refused here at the latest, before anything is spent

    def test_policy_covers_every_context(self) -> None:
        problem = self.problem()
        algo = self.make(problem, self.min_budget(problem) + 300, 5)
        _, policy = self.drive(algo, fake_puller(problem, 5))
        self.check_policy(problem, policy)
        assert algo.policy() == policy, "policy() must be the same on every call"

    def test_ask_tell_protocol_errors(self) -> None:
        problem = self.problem()
        pull = fake_puller(problem)
        algo = self.make(problem, self.min_budget(problem) + 100, 0)
        with _raises(RuntimeError):
            algo.tell([])  # nothing asked yet
        batch = algo.ask()
        assert batch
        with _raises(RuntimeError):
            algo.ask()  # the batch is pending
        results = pull(batch)
        other = PullRequest(batch[0].prompt, batch[0].query + "?", batch[0].n)
        with _raises(ValueError):
            algo.tell([PullResult(other, results[0].samples[:1] * other.n), *results[1:]])
        with _raises(ValueError):  # one sample too many
            algo.tell([PullResult(r.request, (*r.samples, r.samples[0])) for r in results])
        with _raises(ValueError):
            algo.tell_estimates(np.zeros((len(batch) + 1, len(problem.contexts), 1)))
        assert algo.spent == 0, "a refused tell() must not count"
        algo.tell(results)  # the pending batch is still answerable
        with _raises(RuntimeError):
            algo.tell(results)  # answered already
        self.drive(algo, pull)
