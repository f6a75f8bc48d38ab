"""The pool file: JSONL, an optional header line, then one line per (prompt, query) cell.

Header (optional, first line)::

    {"iapo_pool": 1, "objectives": ["helpful"], "cost_unit": "output_tokens",
     "meta": {"source": "...", "license": "...", "description": "..."}}

Full form (one outcome per recorded sample)::

    {"prompt": "cot", "query": "aqua-155", "gold": "C",
     "samples": [{"answer": "C", "scores": {"helpful": 0.71}, "cost": 153, "text": "..."}]}

Compact form (answers only, exchangeable samples; ``abstain`` counts samples without an answer)::

    {"prompt": "p07", "query": "math-0412", "gold": "2",
     "answer_counts": {"2": 97, "3": 31}, "abstain": 5, "cost": 0.0071}

Every problem is reported as one :class:`~iapo.errors.PoolError` line
``file:line: field: what is wrong (got …) and how to fix it``.
"""

from __future__ import annotations

import difflib
import gc
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from iapo.errors import PoolError
from iapo.pools._model import Cell, Pool
from iapo.types import Sample

__all__ = ["POOL_SCHEMA", "dump_pool", "load_pool"]

POOL_SCHEMA = 1
"""The pool file schema version this iapo reads and writes (the header's ``iapo_pool``)."""

ACCURACY = "accuracy"
"""The majority-vote objective; computed from answers and gold, never stored as a score."""

# --------------------------------------------------------------------------------------------
# pydantic models of one line
# --------------------------------------------------------------------------------------------

_Name = Annotated[str, Field(min_length=1)]
_Cost = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Score = Annotated[float, Field(allow_inf_nan=False)]
_Count = Annotated[int, Field(gt=0)]
_NonNegInt = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _SampleLine(_Strict):
    answer: str | None = None
    scores: dict[str, _Score] = Field(default_factory=dict)
    cost: _Cost = 0.0
    text: str | None = None
    usage: dict[str, _NonNegInt] = Field(default_factory=dict)


class _CellLine(_Strict):
    prompt: _Name
    query: _Name
    gold: str | None = None
    samples: Annotated[list[_SampleLine], Field(min_length=1)] | None = None
    answer_counts: dict[str, _Count] | None = None
    abstain: _NonNegInt | None = None
    cost: _Cost | None = None


class _HeaderLine(_Strict):
    iapo_pool: int
    objectives: Annotated[list[_Name], Field(min_length=1)] | None = None
    cost_unit: _Name | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


_SAMPLE_FIELDS = tuple(_SampleLine.model_fields)
_CELL_FIELDS = tuple(_CellLine.model_fields)
_HEADER_FIELDS = tuple(_HeaderLine.model_fields)
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


def _show(value: Any, limit: int = 40) -> str:
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
    if kind == "json_invalid":
        return (
            None,
            f"invalid JSON ({ctx.get('error', err['msg'])}); write one JSON object per line",
        )
    if not loc:
        what = "the header" if header else "each line"
        return None, f"{what} must be a JSON object (got {_show(err['input'])})"
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
    if kind == "too_short" and rule_key == "samples":
        return path, f"is empty; it must be {rule}"
    if rule:
        return path, f"must be {rule} (got {_show(err['input'])})"
    return path, f"{err['msg'][0].lower()}{err['msg'][1:]} (got {_show(err['input'])})"


def _first_error(errors: Sequence[ErrorDetails]) -> ErrorDetails:
    """The most telling error: a stray header first, then unknown fields (typos), then the rest."""

    def rank(err: ErrorDetails) -> int:
        if err["type"] == "extra_forbidden":
            return 0 if err["loc"] and err["loc"][-1] == "iapo_pool" else 1
        return 2

    return min(errors, key=rank)


def _pool_error_from(exc: ValidationError, source: str, *, header: bool = False) -> PoolError:
    errors = exc.errors(include_url=False)
    field, message = _error_message(_first_error(errors), header=header)
    if len(errors) > 1:
        more = len(errors) - 1
        message += f" (and {more} more problem{'s' if more > 1 else ''} on this line)"
    return PoolError(message, source=source, field=field)


# --------------------------------------------------------------------------------------------
# building cells
# --------------------------------------------------------------------------------------------


def compact_cell(
    prompt: str,
    query: str,
    gold: str | None,
    answer_counts: Mapping[str, int],
    abstain: int,
    cost: float,
) -> Cell:
    """A compact-form cell: one outcome per answer (weight = count), abstentions last."""
    outcomes = [Sample(answer, {}, cost) for answer in answer_counts]
    weights = [float(n) for n in answer_counts.values()]
    if abstain > 0:
        outcomes.append(Sample(None, {}, cost))
        weights.append(float(abstain))
    return Cell(prompt, query, gold, tuple(outcomes), np.asarray(weights, dtype=np.float64))


