"""Reading a pool file: parse every line, check the file as a whole, build the :class:`Pool`.

The format is described in :mod:`iapo.pools._format`. Every problem is reported as one
:class:`~iapo.errors.PoolError` naming the file, the line, the field and the fix.

A file whose cells are all in the compact form is read straight into arrays
(:mod:`iapo.pools._columns`; its cells are built only if asked for), and a large one is cached
as arrays keyed by the file's SHA-256 (:mod:`iapo.pools._cache`: where, how it is checked, and
``IAPO_NO_CACHE=1`` / ``cache=False`` to turn it off). Anything the fast reader does not take
is read by the full reader below, which reports every problem.
"""

from __future__ import annotations

import gc
import hashlib
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError
from pydantic_core import from_json

from iapo.errors import PoolError
from iapo.inputs import decode_utf8, read_input_bytes
from iapo.pools._arrays import PoolArrays
from iapo.pools._cache import MIN_BYTES, cache_enabled, load_arrays, save_arrays
from iapo.pools._columns import read_compact
from iapo.pools._format import POOL_SCHEMA, CellLine, HeaderLine, pool_error_from, show
from iapo.pools._model import (
    ACCURACY,
    Cell,
    Pool,
    compact_cell,
    full_cell,
    pool_from_arrays,
    pool_from_cells,
)
from iapo.types import Sample

__all__ = ["load_pool"]


@dataclass(frozen=True)
class _Parsed:
    line: int
    cell: CellLine


def _split(raw: bytes, source: str) -> list[str]:
    text = decode_utf8(raw, error=PoolError, source=source)
    # Split on "\n" only: str.splitlines() would also split on U+2028 etc. inside JSON strings.
    return text.split("\n")


def _parse_header(text: str, source: str) -> HeaderLine | None:
    """The header on the first line, or None if that line is a cell."""
    if '"iapo_pool"' not in text:
        return None
    try:
        obj = from_json(text)  # bounded nesting: no RecursionError
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
        header = HeaderLine.model_validate(obj)
    except ValidationError as exc:
        raise pool_error_from(exc, source, header=True) from None
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


def _check_form(parsed: CellLine, source: str) -> None:
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


def _inferred(pool: Pool, parsed: Sequence[_Parsed]) -> str:
    """What was inferred for a pool file without a header line, as one phrase."""
    full = any(p.cell.samples is not None for p in parsed)
    compact = any(p.cell.samples is None for p in parsed)
    form = "full and compact forms" if full and compact else "full form" if full else "compact form"
    return (
        f"no header line: inferred objectives {list(pool.objectives)}, "
        f"cost unit {pool.cost_unit!r}, {form}"
    )


def load_pool(
    path: str | Path,
    *,
    require_gold: bool = False,
    objectives: Sequence[str] | None = None,
    quiet: bool = False,
    cache: bool | None = None,
) -> Pool:
    """Read and validate a pool file (the format is described in :mod:`iapo.pools._format`).

    ``require_gold``: every query must have a gold answer (majority voting needs one).
    ``objectives``: every sample of every cell must carry a score for each of these (except
    ``accuracy``, which comes from answers and gold). Raises :class:`PoolError` with a one-line
    message naming the file, the line, the field and the fix.

    A file without a header line is read with what its cells imply (objectives: the score
    names, else accuracy; cost unit "unit"; the form its cells use): that is said in
    ``meta["description"]`` and, unless ``quiet``, in one warning line on stderr. A malformed
    header stays an error.

    ``cache``: use the array cache for a large compact-form file (default: on unless
    ``$IAPO_NO_CACHE`` is set; see :mod:`iapo.pools._cache`).
    """
    # A large pool allocates many small objects that all survive; pausing the cyclic GC while they
    # are built more than halves the load time (30k full-form lines x 10 samples: ~6 s → ~2.5 s).
    paused = gc.isenabled()
    gc.disable()
    try:
        return _load(Path(path), require_gold, objectives, quiet, cache_enabled(cache))
    finally:
        if paused:
            gc.enable()


