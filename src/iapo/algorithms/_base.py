"""The ask/tell interface every exploration algorithm implements, and the shared arm statistics."""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from iapo.algorithms import _estimates
from iapo.algorithms._estimates import Estimates, PullEstimates, add_sums
from iapo.algorithms._params import AlgorithmParams, validate_against
from iapo.errors import BudgetError
from iapo.problem import Problem
from iapo.strategies import Strategy
from iapo.types import Arm, PullRequest, PullResult

__all__ = ["Algorithm", "ArmStats", "RoundTrace"]

#: ``tell()`` reads a batch's estimates lazily from this many blocks' worth of them
_LAZY_BLOCKS = 8


class ArmStats:
    """Running sums of per-pull utility estimates, indexed (context, prompt, arm column): column
    N − 1 is the fixed arm N; adaptive arms follow (:class:`iapo.adaptive.ArmLayout`).

    Each pull of (p, n) adds one observation to every (c, p, k ≤ n): the U-statistic (or block)
    estimate of that pull at N = k. Statistics persist across rounds ("stockpiling").
    """

    def __init__(self, n_contexts: int, n_prompts: int, n_max: int) -> None:
        shape = (n_contexts, n_prompts, n_max)
        self.total = np.zeros(shape)
        self.total_sq = np.zeros(shape)
        self.count = np.zeros(shape, dtype=np.int64)

    def add(
        self, prompt_index: NDArray[np.int64], estimates: NDArray[np.float64] | Estimates
    ) -> None:
        """``estimates``: (pulls, C, k_max ≤ n_max) with NaN where a pull says nothing, as an
        array or as :class:`Estimates` (then summed a bounded block of pulls at a time, to the
        same floats)."""
        add_sums(self.total, self.total_sq, self.count, prompt_index, estimates)

    def add_one(self, context: int, prompt: int, n: int, value: float) -> None:
        self.total[context, prompt, n - 1] += value
        self.total_sq[context, prompt, n - 1] += value * value
        self.count[context, prompt, n - 1] += 1

    @property
    def mean(self) -> NDArray[np.float64]:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.total / np.maximum(self.count, 1), np.nan)

    @property
    def sem(self) -> NDArray[np.float64]:
        """Standard error of the mean (NaN with fewer than two observations)."""
        c = self.count.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (self.total_sq - self.total**2 / c) / (c - 1)
            return np.where(c > 1, np.sqrt(np.maximum(var, 0.0) / c), np.nan)


@dataclass(frozen=True)
class RoundTrace:
    """What one batch did: pulls per prompt at which N, completions, arms alive per context."""

    round: int
    pulls: dict[str, int]
    n: dict[str, int]
    completions: int
    alive: dict[str, int] = field(default_factory=dict)


