"""A chat-completion response body: its completions and the token accounting of its ``usage``
(see the package doc for how a response's tokens are shared over its choices)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Completion", "parse_body", "split_proportional"]


@dataclass(frozen=True)
class Completion:
    """One completion. ``None`` fields: the endpoint did not say (see :mod:`iapo.chat_client`
    on tokens)."""

    text: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None


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


def _nonneg_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def parse_body(body: bytes) -> tuple[list[Completion], int | None, int | None]:
    """The choices of a chat-completion body and its usage; ``ValueError`` if unusable."""
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
                index if isinstance(index, int) else pos,
                content,
                finish if isinstance(finish, str) else None,
            )
        )
    parsed.sort(key=lambda t: t[0])
    usage = data.get("usage")
    prompt = completion = None
    if isinstance(usage, dict):
        prompt = _nonneg_int(usage.get("prompt_tokens"))
        completion = _nonneg_int(usage.get("completion_tokens"))
    k = len(parsed)
    p_shares: list[int | None] = list(_split_even(prompt, k)) if prompt is not None else [None] * k
    if completion is None:
        c_shares: list[int | None] = [None] * k
    elif k == 1:
        c_shares = [completion]
    else:
        c_shares = list(split_proportional(completion, [len(t[1] or "") for t in parsed]))
    out = [
        Completion(text=t[1], finish_reason=t[2], prompt_tokens=p, completion_tokens=c)
        for t, p, c in zip(parsed, p_shares, c_shares, strict=True)
    ]
    return out, prompt, completion