def full_cell(prompt: str, query: str, gold: str | None, samples: Sequence[Sample]) -> Cell:
    """A full-form cell: one outcome per recorded sample, each with weight 1."""
    return Cell(prompt, query, gold, tuple(samples), np.ones(len(samples), dtype=np.float64))


def pool_from_cells(
    cells: Iterable[Cell],
    *,
    objectives: Sequence[str] | None = None,
    cost_unit: str = "unit",
    meta: Mapping[str, Any] | None = None,
) -> Pool:
    """A Pool over the prompts and queries of ``cells`` in first-appearance order.

    The caller guarantees a complete grid without duplicates. ``objectives`` defaults to the sorted
    union of score names, else ``("accuracy",)``.
    """
    prompts: dict[str, None] = {}
    queries: dict[str, None] = {}
    by_key: dict[tuple[str, str], Cell] = {}
    names: set[str] = set()
    for cell in cells:
        prompts.setdefault(cell.prompt)
        queries.setdefault(cell.query)
        by_key[(cell.prompt, cell.query)] = cell
        if objectives is None:
            for o in cell.outcomes:
                names.update(o.scores)
    objs = tuple(objectives) if objectives is not None else (tuple(sorted(names)) or (ACCURACY,))
    return Pool(objs, tuple(prompts), tuple(queries), by_key, cost_unit, dict(meta or {}))


# --------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    line: int
    cell: _CellLine


