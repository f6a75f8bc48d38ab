"""The ``judge`` scorer: an LLM's rating of each completion against a rubric."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from iapo.aio import gather_or_cancel
from iapo.chat_client import OpenAIChatClient
from iapo.types import Query

__all__ = ["JudgeScorer", "judge"]


_JUDGE_SYSTEM = "You are a careful, impartial grader. Follow the rubric exactly."
_JUDGE_USER = (
    "Question:\n{question}\n\nAnswer to grade:\n{answer}\n\nRubric:\n{rubric}\n\n"
    "Rate the answer on a scale from {lo} to {hi} ({hi} is best). "
    "End your reply with a line 'Rating: <number>'."
)
_NUM = re.compile(r"[-+]?\d+(?:\.\d+)?")
_RATING = re.compile(r"(?i)\b(?:rating|score)\s*[:=]?\s*\**\s*([-+]?\d+(?:\.\d+)?)")


def _short_hash(payload: object) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class JudgeScorer:
    """An LLM's rating of each completion against ``rubric``, mapped from ``scale`` to [0, 1].

    One request per completion (concurrent, bounded by the client's semaphore) with the question,
    the answer and the rubric. The rating is the number after the last "Rating:"/"Score:" if it
    is in range, else the first number in range in the reply. A reply with none (or no reply)
    scores 0.0 and is counted in ``unparsed``; ``judged`` counts replies. Endpoint errors are the
    client's (:class:`~iapo.errors.PermanentBackendError` for a wrong key, model or URL).
    The id covers the judge model, the rubric (hashed), the scale, the params and the prompt
    version. A judge is a model's opinion: it favours long, confident answers.
    """

    def __init__(
        self,
        client: OpenAIChatClient,
        rubric: str,
        *,
        scale: tuple[float, float] = (1, 10),
        params: Mapping[str, Any] | None = None,
    ) -> None:
        lo, hi = float(scale[0]), float(scale[1])
        if not hi > lo:
            raise ValueError(f"judge scale must be (low, high) with low < high, got {scale!r}")
        if not rubric.strip():
            raise ValueError("judge rubric is empty")
        self.client = client
        self.rubric = rubric
        self.scale = (lo, hi)
        self.params = dict(params if params is not None else {"temperature": 0.0})
        self.judged = 0
        self.unparsed = 0
        self.id = (
            f"judge:{client.model}:rubric={_short_hash(rubric)}:scale={lo:g}-{hi:g}"
            f":params={_short_hash(self.params)}@1"
        )

    def __repr__(self) -> str:
        return f"JudgeScorer({self.id!r})"

    def parse(self, reply: str | None) -> float | None:
        """The rating in ``reply`` mapped to [0, 1], or ``None``."""
        if not reply:
            return None
        lo, hi = self.scale
        tagged = [float(m.group(1)) for m in _RATING.finditer(reply)]
        candidates = [*tagged[::-1], *(float(m.group(0)) for m in _NUM.finditer(reply))]
        for x in candidates:
            if lo <= x <= hi:
                return (x - lo) / (hi - lo)
        return None

    async def _one(self, text: str, query: Query) -> float:
        lo, hi = self.scale
        user = _JUDGE_USER.format(
            question=query.text, answer=text, rubric=self.rubric, lo=f"{lo:g}", hi=f"{hi:g}"
        )
        messages = [{"role": "system", "content": _JUDGE_SYSTEM}, {"role": "user", "content": user}]
        (reply,) = await self.client.complete(messages, 1, self.params)
        self.judged += 1
        value = self.parse(reply.text)
        if value is None:
            self.unparsed += 1
            return 0.0
        return value

    async def score(self, texts: Sequence[str], query: Query) -> list[float]:
        return await gather_or_cancel(self._one(t, query) for t in texts)

    async def aclose(self) -> None:
        """Close the judge client's connections."""
        await self.client.aclose()


def judge(
    client: OpenAIChatClient,
    rubric: str,
    *,
    scale: tuple[float, float] = (1, 10),
    params: Mapping[str, Any] | None = None,
) -> JudgeScorer:
    """An LLM judge through any OpenAI-compatible endpoint (see :class:`JudgeScorer`)."""
    return JudgeScorer(client, rubric, scale=scale, params=params)
