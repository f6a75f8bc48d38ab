"""Use a learned policy in production: sample the chosen arm's N completions and aggregate them."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
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

__all__ = ["DEFAULT_MAX_QUESTIONS", "Answer", "Policy"]

#: How many distinct ad-hoc questions a policy keeps registered with its backend at once.
DEFAULT_MAX_QUESTIONS = 1024


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


class _QuestionSlots:
    """A bounded LRU map from ad-hoc questions to the query ids they are registered under.

    At most ``size`` questions stay registered (plus those in flight, which are never evicted):
    a new question reuses the id of the least recently asked one, and
    :meth:`~iapo.backends.Backend.add_query` replaces the query under that id, so what the
    backend holds for ad-hoc questions stays bounded however many distinct questions come."""

    def __init__(self, size: int) -> None:
        self.size = max(1, int(size))
        self._ids: OrderedDict[tuple[str, tuple[tuple[str, str], ...]], str] = OrderedDict()
        self._pins: dict[str, int] = {}
        self._free: list[str] = []
        self._made = 0

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids_made(self) -> int:
        """How many distinct query ids were ever handed out (≤ size + most in flight at once)."""
        return self._made

    def take(self, key: tuple[str, tuple[tuple[str, str], ...]]) -> tuple[str, bool]:
        """The id of ``key`` (pinned until :meth:`give`) and whether it must be (re)registered."""
        qid = self._ids.get(key)
        fresh = qid is None
        if qid is None:
            if len(self._ids) >= self.size:  # evict the least recently used question not in use
                old = next((k for k, v in self._ids.items() if not self._pins.get(v)), None)
                if old is not None:
                    self._free.append(self._ids.pop(old))
            if self._free:
                qid = self._free.pop()
            else:
                qid = f"ask-{self._made}"
                self._made += 1
            self._ids[key] = qid
        else:
            self._ids.move_to_end(key)
        self._pins[qid] = self._pins.get(qid, 0) + 1
        return qid, fresh

    def give(self, qid: str) -> None:
        left = self._pins[qid] - 1
        if left:
            self._pins[qid] = left
        else:
            del self._pins[qid]

    def forget(self, key: tuple[str, tuple[tuple[str, str], ...]]) -> None:
        """Drop ``key`` (its registration failed); its id is reused once no longer in use."""
        qid = self._ids.pop(key, None)
        if qid is not None:
            self._free.append(qid)


class Policy:
    """A learned context → (prompt, N) map bound to a live backend.

    ``Policy.load(result)`` rebuilds the backend from the run's configuration (its ``backend``
    section and prompt texts); pass ``backend=`` to use another one (a policy learned by replaying
    a pool needs one, since a recording cannot answer new questions). ``max_questions`` bounds
    the distinct ad-hoc questions kept registered with the backend (least recently asked first
    out), so a long-running server's memory stays flat.
    """

    def __init__(
        self,
        result: RunResult,
        backend: Backend | None,
        strategy: Strategy,
        contexts: Mapping[str, Context],
        *,
        max_questions: int = DEFAULT_MAX_QUESTIONS,
    ) -> None:
        self.result = result
        self.backend = backend
        self.strategy = strategy
        self.contexts = dict(contexts)
        self.arms = {c: Arm(v["prompt"], int(v["n"])) for c, v in result.policy.items()}
        self.questions = _QuestionSlots(max_questions)

    @classmethod
    def load(
        cls,
        result: RunResult | str | Path,
        *,
        backend: Backend | None = None,
        concurrency: int | None = None,
        max_questions: int = DEFAULT_MAX_QUESTIONS,
    ) -> Policy:
        """The policy of a run result (or its folder or ``result.json``). A missing, truncated
        or malformed result is an :class:`~iapo.errors.InputError` naming the file.
        ``concurrency`` overrides the configured backend's ``concurrency`` (its bound on requests
        in flight) when the backend is rebuilt from the run's configuration."""
        res = result if isinstance(result, RunResult) else RunResult.load(result)
        where = _result_file(result)
        raw = res.config
        if concurrency is not None and backend is None and isinstance(raw.get("backend"), dict):
            raw = {**raw, "backend": {**raw["backend"], "concurrency": concurrency}}
        config = parse_config(raw, f"{where} (config)")
        try:
            contexts = {
                c["name"]: Context(c["name"], c["weights"], c["cost_weight"]) for c in res.contexts
            }
            strategy = get_strategy(res.strategy, tuple(config.objectives or ("accuracy",)))
            policy = cls(res, None, strategy, contexts, max_questions=max_questions)
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
        async with self._registered(question, fields) as qid:
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

    @asynccontextmanager
    async def _registered(self, question: str, fields: Mapping[str, str]) -> AsyncIterator[str]:
        """The query id ``question`` is registered under with the backend, held while in use."""
        assert self.backend is not None
        key = (question, tuple(sorted(fields.items())))
        qid, fresh = self.questions.take(key)
        try:
            if fresh:
                try:
                    self.backend.add_query(Query(qid, question, None, dict(fields)))
                except BaseException:
                    self.questions.forget(key)
                    raise
            yield qid
        finally:
            self.questions.give(qid)

    def ask(self, question: str, context: str, **fields: str) -> Answer:
        """Synchronous :meth:`aask`."""
        return asyncio.run(self.aask(question, context, **fields))

    async def aclose(self) -> None:
        if self.backend is not None:
            await self.backend.aclose()
