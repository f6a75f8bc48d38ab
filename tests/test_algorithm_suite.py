"""Every registered algorithm passes the conformance suite of ``iapo.testing``."""

from __future__ import annotations

from dataclasses import replace

import pytest

from iapo import algorithms
from iapo.algorithms import PSST, Algorithm, Uniform
from iapo.contexts import context_grid
from iapo.problem import Problem
from iapo.testing import AlgorithmSuite
from iapo.testing.algorithms import suite_problem
from iapo.types import Arm


@pytest.fixture(params=list(algorithms.registry()))
def algorithm_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


class TestRegisteredAlgorithms(AlgorithmSuite):
    @pytest.fixture(autouse=True)
    def _name(self, algorithm_name: str) -> None:
        self.name = algorithm_name

    def make(self, problem: Problem, budget: int, seed: int) -> Algorithm:
        return algorithms.create(self.name, problem, budget, seed)


@pytest.fixture(params=[(1, 1), (3, 1), (5, 5)], ids=lambda s: f"P{s[0]}-N{s[1]}")
def shape(request: pytest.FixtureRequest) -> tuple[int, int]:
    value: tuple[int, int] = request.param
    return value


class TestRegisteredAlgorithmsOnOtherShapes(TestRegisteredAlgorithms):
    """The same contract on degenerate and larger problems (one prompt, N_max = 1, …)."""

    @pytest.fixture(autouse=True)
    def _shape(self, shape: tuple[int, int]) -> None:
        self.shape = shape

    def problem(self) -> Problem:
        base = suite_problem()
        n_prompts, n_max = self.shape
        contexts = tuple(context_grid({"accuracy": [1.0]}, [0.0, 0.1, 1.0]))
        return replace(base, prompts=base.prompts[:n_prompts], n_max=n_max, contexts=contexts)


# -- the suite catches broken algorithms ------------------------------------------------------


class _TooCheap(Uniform):
    """Claims a minimum budget one too small for its schedule."""

    @classmethod
    def min_budget(cls, problem: Problem, **params: object) -> int:
        return super().min_budget(problem) - 1


class _Seedless(Uniform):
    """Ignores its seed."""

    def __init__(self, problem: Problem, budget: int, seed: int = 0) -> None:
        super().__init__(problem, budget, 0)


class _Forgetful(PSST):
    """Drops the last context from its policy."""

    def policy(self) -> dict[str, Arm]:
        out = super().policy()
        out.pop(self.problem.contexts[-1].name)
        return out


@pytest.mark.parametrize(
    ("cls", "test"),
    [
        (_TooCheap, "test_min_budget_is_tight"),
        (_Seedless, "test_different_seeds_can_differ"),
        (_Forgetful, "test_policy_covers_every_context"),
        (_Forgetful, "test_budget_is_never_exceeded"),
    ],
)
def test_the_suite_fails_broken_algorithms(cls: type[Algorithm], test: str) -> None:
    class Suite(AlgorithmSuite):
        def make(self, problem: Problem, budget: int, seed: int) -> Algorithm:
            return cls(problem, budget, seed)

    with pytest.raises((AssertionError, RuntimeError)):  # a failed check, or policy() refuses
        getattr(Suite(), test)()
    Suite().test_ask_tell_protocol_errors()  # the rest of the contract still holds
