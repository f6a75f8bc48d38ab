"""Use a learned policy in production: sample the chosen arm's N completions and aggregate them."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iapo.backends import Backend
from iapo.config import parse_config
from iapo.errors import ConfigError, InputError
from iapo.result import RunResult
from iapo.sampling import CachedSampler
from iapo.setups import setup
from iapo.strategies import Strategy, get_strategy
from iapo.types import Arm, Context, Query, Sample

__all__ = ["Answer", "Policy"]


@dataclass(frozen=True)
class Answer:
    """The aggregated answer to one question, with every sample and the summed cost."""

    context: str
    arm: Arm
    answer: str | None
    text: str | None
    samples: tuple[Sample, ...]
    cost: float
    usage: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "context": self.context,
            "prompt": self.arm.prompt,
            "n": self.arm.n,
            "answer": self.answer,
            "text": self.text,
            "cost": self.cost,
            "usage": dict(self.usage),
            "samples": [s.to_dict() for s in self.samples],
        }


def _result_file(result: RunResult | str | Path) -> str:
    """The file a result came from, for messages."""
    if isinstance(result, RunResult):
        return str(Path(result.run_dir) / "result.json")
    p = Path(result)
    return str(p / "result.json" if p.is_dir() else p)


class Policy:
    """A learned context → (prompt, N) map bound to a live backend.

    ``Policy.load(result)`` rebuilds the backend from the run's configuration (its ``backend``
    section and prompt texts); pass ``backend=`` to use another one (a policy learned by replaying
    a pool needs one, since a recording cannot answer new questions).
    """

    def __init__(
        self,
        result: RunResult,
        backend: Backend | None,
        strategy: Strategy,
        contexts: Mapping[str, Context],
    ) -> None:
        self.result = result
        self.backend = backend
        self.strategy = strategy
        self.contexts = dict(contexts)
        self.arms = {c: Arm(v["prompt"], int(v["n"])) for c, v in result.policy.items()}

    @classmethod
    def load(cls, result: RunResult | str | Path, *, backend: Backend | None = None) -> Policy:
        """The policy of a run result (or its folder or ``result.json``). A missing, truncated
        or malformed result is an :class:`~iapo.errors.InputError` naming the file."""
        res = result if isinstance(result, RunResult) else RunResult.load(result)
        where = _result_file(result)
        config = parse_config(res.config, f"{where} (config)")
        try:
            contexts = {
                c["name"]: Context(c["name"], c["weights"], c["cost_weight"]) for c in res.contexts
            }
            strategy = get_strategy(res.strategy, tuple(config.objectives or ("accuracy",)))
            policy = cls(res, None, strategy, contexts)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(
                f"a malformed run result ({type(exc).__name__}: {exc}): run the config again "
                "to rewrite it",
                source=where,
            ) from None
        if backend is None and config.backend is not None:  # a live run: the same backend
            base = Path(res.extra.get("config_dir", "."))
            s = setup(config, config_path=base / "config.yaml")
            backend = s.make_backend()
        policy.backend = backend
        return policy

    def arm(self, context: str) -> Arm:
        try:
            return self.arms[context]
        except KeyError:
            raise ConfigError(
                f"unknown context {context!r}: use one of {', '.join(self.arms)}", field="context"
            ) from None

    async def aask(self, question: str, context: str, **fields: str) -> Answer:
        """Sample the context's arm N times on ``question`` (in parallel) and aggregate."""
        arm = self.arm(context)
        if self.backend is None:
            raise ConfigError(
                "this policy was learned by replaying a recorded pool: give a live backend "
                "(Policy.load(result, backend=...))",
                field="backend",
            )
        qid = "ask-" + hashlib.sha256(question.encode()).hexdigest()[:16]
        self.backend.add_query(Query(qid, question, None, dict(fields)))
        # fresh samples every time: a deployed policy answers, it does not replay the bank
        drawn, _ = await CachedSampler(self.backend, None).draw(arm.prompt, qid, range(arm.n))
        samples = tuple(drawn)
        chosen = self.strategy.aggregate(samples, self.contexts[context])
        usage: dict[str, int] = {}
        for s in samples:
            for k, v in s.usage.items():
                usage[k] = usage.get(k, 0) + int(v)
        return Answer(
            context,
            arm,
            chosen.answer if chosen else None,
            chosen.text if chosen else None,
            samples,
            sum(s.cost for s in samples),
            usage,
        )

    def ask(self, question: str, context: str, **fields: str) -> Answer:
        """Synchronous :meth:`aask`."""
        return asyncio.run(self.aask(question, context, **fields))

    async def aclose(self) -> None:
        if self.backend is not None:
            await self.backend.aclose()
