"""The one algorithm registry: names that configs, ``iapo.run`` and ``iapo bench`` accept."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from iapo.algorithms._base import Algorithm
from iapo.algorithms._baselines import (
    UCB,
    EpsilonGreedy,
    SequentialHalving,
    Softmax,
    Triple,
    Uniform,
)
from iapo.algorithms._budget import PSSTAny
from iapo.algorithms._paper import PSSTPaper
from iapo.algorithms._psst import PSST, PSSTTopK
from iapo.problem import Problem
from iapo.strategies import Method

__all__ = ["AlgorithmEntry", "create", "get", "register_algorithm", "registry"]


@dataclass(frozen=True)
class AlgorithmEntry:
    """A registered algorithm: a class with fixed parameters, under a name.

    ``estimator`` overrides the problem's estimator (None: as configured). ``variant_of`` names
    the entry this one specialises (``psst_k1`` is ``psst_topk`` with ``k=1``): its parameters
    start from that entry's and results report the base name with the added parameters.
    ``group``: entries of one group share their random streams in a benchmark run (same seed),
    so that they differ only in what they do with the same data. ``title`` labels tables/plots.
    ``adaptive``: a benchmark's twin of a registered entry that also sees the adaptive arms
    (``iapo bench --adaptive``; never registered). Entries pickle (benchmark workers receive
    them).
    """

    name: str
    cls: type[Algorithm]
    params: Mapping[str, Any] = field(default_factory=dict)
    estimator: Method | None = None
    title: str = ""
    group: str = ""
    variant_of: str | None = None
    adaptive: bool = False

    @property
    def base(self) -> AlgorithmEntry:
        """The entry this one specialises (itself when it is no variant)."""
        return _REGISTRY[self.variant_of] if self.variant_of else self

    @property
    def all_params(self) -> dict[str, Any]:
        """Every fixed parameter, the base entry's included."""
        base = self.base
        return {**base.params, **self.params} if base is not self else dict(self.params)

    @property
    def added_params(self) -> dict[str, Any]:
        """The parameters this entry adds to its base (empty when it is no variant)."""
        return dict(self.params) if self.variant_of else {}

    def min_budget(self, problem: Problem) -> int:
        return self.cls.min_budget(problem, **self.all_params)

    def to_dict(self) -> dict[str, Any]:
        """How results describe it: name, base algorithm, added params, estimator, title."""
        return {
            "label": self.name,
            "algorithm": self.base.name,
            "params": self.added_params,
            "estimator": self.estimator or "ustat",  # the bench's problems use ustat
            "title": self.title or self.name,
        }


_REGISTRY: dict[str, AlgorithmEntry] = {}


def register_algorithm(
    name: str,
    cls: type[Algorithm],
    params: Mapping[str, Any] | None = None,
    *,
    estimator: Method | None = None,
    title: str = "",
    group: str = "",
    variant_of: str | None = None,
) -> AlgorithmEntry:
    """Register ``cls`` under ``name`` (with fixed ``params``) for configs and ``iapo bench``.

    Raises ``ValueError`` if ``name`` is taken or ``variant_of`` is not registered.
    """
    if name in _REGISTRY:
        raise ValueError(f"algorithm {name!r} is already registered")
    if variant_of is not None and variant_of not in _REGISTRY:
        raise ValueError(f"variant_of={variant_of!r} is not a registered algorithm")
    entry = AlgorithmEntry(name, cls, dict(params or {}), estimator, title, group, variant_of)
    _REGISTRY[name] = entry
    return entry


def registry() -> Mapping[str, AlgorithmEntry]:
    """Every registered algorithm by name, in registration order (read-only)."""
    return MappingProxyType(_REGISTRY)


