"""What a study learned and where its budget went: the account, the chosen arms with their
estimates, and the frozen outcome a run's result is built from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from iapo.algorithms import Algorithm
from iapo.fmt import finite_or_none
from iapo.types import Arm, Sample

__all__ = ["Account", "ArmChoice", "ArmEstimate", "StudyOutcome"]


@dataclass
class Account:
    """Where the budget went. ``completions`` counts against the exploration budget; ``drawn`` is
    what the backend was actually asked for (the rest came from the bank). ``cost`` and the token
    sums are as the endpoint reported them (a count it reported unusably is costed at the
    request's worst case: see :mod:`iapo.chat_client`). ``anomalies``: what the endpoint did
    wrong during the run, by kind (``extra_choices`` counts the choices that arrived beyond those
    asked for, so ``drawn + anomalies["extra_choices"]`` arrived)."""

    budget: int
    completions: int = 0
    drawn: int = 0
    cache_hits: int = 0
    cost: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    by_prompt: dict[str, dict[str, float]] = field(default_factory=dict)
    anomalies: dict[str, int] = field(default_factory=dict)

    def add(self, prompt: str, samples: Sequence[Sample], fresh: int) -> None:
        self.completions += len(samples)
        self.drawn += fresh
        self.cache_hits += len(samples) - fresh
        row = self.by_prompt.setdefault(
            prompt, {"completions": 0, "drawn": 0, "cost": 0.0, "pulls": 0}
        )
        row["completions"] += len(samples)
        row["drawn"] += fresh
        row["pulls"] += 1
        for s in samples:
            self.cost += s.cost
            row["cost"] += s.cost
            self.prompt_tokens += int(s.usage.get("prompt_tokens", 0))
            self.completion_tokens += int(s.usage.get("completion_tokens", 0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "completions": self.completions,
            "drawn": self.drawn,
            "cache_hits": self.cache_hits,
            "cost": self.cost,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "by_prompt": self.by_prompt,
            "anomalies": dict(self.anomalies),
        }


def _arm_keys(arm: Arm) -> dict[str, Any]:
    """``prompt`` and ``n``, and ``adaptive`` (``"<rule>/b<batch>"``) for an adaptive arm only:
    results without adaptive arms are unchanged (a contract with ``Policy.ask`` and the report)."""
    out: dict[str, Any] = {"prompt": arm.prompt, "n": arm.n}
    if arm.adaptive:
        out["adaptive"] = arm.adaptive
    return out


@dataclass(frozen=True)
class ArmChoice:
    """An arm with its estimated utility and 95 % interval; ``expected_samples``: samples per
    query an adaptive arm is expected to draw, when known (None: not reported)."""

    arm: Arm
    q: float
    low: float
    high: float
    pulls: int
    expected_samples: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            **_arm_keys(self.arm),
            "q": finite_or_none(self.q),
            "ci95": [finite_or_none(self.low), finite_or_none(self.high)],
            "observations": self.pulls,
        }
        if self.arm.adaptive and self.expected_samples is not None:
            out["expected_samples"] = finite_or_none(self.expected_samples)
        return out


@dataclass(frozen=True)
class ArmEstimate:
    """The estimated utility of one arm in one context: mean, standard error, observations."""

    arm: Arm
    q: float
    sem: float
    observations: int

    def to_dict(self) -> dict[str, Any]:
        return {
            **_arm_keys(self.arm),
            "q": finite_or_none(self.q),
            "sem": finite_or_none(self.sem),
            "observations": self.observations,
        }


@dataclass(frozen=True)
class StudyOutcome:
    """What a finished study learned: per context the chosen arm, the runner-up and the
    estimate of every arm it observed; where the budget went; why it stopped early, if it did."""

    policy: Mapping[str, ArmChoice]
    runner_up: Mapping[str, ArmChoice | None]
    estimates: Mapping[str, tuple[ArmEstimate, ...]]
    account: Account
    algorithm: Algorithm
    stopped: str | None = None
