"""A fast reader for pool files whose cells are all in the compact form: straight to arrays.

The whole file is parsed by one call of the JSON parser pydantic validates with
(``pydantic_core.from_json``, so numbers parse to the same floats) and each line checked with
plain type and range tests, without a pydantic model or a sample object per line. The fast
reader is conservative: it accepts only what the full reader (:mod:`iapo.pools._load`)
accepts, with the same values, and gives up (returns ``None``) on anything else — a full-form
cell, an unknown field, a value out of range, a duplicate cell, an incomplete grid, a lone
surrogate escape, invalid JSON. The full reader then reads the file and reports the problem
exactly as it always has.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic_core import from_json

from iapo.pools._arrays import PoolArrays
from iapo.pools._format import MAX_COST, MAX_COUNT

__all__ = ["read_compact"]

_ALLOWED = frozenset({"prompt", "query", "gold", "answer_counts", "abstain", "cost"})
#: An escaped UTF-16 surrogate: a lone one is not a string the full reader accepts.
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_LINES_PER_PASS = 8192


def read_compact(lines: Sequence[str], skip: int | None) -> PoolArrays | None:
    """The cells of ``lines`` (the file split on ``"\\n"``) as arrays, or None to defer to the full
    reader. ``skip``: the index of the header line, if there is one."""
    numbers = [i for i, t in enumerate(lines) if i != skip and t.strip()]
    if not numbers:
        return None
    fields: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [])
    for lo in range(0, len(numbers), _LINES_PER_PASS):  # bounded memory: dicts of one pass
        if not _parse(lines, numbers[lo : lo + _LINES_PER_PASS], fields):
            return None
    prompts, queries, golds, n_ans, answers, values, abstains, costs = fields
    try:
        count_arr = np.array(values, dtype=np.int64)
        abstain_arr = np.array([0 if a is None else a for a in abstains], dtype=np.int64)
        cost_arr = np.array([0.0 if c is None else c for c in costs], dtype=np.float64)
    except OverflowError:
        return None
    if not (
        np.all((count_arr > 0) & (count_arr <= MAX_COUNT))
        and np.all((abstain_arr >= 0) & (abstain_arr <= MAX_COUNT))
        and np.all((cost_arr >= 0.0) & (cost_arr <= MAX_COST))  # False for NaN
    ):
        return None
    n_answers = np.array(n_ans, dtype=np.int64)
    has_abstain = abstain_arr > 0
    if np.any((n_answers == 0) & ~has_abstain):
        return None  # a cell without samples: the full reader says so
    prompt_ix = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
    query_ix = {q: i for i, q in enumerate(dict.fromkeys(queries))}
    gold_of = dict(zip(queries, golds, strict=True))
    if len(set(zip(queries, golds, strict=True))) != len(gold_of):
        return None  # a query with two gold answers
    label_ix = {a: i for i, a in enumerate(dict.fromkeys(answers))}
    # each cell's outcomes in file order: its answers, then the abstentions
    lengths = n_answers + has_abstain
    ends = np.cumsum(lengths)
    answer_arr = np.full(int(ends[-1]), -1, dtype=np.int64)
    weight_arr = np.empty(int(ends[-1]), dtype=np.float64)
    is_answer = np.ones(int(ends[-1]), dtype=bool)
    is_answer[(ends - 1)[has_abstain]] = False
    answer_arr[is_answer] = np.fromiter(map(label_ix.__getitem__, answers), np.int64, len(answers))
    weight_arr[is_answer] = count_arr
    weight_arr[~is_answer] = abstain_arr[has_abstain]
    cell_p = np.fromiter(map(prompt_ix.__getitem__, prompts), np.int64, len(prompts))
    cell_q = np.fromiter(map(query_ix.__getitem__, queries), np.int64, len(queries))
    n_p, n_q = len(prompt_ix), len(query_ix)
    grid = cell_p * n_q + cell_q
    if len(grid) != n_p * n_q or np.unique(grid).size != len(grid):
        return None  # duplicate cells or an incomplete grid: the full reader says which
    for g in gold_of.values():
        if g is not None:
            label_ix.setdefault(g, len(label_ix))

    file_start = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=file_start[1:])
    position = np.empty(len(grid), dtype=np.int64)
    position[grid] = np.arange(len(grid))  # file position of each grid cell
    grid_lengths = lengths[position]
    start = np.zeros(len(grid) + 1, dtype=np.int64)
    np.cumsum(grid_lengths, out=start[1:])
    owner = np.repeat(position, grid_lengths)  # file position of each grid-ordered row
    rows = file_start[owner] + (
        np.arange(start[-1], dtype=np.int64) - start[:-1].repeat(grid_lengths)
    )
    per_row_cost = np.repeat(cost_arr, lengths)
    query_names = tuple(query_ix)
    gold_ids = np.array(
        [-1 if gold_of[q] is None else label_ix[gold_of[q]] for q in query_names], dtype=np.int64
    )
    return PoolArrays(
        prompts=tuple(prompt_ix),
        queries=query_names,
        labels=tuple(label_ix),
        gold=np.tile(gold_ids, n_p),
        start=start,
        answer=answer_arr[rows],
        cost=per_row_cost[rows],
        weight=weight_arr[rows],
        score_names=(),
        scores=np.zeros((int(start[-1]), 0)),
        order=grid,
        plain=True,
    )


def _parse(lines: Sequence[str], numbers: list[int], fields: tuple[list[Any], ...]) -> bool:
    """Parse the lines ``numbers`` and append their fields (prompt, query, gold, answer count,
    answers, counts, abstain, cost) to ``fields``; False if the fast reader cannot take them."""
    body = "\n,".join(lines[i] for i in numbers)
    if _SURROGATE.search(body):
        return False
    try:
        objs = from_json("[" + body + "]")
    except (ValueError, RecursionError):
        return False
    if type(objs) is not list or len(objs) != len(numbers):
        return False
    if set(map(type, objs)) != {dict} or not all(d.keys() <= _ALLOWED for d in objs):
        return False
    prompts = [d.get("prompt") for d in objs]
    queries = [d.get("query") for d in objs]
    golds = [d.get("gold") for d in objs]
    counts = [d.get("answer_counts") for d in objs]
    abstains = [d.get("abstain") for d in objs]
    costs = [d.get("cost") for d in objs]
    if not (
        set(map(type, prompts)) == {str}
        and set(map(type, queries)) == {str}
        and set(map(type, counts)) == {dict}
        and set(map(type, golds)) <= {str, type(None)}
        and set(map(type, abstains)) <= {int, type(None)}
        and set(map(type, costs)) <= {int, float, type(None)}
        and all(prompts)
        and all(queries)
    ):
        return False
    values = [c for ac in counts for c in ac.values()]
    if values and set(map(type, values)) != {int}:
        return False
    fields[0].extend(prompts)
    fields[1].extend(queries)
    fields[2].extend(golds)
    fields[3].extend(map(len, counts))
    fields[4].extend(a for ac in counts for a in ac)
    fields[5].extend(values)
    fields[6].extend(abstains)
    fields[7].extend(costs)
    return True