def _read_lines(path: Path, source: str) -> list[str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PoolError("no such file; check the path", source=source) from None
    except IsADirectoryError:
        raise PoolError(
            "is a directory, not a pool file; give the .jsonl file", source=source
        ) from None
    except OSError as exc:
        raise PoolError(f"cannot read the file ({exc.strerror})", source=source) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PoolError(
            "is not UTF-8 text; save the pool as UTF-8 JSONL", source=f"{source}:{line}"
        ) from None
    # Split on "\n" only: str.splitlines() would also split on U+2028 etc. inside JSON strings.
    return text.split("\n")


def _parse_header(text: str, source: str) -> _HeaderLine | None:
    """The header on the first line, or None if that line is a cell."""
    if '"iapo_pool"' not in text:
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None  # reported with its line number by the cell parser
    if not isinstance(obj, dict) or "iapo_pool" not in obj:
        return None
    version = obj["iapo_pool"]
    if isinstance(version, int) and not isinstance(version, bool) and version != POOL_SCHEMA:
        raise PoolError(
            f"this file has pool schema version {version}, but this iapo reads version "
            f"{POOL_SCHEMA}; use an iapo that reads version {version}, or re-export the pool",
            source=source,
            field="iapo_pool",
        )
    try:
        header = _HeaderLine.model_validate(obj)
    except ValidationError as exc:
        raise _pool_error_from(exc, source, header=True) from None
    if header.objectives is not None:
        seen: set[str] = set()
        for i, name in enumerate(header.objectives):
            if name in seen:
                raise PoolError(
                    f"objective {name!r} is listed twice; list each objective once",
                    source=source,
                    field=f"objectives[{i}]",
                )
            seen.add(name)
    try:
        json.dumps(header.meta, allow_nan=False)
    except ValueError:
        raise PoolError(
            "must not hold NaN or infinite numbers", source=source, field="meta"
        ) from None
    return header


def _check_form(parsed: _CellLine, source: str) -> None:
    if parsed.samples is None and parsed.answer_counts is None:
        raise PoolError(
            'required field is missing: give "samples" (full form) or "answer_counts" '
            "(compact form)",
            source=source,
            field="samples",
        )
    if parsed.samples is not None:
        if parsed.answer_counts is not None:
            raise PoolError(
                'a cell has either "samples" (full form) or "answer_counts" (compact form), '
                "not both; keep one",
                source=source,
                field="answer_counts",
            )
        for name in ("cost", "abstain"):
            if getattr(parsed, name) is not None:
                where = 'put "cost" on each sample' if name == "cost" else 'use "answer": null'
                raise PoolError(
                    f'belongs to the compact form ("answer_counts"); in the full form {where}',
                    source=source,
                    field=name,
                )
    else:
        assert parsed.answer_counts is not None
        if not parsed.answer_counts and not parsed.abstain:
            raise PoolError(
                'holds no samples; give at least one count ≥ 1 (or "abstain" ≥ 1)',
                source=source,
                field="answer_counts",
            )


def _required_objectives(objectives: Iterable[str]) -> list[str]:
    return [o for o in objectives if o != ACCURACY]


def _check_objectives(
    parsed: Sequence[_Parsed], objectives: Sequence[str], why: str, source: str
) -> None:
    """Every sample of every cell must carry a score for each (non-accuracy) objective."""
    need = _required_objectives(objectives)
    if not need:
        return
    listed = ", ".join(need)
    for p in parsed:
        where = f"{source}:{p.line}"
        if p.cell.samples is None:
            raise PoolError(
                f"a compact cell has no scores, but {why} require {listed}; write this cell in "
                'the full form ("samples" with "scores")',
                source=where,
                field="answer_counts",
            )
        for i, s in enumerate(p.cell.samples):
            for o in need:
                if o not in s.scores:
                    raise PoolError(
                        f"no score for objective {o!r}, which {why} require; give every sample "
                        f"a score for each of: {listed}",
                        source=where,
                        field=f"samples[{i}].scores",
                    )


def load_pool(
    path: str | Path,
    *,
    require_gold: bool = False,
    objectives: Sequence[str] | None = None,
) -> Pool:
    """Read and validate a pool file (see the module docstring for the format).

    ``require_gold``: every query must have a gold answer (majority voting needs one).
    ``objectives``: every sample of every cell must carry a score for each of these (except
    ``accuracy``, which comes from answers and gold). Raises :class:`PoolError` with a one-line
    message naming the file, the line, the field and the fix.
    """
    # A large pool allocates many small objects that all survive; pausing the cyclic GC while they
    # are built more than halves the load time (30k full-form lines x 10 samples: ~6 s → ~2.5 s).
    paused = gc.isenabled()
    gc.disable()
    try:
        return _load_pool(Path(path), require_gold=require_gold, objectives=objectives)
    finally:
        if paused:
            gc.enable()


def _load_pool(path: Path, *, require_gold: bool, objectives: Sequence[str] | None) -> Pool:
    name = str(path)
    lines = _read_lines(path, name)

    header: _HeaderLine | None = None
    parsed: list[_Parsed] = []
    seen: dict[tuple[str, str], int] = {}
    gold_of: dict[str, tuple[str | None, str, int]] = {}
    first_content = True
    validate = _CellLine.model_validate_json
    for lineno, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        source = f"{name}:{lineno}"
        if first_content:
            first_content = False
            header = _parse_header(text, source)
            if header is not None:
                continue
        try:
            cell = validate(text)
        except ValidationError as exc:
            raise _pool_error_from(exc, source) from None
        _check_form(cell, source)
        key = (cell.prompt, cell.query)
        if key in seen:
            raise PoolError(
                f"duplicate cell (prompt {cell.prompt!r}, query {cell.query!r}), first given on "
                f"line {seen[key]}; keep one line per (prompt, query) and merge their samples",
                source=source,
                field="query",
            )
        seen[key] = lineno
        known = gold_of.get(cell.query)
        if known is None:
            gold_of[cell.query] = (cell.gold, cell.prompt, lineno)
        elif known[0] != cell.gold:
            raise PoolError(
                f"gold {_show(cell.gold)} differs from gold {_show(known[0])} given for the same "
                f"query {cell.query!r} with prompt {known[1]!r} on line {known[2]}; a query has "
                "one gold answer: give the same one on every line",
                source=source,
                field="gold",
            )
        parsed.append(_Parsed(lineno, cell))

    if not parsed:
        what = "holds only a header" if header is not None else "is empty"
        raise PoolError(
            f"no cells: the file {what}; add one line per (prompt, query) cell", source=name
        )

    prompts: dict[str, None] = {}
    queries: dict[str, None] = {}
    for p in parsed:
        prompts.setdefault(p.cell.prompt)
        queries.setdefault(p.cell.query)
    if len(parsed) != len(prompts) * len(queries):
        missing = len(prompts) * len(queries) - len(parsed)
        prompt, query = next((a, b) for a in prompts for b in queries if (a, b) not in seen)
        raise PoolError(
            f"incomplete grid: prompt {prompt!r} has no cell for query {query!r} ({missing} of "
            f"{len(prompts) * len(queries)} cells missing); every prompt needs a line for every "
            "query: add the missing cells or drop the query",
            source=name,
            field="query",
        )

    if require_gold:
        for query, (gold, _, lineno) in gold_of.items():
            if gold is None:
                raise PoolError(
                    f"query {query!r} has no gold answer, which majority voting needs; add "
                    '"gold" to its cells (or use a Best-of-N objective)',
                    source=f"{name}:{lineno}",
                    field="gold",
                )

    if header is not None and header.objectives is not None:
        _check_objectives(parsed, header.objectives, "the header's objectives", name)
    if objectives is not None:
        _check_objectives(parsed, list(objectives), f"objectives={list(objectives)!r}", name)

    cells: list[Cell] = []
    for p in parsed:
        c = p.cell
        if c.samples is not None:
            samples = [Sample(s.answer, s.scores, s.cost, s.text, s.usage) for s in c.samples]
            cells.append(full_cell(c.prompt, c.query, c.gold, samples))
        else:
            assert c.answer_counts is not None
            cost = c.cost if c.cost is not None else 0.0
            cells.append(
                compact_cell(c.prompt, c.query, c.gold, c.answer_counts, c.abstain or 0, cost)
            )
    return pool_from_cells(
        cells,
        objectives=header.objectives if header is not None else None,
        cost_unit=header.cost_unit if header is not None and header.cost_unit else "unit",
        meta=header.meta if header is not None else None,
    )


# --------------------------------------------------------------------------------------------
# dump
# --------------------------------------------------------------------------------------------


def _num(x: float) -> float | int:
    """Integral floats are written as JSON integers (shorter; they read back as the same float)."""
    return int(x) if x.is_integer() and abs(x) < 2**53 else x


def _is_compact(cell: Cell) -> bool:
    first = cell.outcomes[0].cost
    return all(
        not o.scores and o.text is None and not o.usage and o.cost == first for o in cell.outcomes
    )


def _cell_json(cell: Cell, source: str) -> dict[str, Any]:
    where = f"cell ({cell.prompt!r}, {cell.query!r})"
    if not cell.outcomes or len(cell.outcomes) != len(cell.weights):
        raise PoolError(f"{where} needs one weight per outcome, and at least one", source=source)
    counts: list[int] = []
    for w in cell.weights:
        if not (math.isfinite(w) and w >= 1 and float(w).is_integer()):
            raise PoolError(
                f"{where} has weight {w!r}; a pool file stores integer counts ≥ 1",
                source=source,
                field="weights",
            )
        counts.append(int(w))
    for o in cell.outcomes:
        if not (math.isfinite(o.cost) and o.cost >= 0):
            raise PoolError(
                f"{where} has cost {o.cost!r}; costs must be finite and ≥ 0",
                source=source,
                field="cost",
            )
        if not all(math.isfinite(v) for v in o.scores.values()):
            raise PoolError(
                f"{where} has a non-finite score {dict(o.scores)!r}", source=source, field="scores"
            )

    out: dict[str, Any] = {"prompt": cell.prompt, "query": cell.query, "gold": cell.gold}
    if _is_compact(cell):
        answer_counts: dict[str, int] = {}
        abstain = 0
        for o, n in zip(cell.outcomes, counts, strict=True):
            if o.answer is None:
                abstain += n
            else:
                answer_counts[o.answer] = answer_counts.get(o.answer, 0) + n
        out["answer_counts"] = answer_counts
        if abstain:
            out["abstain"] = abstain
        out["cost"] = _num(float(cell.outcomes[0].cost))
        return out
    samples: list[dict[str, Any]] = []
    for o, n in zip(cell.outcomes, counts, strict=True):
        s: dict[str, Any] = {}
        if o.answer is not None:
            s["answer"] = o.answer
        if o.scores:
            s["scores"] = {k: _num(float(v)) for k, v in o.scores.items()}
        if o.cost:
            s["cost"] = _num(float(o.cost))
        if o.text is not None:
            s["text"] = o.text
        if o.usage:
            s["usage"] = {k: int(v) for k, v in o.usage.items()}
        samples.extend([s] * n)
    out["samples"] = samples
    return out


def dump_pool(pool: Pool, path: str | Path) -> None:
    """Write ``pool`` as a pool file: the header, then the cells prompt by prompt.

    A cell is written in the compact form when its outcomes carry no scores, texts or usage and
    share one cost; otherwise in the full form, an outcome of weight k written as k samples.
    ``load_pool`` reads the file back to an equal pool.
    """
    path = Path(path)
    source = str(path)
    header: dict[str, Any] = {
        "iapo_pool": POOL_SCHEMA,
        "objectives": list(pool.objectives),
        "cost_unit": pool.cost_unit,
        "meta": dict(pool.meta),
    }
    lines: list[str] = []
    try:
        lines.append(json.dumps(header, ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise PoolError(f"cannot be written as JSON ({exc})", source=source, field="meta") from None
    for prompt in pool.prompts:
        for query in pool.queries:
            cell = pool.cells[(prompt, query)]
            lines.append(json.dumps(_cell_json(cell, source), ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
