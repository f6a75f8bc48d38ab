"""Use a learned policy in production: sample the chosen arm's completions and aggregate them.

A fixed arm (prompt, N) draws its N completions at once. An adaptive arm (issue #15, majority
vote only: ``adaptive`` = ``"<rule>/b<batch>"`` in the policy entry) draws them a batch at a
time (one request with native ``n`` = the batch where the endpoint supports it) until its
stopping rule (:class:`iapo.adaptive.AdaptiveScheme`) says stop, at the latest at N, and votes
over every completion drawn.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iapo.adaptive import AdaptiveScheme, parse_scheme
from iapo.backends import Backend
from iapo.config import parse_config
from iapo.errors import ConfigError, InputError
from iapo.result import RunResult
from iapo.sampling import CachedSampler
from iapo.setups import setup
from iapo.strategies import Strategy, get_strategy
from iapo.types import Arm, Context, Query, Sample

__all__ = ["DEFAULT_MAX_QUESTIONS", "Answer", "Policy", "arm_of", "draw_adaptive", "scheme_of"]

#: How many distinct ad-hoc questions a policy keeps registered with its backend at once.
DEFAULT_MAX_QUESTIONS = 1024


@dataclass(frozen=True)
class Answer:
    """The aggregated answer to one question, with every sample drawn and the summed cost.

    ``scheme``: the adaptive scheme's id (``decided/b2/n10``) for an adaptive arm, else ``""``;
    :attr:`samples_drawn` says how many completions were drawn (N for a fixed arm)."""

    context: str
    arm: Arm
    answer: str | None
    text: str | None
    samples: tuple[Sample, ...]
    cost: float
    usage: Mapping[str, int]
    scheme: str = ""

    @property
    def samples_drawn(self) -> int:
        return len(self.samples)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "context": self.context,
            "prompt": self.arm.prompt,
            "n": self.arm.n,
        }
        if self.arm.adaptive:
            out.update(adaptive=self.arm.adaptive, scheme=self.scheme)
        return {
            **out,
            "samples_drawn": self.samples_drawn,
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


def arm_of(entry: Mapping[str, Any]) -> Arm:
    """The arm of a result's policy entry (``adaptive`` absent or empty: a fixed arm)."""
    adaptive = entry.get("adaptive") or ""
    if not isinstance(adaptive, str):
        raise TypeError(f"'adaptive' must be a string like 'decided/b2', got {adaptive!r}")
    return Arm(str(entry["prompt"]), int(entry["n"]), adaptive)


def scheme_of(arm: Arm) -> AdaptiveScheme | None:
    """The adaptive scheme of ``arm`` (None for a fixed arm); ValueError if malformed."""
    return parse_scheme(f"{arm.adaptive}/n{arm.n}") if arm.adaptive else None


async def draw_adaptive(
    sampler: CachedSampler, prompt: str, query: str, scheme: AdaptiveScheme
) -> list[Sample]:
    """Completions of (prompt, query) drawn ``scheme.batch`` at a time (one request with
    native ``n`` where the backend supports it) until ``scheme`` stops, at the latest at
    ``scheme.n_max``; the rule sees the answers (None: abstained) after each batch."""
    drawn: list[Sample] = []
    while k := scheme.next_batch(len(drawn)):
        batch, _ = await sampler.draw(prompt, query, range(len(drawn), len(drawn) + k))
        drawn += batch
        if scheme.should_stop([s.answer for s in drawn]):
            break
    return drawn


class Policy:
    """A learned context → arm map bound to a live backend (an arm: (prompt, N), or an
    adaptive majority-vote arm that draws up to N a batch at a time until its rule stops).

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
        self.arms = {c: arm_of(v) for c, v in result.policy.items()}
        self.schemes = {c: scheme_of(a) for c, a in self.arms.items()}
        if any(self.schemes.values()) and strategy.name != "majority_vote":
            raise ValueError(f"adaptive arms need majority voting, not {strategy.name}")
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
        """Sample the context's arm on ``question`` and aggregate: N completions at once for a
        fixed arm, batches until the rule stops for an adaptive one."""
        arm = self.arm(context)
        scheme = self.schemes[context]
        if self.backend is None:
            raise ConfigError(
                "this policy was learned by replaying a recorded pool: give a live backend "
                "(Policy.load(result, backend=...))",
                field="backend",
            )
        async with self._registered(question, fields) as qid:
            # fresh samples every time: a deployed policy answers, it does not replay the bank
            sampler = CachedSampler(self.backend, None)
            if scheme is None:
                drawn, _ = await sampler.draw(arm.prompt, qid, range(arm.n))
            else:
                drawn = await draw_adaptive(sampler, arm.prompt, qid, scheme)
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
            scheme.id if scheme is not None else "",
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