class Algorithm(ABC):
    """Ask for pulls, be told their results, return a policy (context → arm).

    The ask/tell contract:

    * ``ask()`` returns the next batch of :class:`PullRequest` (empty once finished). The driver
      answers each non-empty batch exactly once, with ``tell(results)`` (the results in the asked
      order, each with exactly ``n`` samples) or ``tell_estimates(array)``, before asking again;
      asking twice or telling without a pending batch raises ``RuntimeError``, a wrong answer
      ``ValueError``, and the algorithm's state is unchanged by a refused call.
    * The completions asked for never exceed ``budget`` in total (``spent ≤ budget``), unless
      the class sets ``may_overspend`` (then at most :meth:`max_spend`).
    * ``policy()`` after the last (empty) ``ask()`` maps every context to an arm.
    * The same ``seed`` and the same answers give the same batches and the same policy.

    ``__init__`` only stores its arguments and empty state: it must not depend on subclass
    attributes, so a subclass may call ``super().__init__`` first. The budget is checked against
    :meth:`min_budget` by :meth:`check_budget`, on the first ``ask()`` (and eagerly by
    :func:`iapo.algorithms.create`), before anything is spent.

    ``rng`` and ``stats`` let an outer algorithm share its random stream and its statistics with
    an inner one it drives through the same public ``ask()`` / ``tell_estimates()`` (PSST+K and
    TRIPLE drive a PSST this way).

    Class attributes a driver may rely on:

    * ``one_pull_per_step``: every batch is a single pull, and a run with budget b makes the same
      choices as a run with a larger budget while ``b - spent ≥ n_max`` (the budget matters only
      through which N is still affordable). ``iapo bench`` then serves several budgets from one
      trajectory.
    * ``policy_params``: parameters that change only the final :meth:`policy`, not the
      exploration; :meth:`with_policy` gives the policy of other values of them without exploring
      again.
    * ``may_overspend``: the algorithm may ask for more completions than ``budget`` (up to
      :meth:`max_spend`; a research baseline reproducing published code, ``psst_paper``). ``spent``
      still counts every completion asked for, so a driver must not assume ``spent ≤ budget``:
      :class:`~iapo.study.Study`'s account counts what was drawn, ``iapo run`` prints the
      overspend, ``iapo bench`` records and plots each run at its actual spend. False (the
      default) makes ``ask()`` refuse, as a bug, any batch that passes the budget.
    """

    name: ClassVar[str]
    one_pull_per_step: ClassVar[bool] = False
    policy_params: ClassVar[frozenset[str]] = frozenset()
    may_overspend: ClassVar[bool] = False
    #: The parameters a config may set, with their ranges (an :class:`AlgorithmParams` model),
    #: declared by the class itself: a subclass that declares none (it may take other keyword
    #: arguments) is not checked against its parent's, and None means not declared.
    Params: ClassVar[type[AlgorithmParams] | None] = None

    @classmethod
    def validate_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` checked against the ``Params`` this class declares (unchanged when it
        declares none); ``ValueError("params.NAME: …")`` names the first one out of range or
        unknown."""
        model = cls.__dict__.get("Params")
        if model is None:
            return dict(params)
        return validate_against(model, params, getattr(cls, "name", cls.__name__))

    def __init__(
        self,
        problem: Problem,
        budget: int,
        seed: int = 0,
        *,
        rng: np.random.Generator | None = None,
        stats: ArmStats | None = None,
    ) -> None:
        self.problem = problem
        self.budget = int(budget)
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.stats = (
            stats
            if stats is not None
            else ArmStats(len(problem.contexts), len(problem.prompts), problem.layout.width)
        )
        self.spent = 0
        self.trace: list[RoundTrace] = []
        self._prompt_index = {p: i for i, p in enumerate(problem.prompts)}
        self._pending: list[PullRequest] | None = None
        self._budget_checked = False

    def check_budget(self) -> None:
        """Raise :class:`BudgetError` if ``budget`` is below :meth:`min_budget` for this
        problem and these :meth:`params`."""
        need = type(self).min_budget(self.problem, **self.params())
        if self.budget < need:
            raise BudgetError(
                f"{self.budget} completions cannot fund {self.name} on "
                f"{len(self.problem.prompts)} prompts × N ≤ {self.problem.n_max}: "
                f"the smallest budget that works is {need}{self.budget_hint()}",
                field="budget",
            )
        self._budget_checked = True

    def schedule(self) -> str:
        """One line on how this run will spend its budget (``iapo estimate`` prints it; default:
        none)."""
        return ""

    def budget_hint(self) -> str:
        """Appended to the :class:`BudgetError` message: another way to run (default: none)."""
        return ""

    # -- to implement -------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def min_budget(cls, problem: Problem, **params: Any) -> int:
        """The smallest budget (completions) this algorithm can run with."""

    @classmethod
    def max_spend(cls, problem: Problem, budget: int, **params: Any) -> int:
        """The most completions a run with ``budget`` can ask for: ``budget`` unless the class
        sets ``may_overspend`` (it then overrides this with its own bound)."""
        return int(budget)

    @abstractmethod
    def _next(self) -> list[PullRequest]:
        """The next batch (empty when finished)."""

    @abstractmethod
    def _observe(self, batch: Sequence[PullRequest], estimates: NDArray[np.float64]) -> None:
        """Update state with a batch; ``estimates`` is (pulls, C, n_max)."""

    def params(self) -> dict[str, Any]:
        """Parameters that change the algorithm's behaviour (for results and min_budget)."""
        return {}

    # -- ask / tell ---------------------------------------------------------------------
    def ask(self) -> list[PullRequest]:
        """The next batch (empty when finished); see the class docstring for the contract."""
        if self._pending is not None:
            raise RuntimeError("tell() the previous batch before asking again")
        if not self._budget_checked:
            self.check_budget()
        batch = self._next()
        cost = sum(r.n for r in batch)
        limit = self.budget
        if self.may_overspend:
            limit = type(self).max_spend(self.problem, self.budget, **self.params())
        if self.spent + cost > limit:  # an invariant: a bug if it ever fires
            raise AssertionError(f"{self.name} asked past its budget ({self.spent}+{cost})")
        self._pending = batch if batch else None
        return batch

    def tell(self, results: Sequence[PullResult]) -> None:
        """Answer the pending batch with its results, in the asked order."""
        if self._pending is None:
            raise RuntimeError("tell() without a pending ask()")
        if [r.request for r in results] != self._pending:
            raise ValueError("tell() must answer the asked batch, in order")
        if any(len(r.samples) != r.request.n for r in results):
            raise ValueError("each result must carry exactly the n samples asked for")
        self.tell_estimates(self._estimates(results))

    def tell_estimates(self, estimates: NDArray[np.float64] | Estimates) -> None:
        """Answer the pending batch with its utility estimates directly: an array (pulls, C, k)
        whose column j is the estimate at N = j + 1 (NaN where a pull says nothing), with
        max(n of the batch) ≤ k ≤ n_max; a narrower array than n_max saves work. Or the same
        as :class:`Estimates`, computed on demand: an algorithm that overrides
        :meth:`_observe_estimates` then never holds the whole array.

        For simulators that estimate from encoded samples without building :class:`PullResult`
        objects (``iapo bench``); ``tell`` computes the same array from results.
        """
        if self._pending is None:
            raise RuntimeError("tell() without a pending ask()")
        if estimates.shape[0] != len(self._pending):
            raise ValueError(
                f"{estimates.shape[0]} estimates for a batch of {len(self._pending)} pulls"
            )
        batch, self._pending = self._pending, None
        self.spent += sum(r.n for r in batch)
        if isinstance(estimates, Estimates):
            self._observe_estimates(batch, estimates)
        else:
            self._observe(batch, estimates)

    def _observe_estimates(self, batch: Sequence[PullRequest], estimates: Estimates) -> None:
        """:meth:`_observe` for estimates computed on demand; by default it materialises them.
        An algorithm that only adds them to :class:`ArmStats` (which takes them as they are)
        overrides it to keep its memory bounded."""
        self._observe(batch, estimates.dense())

    def absorb(self, results: Sequence[PullResult]) -> None:
        """Add results drawn outside the schedule (the affordable prefix of a batch that a cost
        cap cut short) to the statistics, so the policy uses every paid completion. The pending
        batch stays unanswered: the algorithm's schedule does not advance."""
        if not results:
            return
        self.stats.add(self.prompt_indices([r.request for r in results]), self._estimates(results))
        self.spent += sum(r.request.n for r in results)

    def _estimates(self, results: Sequence[PullResult]) -> NDArray[np.float64] | Estimates:
        """The results' estimates (pulls, C, width): computed a block of pulls at a time as they
        are read where the strategy estimates pull by pull (the built-in
        :meth:`Strategy.estimate`) and the array would exceed a block, so a large round never
        holds its dense array; at once otherwise, or where a strategy overrides ``estimate``
        (its rows might depend on each other)."""
        p = self.problem

        def estimate(part: Sequence[PullResult], k: int) -> NDArray[np.float64]:
            k_max = p.n_max if p.adaptive else k  # adaptive columns: laid out for N_max
            return p.strategy.estimate(part, p.contexts, k_max, p.method, adaptive=p.adaptive)

        width = p.n_max * (1 + len(p.adaptive))
        # a block read lazily holds its estimates, their temporaries and the summation's (about
        # ten block-sized arrays at once): below _LAZY_BLOCKS blocks the dense array is smaller
        small = len(results) * len(p.contexts) * width <= _LAZY_BLOCKS * _estimates.BLOCK_ELEMENTS
        if small or type(p.strategy).estimate is not Strategy.estimate:
            return estimate(results, p.n_max)
        return PullEstimates(estimate, results, len(p.contexts), width, narrow=not p.adaptive)

    def prompt_indices(self, batch: Sequence[PullRequest]) -> NDArray[np.int64]:
        return np.array([self._prompt_index[r.prompt] for r in batch], dtype=np.int64)

    # -- queries ------------------------------------------------------------------------
    def draw_queries(self, k: int) -> list[str]:
        """``k`` training queries, without replacement while possible (then cycling)."""
        qs = self.problem.queries
        out: list[str] = []
        while len(out) < k:
            perm = self.rng.permutation(len(qs))
            out.extend(qs[i] for i in perm[: k - len(out)])
        return out

    # -- the answer ---------------------------------------------------------------------
    def candidates(self, context: int) -> NDArray[np.bool_]:
        """(P, n_max) mask of arms this algorithm may return for ``context``."""
        return self.stats.count[context] > 0

    def ranking(self, context: int) -> list[Arm]:
        """Candidate arms for ``context``, best first (ties: smaller N, adaptive before fixed,
        then prompt order)."""
        return self.rank(context, self.candidates(context))

    def finalists(self, context: int) -> list[Arm]:
        """The arms the final choice was made among, best first (the runner-up is the second)."""
        return self.rank(context, self.stats.count[context] > 0)

    def rank(self, context: int, mask: NDArray[np.bool_]) -> list[Arm]:
        mean = self.stats.mean[context]
        ps, ns = np.nonzero(mask)
        vals = np.nan_to_num(mean[ps, ns], nan=-np.inf)
        lay = self.problem.layout
        order = np.lexsort((ps, lay.tie_rank[ns], -vals))
        return [lay.arm(self.problem.prompts[ps[i]], int(ns[i])) for i in order]

    def with_policy(self, **params: Any) -> Algorithm:
        """A shallow copy sharing this exploration whose :meth:`policy` is the one of other
        values of ``policy_params`` (e.g. TRIPLE's ``n``). Other names raise ``ValueError``.

        The copy draws from a copy of the random stream as it is now: after the exploration,
        its policy is exactly the one a fresh run with ``params`` would return."""
        unknown = sorted(set(params) - self.policy_params)
        if unknown:
            raise ValueError(f"{self.name}: {', '.join(unknown)} changes more than the policy")
        twin = copy.copy(self)
        twin.rng = copy.deepcopy(self.rng)
        twin._set_policy_params(params)
        return twin

    def _set_policy_params(self, params: dict[str, Any]) -> None:
        """Apply ``params`` (names from ``policy_params``) to this copy; see :meth:`with_policy`.
        A subclass that declares ``policy_params`` implements it."""
        if params:
            raise NotImplementedError(f"{self.name} declares policy_params but cannot apply them")

    def policy(self) -> dict[str, Arm]:
        """The chosen arm per context name (best estimate among :meth:`candidates`)."""
        out = {}
        for ci, c in enumerate(self.problem.contexts):
            ranked = self.ranking(ci)
            if not ranked:
                raise RuntimeError(f"{self.name} has no estimate for context {c.name!r}")
            out[c.name] = ranked[0]
        return out

    def run_offline(self, pull: Any) -> dict[str, Arm]:
        """Drive to the end with ``pull(requests) -> results`` (a synchronous helper)."""
        while batch := self.ask():
            self.tell(pull(batch))
        return self.policy()


def ceil_log2(x: int) -> int:
    return max(1, math.ceil(math.log2(x))) if x > 1 else 1