def get(name: str) -> AlgorithmEntry:
    """The entry called ``name``; ``ValueError`` naming the choices if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown algorithm {name!r}: use one of {', '.join(sorted(_REGISTRY))}"
        ) from None


def create(name: str, problem: Problem, budget: int, seed: int = 0, **params: Any) -> Algorithm:
    """Instantiate algorithm ``name`` with its fixed parameters and ``params`` on top.

    The entry's estimator, if any, replaces the problem's. The parameters are checked against
    the class's declared ``Params`` (``ValueError("params.NAME: …")``) and the budget
    (:class:`~iapo.errors.BudgetError`) here, before anything is spent.
    """
    entry = get(name)
    if entry.estimator is not None and entry.estimator != problem.method:
        problem = replace(problem, method=entry.estimator)
    checked = entry.cls.validate_params({**entry.all_params, **params})
    algo = entry.cls(problem, budget, seed, **checked)
    algo.check_budget()
    return algo


# Registration order is the order of `iapo bench`'s default list, then the other names.
register_algorithm("psst", PSST, title="PSST (U-statistic)", group="psst")
register_algorithm(
    "psst_blocks",
    PSST,
    estimator="blocks",
    title="PSST paired blocks (ablation)",
    group="psst",
    variant_of="psst",
)
register_algorithm("psst_topk", PSSTTopK, title="PSST+K")
for _k, _title in ((1, "PSST+K1 (≈ disjoint)"), (4, "PSST+K4"), (8, "PSST+K8")):
    register_algorithm(
        f"psst_k{_k}", PSSTTopK, {"k": _k}, title=_title, group="topk", variant_of="psst_topk"
    )
register_algorithm("uniform", Uniform, title="Uniform")
register_algorithm("sequential_halving", SequentialHalving, title="Seq. Halving per context")
# ucb, epsilon_greedy: the paper's constants; their tuned variants (benchmarks/tune_baselines.py,
# docs/bench/baseline-tuning.md) are registered below, in the same seed group, so they pair
register_algorithm("ucb", UCB, title="UCB (c = 0.1)", group="ucb")
register_algorithm(
    "epsilon_greedy", EpsilonGreedy, title="ε-greedy (ε = 0.15)", group="epsilon_greedy"
)
register_algorithm("softmax", Softmax, title="Softmax (τ = 0.003)")
register_algorithm("triple", Triple, {"n": "one"}, title="TRIPLE (prompt-only)")
register_algorithm(
    "triple_n1", Triple, {"n": "one"}, title="TRIPLE N=1 (prompt-only)", group="triple"
)
register_algorithm(
    "triple_nrandom", Triple, {"n": "random"}, title="TRIPLE N=random", group="triple"
)
# psst_paper: the released research code's PSST (may overspend); psst_paired_blocks: today's
# PSST with the blocks estimator, an ablation, not the paper's algorithm (psst_blocks: its old
# name, kept so stored benchmark results and configs still run)
register_algorithm("psst_paper", PSSTPaper, title="PSST (paper's code; may overspend)")
# psst_unpaired: strict PSST with an independent random query per pull (the paper's sampling of
# queries, everything else iapo's), an ablation measuring the pairing (BENCHMARKS.md section 6)
register_algorithm(
    "psst_unpaired",
    PSST,
    {"paired": False},
    title="PSST unpaired queries (ablation)",
    group="psst",
    variant_of="psst",
)
register_algorithm(
    "psst_paired_blocks",
    PSST,
    estimator="blocks",
    title="PSST paired blocks (ablation)",
    group="psst",
    variant_of="psst",
)

# PSST at any budget (issue #11 item 1): strict PSST where the budget funds it (same seed group,
# so a benchmark pairs the two), a budget-feasible schedule below; the default (AlgorithmConfig).
register_algorithm("psst_any", PSSTAny, title="PSST (any budget)", group="psst")
register_algorithm(
    "psst_any_paired",
    PSSTAny,
    {"groups": 1},
    title="PSST (any budget), one query group (ablation)",
    group="psst",
    variant_of="psst_any",
)

# The one-pull-per-step baselines with constants tuned under our count convention on environments
# the tables do not use (benchmarks/tune_baselines.py; softmax has no paper value: its default is
# the tuned τ). Not in iapo bench's default list: name them to benchmark them.
register_algorithm(
    "ucb_tuned", UCB, {"c": 0.3}, title="UCB (c = 0.3, tuned)", group="ucb", variant_of="ucb"
)
register_algorithm(
    "epsilon_greedy_tuned",
    EpsilonGreedy,
    {"epsilon": 0.05},
    title="ε-greedy (ε = 0.05, tuned)",
    group="epsilon_greedy",
    variant_of="epsilon_greedy",
)
