"""The OpenAI chat-completions wire format: requests read, answers and stream chunks written."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from iapo.deploy import Answer

__all__ = [
    "ApiError",
    "ChatRequest",
    "completion",
    "completion_chunks",
    "error_body",
    "parse_chat",
    "split_text",
]

#: Roles whose messages carry instructions from the caller.
SYSTEM_ROLES = ("system", "developer")
KNOWN_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class ApiError(Exception):
    """An error answered in the OpenAI shape: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        *,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.kind, code=self.code, param=self.param)


def error_body(
    message: str, kind: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass(frozen=True)
class ChatRequest:
    """What a chat-completions request asks of the policy."""

    context: str
    question: str
    stream: bool
    include_usage: bool


def _bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


def _text(content: Any, where: str) -> str:
    """A message's content as text: a string, or the ``text`` parts of a list joined by newlines
    (as vLLM does); any other part (an image, audio, a file) is refused."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"{where} must be a string or a list of content parts", where)
    texts = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise _bad(f"{at} must be an object with a 'type'", at)
        kind = part.get("type")
        if kind != "text":
            raise _bad(
                f"{at} is of type {kind!r}: this server answers text only (type 'text')",
                f"{at}.type",
            )
        text = part.get("text")
        if not isinstance(text, str):
            raise _bad(f"{at}.text must be a string", f"{at}.text")
        texts.append(text)
    return "\n".join(texts)


def parse_chat(raw: bytes, contexts: Collection[str]) -> ChatRequest:
    """Read a ``POST /v1/chat/completions`` body.

    The question is the last user message; the request's system (and developer) messages are
    instructions from the caller, put before it, in order, separated by blank lines (the arm's
    own prompt, with its system message, stays what the policy learned). Earlier turns and the
    sampling parameters (``temperature``, ``max_tokens``, …) are not used: the arm's
    distribution is the one the policy was learned on. ``n`` other than 1 is refused (the arm
    fixes how many completions are drawn; one aggregated answer comes back).
    """
    try:
        req = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"the body is not valid JSON ({exc})") from None
    if not isinstance(req, dict):
        raise _bad("the body must be a JSON object")
    context = req.get("model")
    if not isinstance(context, str) or not context:
        raise _bad("'model' must name a context (GET /v1/models lists them)", "model")
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list", "messages")
    system: list[str] = []
    question: str | None = None
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise _bad(f"{where} must be an object with a 'role'", where)
        role = m["role"]
        if role not in KNOWN_ROLES:
            raise _bad(f"{where}.role {role!r} is not a chat role", f"{where}.role")
        if role in SYSTEM_ROLES:
            system.append(_text(m.get("content"), f"{where}.content"))
        elif role == "user":
            question = _text(m.get("content"), f"{where}.content")
    if question is None:
        raise _bad("'messages' has no user message: it holds the question", "messages")
    n = req.get("n")
    if n is not None and n != 1:
        raise _bad(
            "'n' must be 1: the context's arm fixes how many completions are drawn, and one "
            "aggregated answer comes back",
            "n",
        )
    stream = req.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("'stream' must be true or false", "stream")
    options = req.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _bad("'stream_options' must be an object", "stream_options")
    include_usage = bool(options and options.get("include_usage"))
    if context not in contexts:
        raise ApiError(
            404,
            f"unknown context {context!r}: use one of {', '.join(contexts)}",
            code="model_not_found",
            param="model",
        )
    text = "\n\n".join([*(s for s in system if s), question])
    return ChatRequest(context, text, bool(stream), include_usage)


def _usage(ans: Answer) -> dict[str, int]:
    prompt_t = int(ans.usage.get("prompt_tokens", 0))
    completion_t = int(ans.usage.get("completion_tokens", 0))
    return {
        "prompt_tokens": prompt_t,
        "completion_tokens": completion_t,
        "total_tokens": prompt_t + completion_t,
    }


def _extra(ans: Answer) -> dict[str, Any]:
    """What the policy did, beside the OpenAI fields (the SDK keeps it in ``model_extra``):
    the arm, its N (an adaptive arm's N_max), the completions drawn (``samples_drawn``: N for a
    fixed arm, what the rule stopped at for an adaptive one, whose ``adaptive`` scheme is
    named), the voted answer and the summed cost."""
    out: dict[str, Any] = {"arm": str(ans.arm), "n": ans.arm.n}
    if ans.arm.adaptive:
        out["adaptive"] = ans.scheme or ans.arm.adaptive
    out.update(samples_drawn=ans.samples_drawn, answer=ans.answer, cost=ans.cost)
    return out


def completion(ans: Answer, ident: str, created: int) -> dict[str, Any]:
    """The ``chat.completion`` object of an answer: one choice, usage summed over every
    completion drawn (N, or as many as an adaptive arm's rule drew)."""
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": ans.context,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ans.text or ""},
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(ans),
        "iapo": _extra(ans),
    }


_PIECE = re.compile(r"\s*\S+|\s+$")


def split_text(text: str) -> list[str]:
    """``text`` cut into word-sized pieces (each word with the white space before it) that join
    back to exactly ``text``."""
    return _PIECE.findall(text)


def completion_chunks(
    ans: Answer, ident: str, created: int, *, include_usage: bool
) -> Iterator[Mapping[str, Any]]:
    """The ``chat.completion.chunk`` objects that stream an answer: the role, the text piece by
    piece, an empty delta with ``finish_reason``; with ``include_usage`` every chunk carries
    ``usage: null`` and one more chunk, with no choices, carries the usage (as the OpenAI API
    does)."""
    base: dict[str, Any] = {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": ans.context,
    }
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice]}

    yield chunk({"role": "assistant", "content": ""})
    for piece in split_text(ans.text or ""):
        yield chunk({"content": piece})
    yield {**chunk({}, "stop"), "iapo": _extra(ans)}
    if include_usage:
        yield {**base, "choices": [], "usage": _usage(ans)}
