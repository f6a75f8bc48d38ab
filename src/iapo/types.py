"""Small frozen value objects shared by every part of iapo."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Arm", "Context", "PromptSpec", "PullRequest", "PullResult", "Query", "Sample"]


@dataclass(frozen=True, order=True)
class Arm:
    """An arm of the bandit: a prompt and a number of completions ``n`` to aggregate.

    ``adaptive`` (majority vote only; issue #15): ``""`` for the fixed arm (always ``n``
    completions; ``""`` rather than None keeps arms ordered), else the stopping rule and batch
    of an adaptive arm as ``"<rule>/b<batch>"`` (e.g. ``"decided/b2"``): up to ``n``
    completions drawn ``batch`` at a time until the rule stops
    (:class:`iapo.adaptive.AdaptiveScheme` ``f"{adaptive}/n{n}"``).
    """

    prompt: str
    n: int
    adaptive: str = ""

    def __str__(self) -> str:
        base = f"{self.prompt}@{self.n}"
        return f"{base}~{self.adaptive}" if self.adaptive else base


@dataclass(frozen=True)
class Context:
    """A user's preference: weights over objectives plus a weight on inference cost.

    Utility of one query (DESIGN §1): Best-of-N ``max_i Σ_k w_k O_k(y_i) − w_cost Σ_i cost(y_i)``;
    majority vote ``w_accuracy · credit − w_cost Σ_i cost(y_i)``.
    """

    name: str
    weights: Mapping[str, float]
    cost_weight: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", MappingProxyType(dict(self.weights)))

    def weight_vector(self, objectives: tuple[str, ...]) -> tuple[float, ...]:
        return tuple(float(self.weights.get(o, 0.0)) for o in objectives)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weights": dict(self.weights), "cost_weight": self.cost_weight}

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.weights.items())), self.cost_weight))


@dataclass(frozen=True)
class Sample:
    """One scored completion.

    ``answer`` is the extracted final answer (``None``: nothing parsed, the sample abstains in a
    majority vote); ``scores`` are objective values; ``cost`` is in the run's cost unit.
    """

    answer: str | None = None
    scores: Mapping[str, float] = field(default_factory=dict)
    cost: float = 0.0
    text: str | None = None
    usage: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "answer": self.answer,
            "scores": dict(self.scores),
            "cost": self.cost,
        }
        if self.text is not None:
            out["text"] = self.text
        if self.usage:
            out["usage"] = dict(self.usage)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Sample:
        return cls(
            answer=d.get("answer"),
            scores={str(k): float(v) for k, v in (d.get("scores") or {}).items()},
            cost=float(d.get("cost", 0.0)),
            text=d.get("text"),
            usage={str(k): int(v) for k, v in (d.get("usage") or {}).items()},
        )


@dataclass(frozen=True)
class PullRequest:
    """An algorithm's request: ``n`` fresh i.i.d. completions of ``prompt`` on ``query``."""

    prompt: str
    query: str
    n: int


@dataclass(frozen=True)
class PullResult:
    """The answer to a :class:`PullRequest`. ``gold`` is the query's reference answer, if any."""

    request: PullRequest
    samples: tuple[Sample, ...]
    gold: str | None = None


@dataclass(frozen=True)
class Query:
    """One question of the dataset. ``fields`` are extra template variables (choices, …)."""

    id: str
    text: str
    gold: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PromptSpec:
    """A prompt: an optional system message and a user template over ``{question}`` and fields."""

    id: str
    system: str | None = None
    template: str = "{question}"

    def render(self, query: Query) -> list[dict[str, str]]:
        """The chat messages for ``query`` (the full text the model sees)."""
        user = self.template.format_map({**query.fields, "question": query.text})
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages.append({"role": "user", "content": user})
        return messages
