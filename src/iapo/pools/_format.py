"""The pool file: JSONL, an optional header line, then one line per (prompt, query) cell.

Header (optional, first line)::

    {"iapo_pool": 1, "objectives": ["helpful"], "cost_unit": "output_tokens",
     "meta": {"source": "...", "license": "...", "description": "..."}}

Without it the reader infers the objectives (the score names, else ``accuracy``), the cost unit
(``unit``) and the form, warns in one line on stderr and says so in ``meta["description"]``;
a first line that names ``iapo_pool`` but is not a valid header is an error.

Full form (one outcome per recorded sample)::

    {"prompt": "cot", "query": "aqua-155", "gold": "C",
     "samples": [{"answer": "C", "scores": {"helpful": 0.71}, "cost": 153, "text": "..."}]}

Compact form (answers only, exchangeable samples; ``abstain`` counts samples without an answer)::

    {"prompt": "p07", "query": "math-0412", "gold": "2",
     "answer_counts": {"2": 97, "3": 31}, "abstain": 5, "cost": 0.0071}

Every problem is reported as one :class:`~iapo.errors.PoolError` line
``file:line: field: what is wrong (got …) and how to fix it``.

This module holds the pydantic models of one line and the rendering of their validation errors;
:mod:`iapo.pools._load` reads a file, :mod:`iapo.pools._dump` writes one.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from iapo.errors import PoolError

__all__ = [
    "POOL_SCHEMA",
    "CellLine",
    "HeaderLine",
    "available",
    "pool_error_from",
    "show",
]

POOL_SCHEMA = 1
"""The pool file schema version this iapo reads and writes (the header's ``iapo_pool``)."""

# --------------------------------------------------------------------------------------------
# pydantic models of one line
# --------------------------------------------------------------------------------------------

_Name = Annotated[str, Field(min_length=1)]
#: Bounds on every number of a pool, far beyond real recordings, so that no sum, product or
#: square the engine forms can overflow to infinity and every count is exact as a float.
MAX_COST = 1e9
MAX_ABS_SCORE = 1e9
MAX_COUNT = 10**12

_Cost = Annotated[float, Field(ge=0, le=MAX_COST, allow_inf_nan=False)]
_Score = Annotated[float, Field(ge=-MAX_ABS_SCORE, le=MAX_ABS_SCORE, allow_inf_nan=False)]
_Count = Annotated[int, Field(gt=0, le=MAX_COUNT)]
_NonNegInt = Annotated[int, Field(ge=0, le=MAX_COUNT)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _SampleLine(_Strict):
    answer: str | None = None
    scores: dict[str, _Score] = Field(default_factory=dict)
    cost: _Cost = 0.0
    text: str | None = None
    usage: dict[str, _NonNegInt] = Field(default_factory=dict)


class CellLine(_Strict):
    prompt: _Name
    query: _Name
    gold: str | None = None
    samples: Annotated[list[_SampleLine], Field(min_length=1)] | None = None
    answer_counts: dict[str, _Count] | None = None
    abstain: _NonNegInt | None = None
    cost: _Cost | None = None


class HeaderLine(_Strict):
    iapo_pool: int
    objectives: Annotated[list[_Name], Field(min_length=1)] | None = None
    cost_unit: _Name | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


_SAMPLE_FIELDS = tuple(_SampleLine.model_fields)
_CELL_FIELDS = tuple(CellLine.model_fields)
_HEADER_FIELDS = tuple(HeaderLine.model_fields)
_DICT_FIELDS = frozenset({"scores", "usage", "answer_counts", "meta"})

# What each field must be: the "fix" half of an error message. Keys are field names, or
# "name[]" for the values of a mapping / items of a list.
_RULES: dict[str, str] = {
    "prompt": "a non-empty string (the prompt id)",
    "query": "a non-empty string (the query id)",
    "gold": "a string or null (the reference answer)",
    "samples": 'a non-empty list of sample objects like {"answer": "C", "cost": 153}',
    "samples[]": 'a sample object like {"answer": "C", "scores": {"x": 0.7}, "cost": 153}',
    "answer": "a string or null (null = no answer, an abstention)",
    "scores": "an object mapping objective names to finite numbers",
    "scores[]": "a finite number",
    "cost": "a number ≥ 0",
    "text": "a string or null",
    "usage": "an object mapping token kinds to integers ≥ 0",
    "usage[]": "an integer ≥ 0",
    "answer_counts": 'an object mapping answers to counts, e.g. {"2": 97, "3": 31}',
    "answer_counts[]": "an integer count ≥ 1 (leave out answers that never occur)",
    "abstain": "an integer ≥ 0 (the number of samples without an answer)",
    "iapo_pool": f"the integer schema version {POOL_SCHEMA}",
    "objectives": 'a non-empty list of objective names, e.g. ["helpful"]',
    "objectives[]": "a non-empty string",
    "cost_unit": 'a non-empty string, e.g. "output_tokens"',
    "meta": "an object (source, license, description, …)",
}


def show(value: Any, limit: int = 40) -> str:
    """A short one-line rendering of a JSON value for an error message."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    text = text.replace("\n", "\\n").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field_path(loc: Sequence[int | str]) -> tuple[str, str | None]:
    """``('samples', 3, 'scores', 'x')`` → ``('samples[3].scores["x"]', 'scores[]')``.

    The second item is the key of the field's rule in ``_RULES``.
    """
    path = ""
    rule: str | None = None
    parent: str | None = None
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            rule = f"{parent}[]" if parent else None
        elif parent in _DICT_FIELDS and rule == parent:
            path += f"[{json.dumps(part, ensure_ascii=False)}]"
            rule = f"{parent}[]"
        else:
            path += f".{part}" if path else part
            parent, rule = part, part
    return path, rule


def _allowed_fields(loc: Sequence[int | str], header: bool) -> tuple[str, ...]:
    if header:
        return _HEADER_FIELDS
    return _SAMPLE_FIELDS if len(loc) >= 3 and loc[0] == "samples" else _CELL_FIELDS


def _error_message(err: ErrorDetails, *, header: bool) -> tuple[str | None, str]:
    """(field path, message with the fix) for one pydantic error."""
    kind = err["type"]
    loc = err["loc"]
    ctx = err.get("ctx") or {}
    if kind == "json_invalid" and "recursion limit" in str(ctx.get("error", "")):
        return None, "JSON nested too deeply (the limit is about 200 levels); flatten the line"
    if kind == "json_invalid":
        return (
            None,
            f"invalid JSON ({ctx.get('error', err['msg'])}); write one JSON object per line",
        )
    if not loc:
        what = "the header" if header else "each line"
        return None, f"{what} must be a JSON object (got {show(err['input'])})"
    path, rule_key = _field_path(loc)
    rule = _RULES.get(rule_key or "")
    if kind == "missing":
        return path, f"required field is missing; add it: {rule}" if rule else "missing"
    if kind == "extra_forbidden":
        name = str(loc[-1])
        if name == "iapo_pool" and not header:
            return path, "a header line is only allowed as the first line of the file"
        allowed = _allowed_fields(loc, header)
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f'a typo of "{close[0]}"?' if close else "a typo?"
        return path, f"unknown field ({hint}); the fields allowed here are: {', '.join(allowed)}"
    bound = ctx.get("le", ctx.get("ge"))
    if kind == "less_than_equal" or (
        kind == "greater_than_equal" and bound is not None and bound < 0
    ):
        side = "≤" if kind == "less_than_equal" else "≥"
        return path, (
            f"is out of range: must be {side} {bound:g} (got {show(err['input'])}); numbers in a "
            "pool are bounded so that no sum can overflow: check the value"
        )
    if kind == "too_short" and rule_key == "samples":
        return path, f"is empty; it must be {rule}"
    if rule:
        return path, f"must be {rule} (got {show(err['input'])})"
    return path, f"{err['msg'][0].lower()}{err['msg'][1:]} (got {show(err['input'])})"


def _first_error(errors: Sequence[ErrorDetails]) -> ErrorDetails:
    """The most telling error: a stray header first, then unknown fields (typos), then the rest."""

    def rank(err: ErrorDetails) -> int:
        if err["type"] == "extra_forbidden":
            return 0 if err["loc"] and err["loc"][-1] == "iapo_pool" else 1
        return 2

    return min(errors, key=rank)


def pool_error_from(exc: ValidationError, source: str, *, header: bool = False) -> PoolError:
    """One :class:`PoolError` for a line's validation errors: the most telling one, with a count
    of the others."""
    errors = exc.errors(include_url=False)
    field, message = _error_message(_first_error(errors), header=header)
    if len(errors) > 1:
        more = len(errors) - 1
        message += f" (and {more} more problem{'s' if more > 1 else ''} on this line)"
    return PoolError(message, source=source, field=field)


def available(values: Iterable[Any]) -> str:
    """The distinct ``values``, sorted, as ``"a, b, c"`` (``"none"`` if there are none)."""
    vals = sorted(set(values), key=lambda v: (isinstance(v, str), v))
    return ", ".join(str(v) for v in vals) or "none"