def _load(
    path: Path, require_gold: bool, objectives: Sequence[str] | None, quiet: bool, cache: bool
) -> Pool:
    name = str(path)
    raw = read_input_bytes(path, error=PoolError, what="the pool's .jsonl file")
    cache = cache and len(raw) >= MIN_BYTES
    key = hashlib.sha256(raw).hexdigest() if cache else ""
    if cache:
        hit = load_arrays(path, key)
        if hit is not None:
            pool = _from_columns(hit[0], hit[1], require_gold, objectives, name, quiet, path, key)
            if pool is not None:
                return pool
    lines = _split(raw, name)
    fast = _read_fast(lines, name)
    if fast is not None:
        arrays, extra = fast
        if cache:
            save_arrays(path, key, arrays, extra)
        pool = _from_columns(arrays, extra, require_gold, objectives, name, quiet, path, key)
        if pool is not None:
            return pool
    return _load_pool(lines, name, require_gold=require_gold, objectives=objectives, quiet=quiet)


def _read_fast(lines: list[str], name: str) -> tuple[PoolArrays, dict[str, Any]] | None:
    """A compact-form file's arrays and what else :func:`_from_columns` needs, or None."""
    first = next((i for i, t in enumerate(lines) if t.strip()), None)
    if first is None:
        return None
    header = _parse_header(lines[first], f"{name}:{first + 1}")
    read = read_compact(lines, first if header is not None else None)
    if read is None:
        return None
    return read, {"header": None if header is None else header.model_dump(mode="json")}


def _from_columns(
    arrays: PoolArrays,
    extra: dict[str, Any],
    require_gold: bool,
    objectives: Sequence[str] | None,
    name: str,
    quiet: bool,
    path: Path | None = None,
    key: str = "",
) -> Pool | None:
    """The pool of a compact-form file's arrays, or None where the full reader must say what is
    wrong (a query without gold when it is required, objectives that need scores)."""
    head = extra.get("header")
    header = HeaderLine.model_validate(head) if head is not None else None
    if require_gold and bool(np.any(arrays.gold < 0)):
        return None
    wanted = [*(header.objectives or [] if header is not None else []), *(objectives or [])]
    if _required_objectives(wanted):
        return None  # compact cells carry no scores: an error, reported by the full reader
    if path is not None and key:
        arrays = replace(arrays, source=(path, key))
    if header is not None:
        objs = tuple(header.objectives) if header.objectives is not None else (ACCURACY,)
        return pool_from_arrays(arrays, objs, header.cost_unit or "unit", header.meta)
    note = f"no header line: inferred objectives {[ACCURACY]}, cost unit 'unit', compact form"
    if not quiet:
        print(
            f"iapo: warning: {name}: {note}; add a first line "
            '{"iapo_pool": 1, "objectives": [...], "cost_unit": "..."} to state them',
            file=sys.stderr,
        )
    return pool_from_arrays(arrays, (ACCURACY,), "unit", {"description": note})


def _load_pool(
    lines: list[str],
    name: str,
    *,
    require_gold: bool,
    objectives: Sequence[str] | None,
    quiet: bool,
) -> Pool:

    header: HeaderLine | None = None
    parsed: list[_Parsed] = []
    seen: dict[tuple[str, str], int] = {}
    gold_of: dict[str, tuple[str | None, str, int]] = {}
    first_content = True
    validate = CellLine.model_validate_json
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
            raise pool_error_from(exc, source) from None
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
                f"gold {show(cell.gold)} differs from gold {show(known[0])} given for the same "
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
    if header is not None:
        return pool_from_cells(
            cells,
            objectives=header.objectives,
            cost_unit=header.cost_unit or "unit",
            meta=header.meta,
        )
    pool = pool_from_cells(cells)
    note = _inferred(pool, parsed)
    if not quiet:
        print(
            f"iapo: warning: {name}: {note}; add a first line "
            '{"iapo_pool": 1, "objectives": [...], "cost_unit": "..."} to state them',
            file=sys.stderr,
        )
    return replace(pool, meta={"description": note})
