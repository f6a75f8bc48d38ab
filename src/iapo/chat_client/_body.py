"""A chat-completion response body: its completions, the token accounting of its ``usage`` and
what was wrong with it (see the package doc for the rules)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ANOMALY_KINDS",
    "ANOMALY_TEXT",
    "Completion",
    "Usage",
    "max_tokens_of",
    "parse_body",
    "prompt_token_bound",
    "server_message",
    "settle",
    "split_proportional",
]

#: What an endpoint can do wrong and still be used, as counted in ``OpenAIChatClient.anomalies``:
#: a ``usage`` block or count missing; a count negative or not an integer; completion tokens
#: above the request's worst case (``n × max_tokens``); more choices than asked (counted per
#: surplus choice).
ANOMALY_KINDS = ("usage_missing", "usage_invalid", "usage_above_max", "extra_choices")


@dataclass(frozen=True)
class Completion:
    """One completion. ``prompt_tokens`` / ``completion_tokens``: its share of the usage the
    endpoint reported, ``None`` where it reported none or an unusable value (see
    :mod:`iapo.chat_client` on tokens). ``prompt_bound`` / ``completion_bound``: what an
    unreported share is costed at (the request's worst case), ``None`` if unbounded."""

    text: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    prompt_bound: int | None = None
    completion_bound: int | None = None

    @property
    def billed_prompt_tokens(self) -> int:
        """The prompt tokens to cost: as reported, else the worst case, else 0."""
        if self.prompt_tokens is not None:
            return self.prompt_tokens
        return self.prompt_bound or 0

    @property
    def billed_completion_tokens(self) -> int:
        """The completion tokens to cost: as reported (even above ``max_tokens``: what the
        endpoint bills), else the worst case (``max_tokens``), else 0."""
        if self.completion_tokens is not None:
            return self.completion_tokens
        return self.completion_bound or 0


@dataclass(frozen=True)
class Usage:
    """A response's ``usage``: each count as reported if it is a non-negative integer, else
    ``None``; ``problem`` names what was wrong with it (an :data:`ANOMALY_KINDS` entry)."""

    prompt: int | None
    completion: int | None
    problem: str | None = None


def _split_even(total: int, k: int) -> list[int]:
    base, extra = divmod(total, k)
    return [base + (1 if i < extra else 0) for i in range(k)]


def split_proportional(total: int, weights: Sequence[int]) -> list[int]:
    """Whole shares of ``total`` proportional to ``weights`` (largest remainder; sum exact)."""
    w = sum(weights)
    if w <= 0:
        return _split_even(total, len(weights))
    quotas = [total * x / w for x in weights]
    shares = [math.floor(q) for q in quotas]
    left = total - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - shares[i]), i))
    for i in order[:left]:
        shares[i] += 1
    return shares


def _count(usage: dict[str, object], name: str) -> tuple[int | None, str | None]:
    value = usage.get(name)
    if value is None:
        return None, "usage_missing"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value, None
    return None, "usage_invalid"


def read_usage(data: dict[str, object]) -> Usage:
    """The ``usage`` of a response body (see :class:`Usage`)."""
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return Usage(None, None, "usage_missing")
    prompt, p_problem = _count(usage, "prompt_tokens")
    completion, c_problem = _count(usage, "completion_tokens")
    problems = {p_problem, c_problem}
    problem = next((k for k in ("usage_invalid", "usage_missing") if k in problems), None)
    return Usage(prompt, completion, problem)


def parse_body(body: bytes) -> tuple[list[tuple[str | None, str | None]], Usage]:
    """The choices of a chat-completion body as (text, finish reason) in index order, and its
    usage; ``ValueError`` if the body is unusable."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("body is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ValueError("no choices in the body")
    parsed: list[tuple[int, str | None, str | None]] = []
    for pos, ch in enumerate(choices):
        if not isinstance(ch, dict) or not isinstance(ch.get("message"), dict):
            raise ValueError("a choice has no message")
        content = ch["message"].get("content")
        if content is not None and not isinstance(content, str):
            raise ValueError("a choice's content is not text")
        finish = ch.get("finish_reason")
        index = ch.get("index")
        parsed.append(
            (
                index if isinstance(index, int) and not isinstance(index, bool) else pos,
                content,
                finish if isinstance(finish, str) else None,
            )
        )
    parsed.sort(key=lambda t: t[0])
    return [(t[1], t[2]) for t in parsed], read_usage(data)


def prompt_token_bound(messages: Sequence[dict[str, str]]) -> int:
    """A bound on a request's prompt tokens: one per character of the messages plus 16 per
    message (the chat template); the same bound the cost cap reserves."""
    return sum(len(m.get("content") or "") + 16 for m in messages)


def settle(
    choices: Sequence[tuple[str | None, str | None]],
    usage: Usage,
    n: int,
    *,
    max_tokens: int | None,
    prompt_bound: int | None,
) -> tuple[list[Completion], Counter[str]]:
    """The completions kept from a response to a request for ``n`` choices, and the anomalies it
    showed. The first ``n`` choices (by index) are kept; the request's whole reported usage is
    shared over them (so nothing billed vanishes with a dropped choice); a count the endpoint did
    not report usably is costed at the request's worst case instead (``max_tokens`` per choice,
    ``prompt_bound`` per request)."""
    anomalies: Counter[str] = Counter()
    kept = list(choices[:n])
    if len(choices) > len(kept):
        anomalies["extra_choices"] += len(choices) - len(kept)
    if usage.problem is not None:
        anomalies[usage.problem] += 1
    if (
        max_tokens is not None
        and usage.completion is not None
        and usage.completion > n * max_tokens
    ):
        anomalies["usage_above_max"] += 1
    k = len(kept)
    p_shares: list[int | None] = (
        list(_split_even(usage.prompt, k)) if usage.prompt is not None else [None] * k
    )
    if usage.completion is None:
        c_shares: list[int | None] = [None] * k
    elif k == 1:
        c_shares = [usage.completion]
    else:
        c_shares = list(split_proportional(usage.completion, [len(t[0] or "") for t in kept]))
    p_bounds: list[int | None] = (
        list(_split_even(prompt_bound, k)) if prompt_bound is not None else [None] * k
    )
    out = [
        Completion(
            text=text,
            finish_reason=finish,
            prompt_tokens=p,
            completion_tokens=c,
            prompt_bound=pb,
            completion_bound=max_tokens,
        )
        for (text, finish), p, c, pb in zip(kept, p_shares, c_shares, p_bounds, strict=True)
    ]
    return out, anomalies


def server_message(body: object, fallback: str) -> str:
    """The message of an error body (``{"error": {"message": …}}`` and its variants)."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            msg = inner.get("message")
            if isinstance(msg, str) and msg:
                return msg
        elif isinstance(inner, str) and inner:
            return inner
    if isinstance(body, str) and body:
        return body
    return fallback


#: How each anomaly kind is described in the client's first warning about it.
ANOMALY_TEXT = {
    "usage_missing": "a response without usage: costed at the request's worst case",
    "usage_invalid": "a negative or non-numeric usage count: costed at the request's worst case",
    "usage_above_max": "usage above the request's worst case (n × max_tokens): counted as reported",
    "extra_choices": "more choices than n: the first n are kept, the usage of all is counted",
}


def max_tokens_of(params: Mapping[str, Any]) -> int | None:
    """The request's per-choice bound on completion tokens, if it sets one."""
    value = params.get("max_tokens", params.get("max_completion_tokens"))
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None
