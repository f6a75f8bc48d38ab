"""Importers of the Tree-of-Thoughts baseline sampling logs (IO vs CoT prompts) into Best-of-N
pools with a per-sample score.

Paths are always passed in; nothing here knows where the data lives. Sample texts are not kept
(size); outcome ``i`` of a ToT cell is sample ``ys[i]`` of the task ``idx`` in the source log.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from iapo.errors import PoolError
from iapo.pools._format import available
from iapo.pools._model import Cell, Pool, full_cell, pool_from_cells
from iapo.types import Sample

__all__ = ["import_tot_game24", "import_tot_text"]

TOT_LICENSE = "MIT, Copyright (c) 2023 Shunyu Yao"

_TOT_PRINCETON = ("princeton-nlp/tree-of-thought-llm", "ab400345c5ea39d28ea6d7d3be0e417b11113c87")
# log file name -> (repo, commit); the GPT-3.5 Game of 24 log comes from a fork (same code, MIT).
_TOT_SOURCES: dict[str, tuple[str, str]] = {
    "gpt-3.5-turbo_0.7_naive_cot_sample_100_start900_end1000.json": (
        "ndrew1337/ai-360-project-reasoning_llms",
        "ede8dbcc08fd0103aa00617ad860e07b78c23468",
    ),
}
_TOT_TEXT_FILE = "gpt-4_1.0_naive_{prompt}_sample_10_start0_end100.json"
_TOT_TEXT_PROMPTS = ("standard", "cot")
_TOT_GAME24_ORDER = ("gpt-4/standard", "gpt-4/cot", "gpt-3.5-turbo/cot")
_TOT_LOG_NAME = re.compile(
    r"^(?P<model>.+?)_(?P<temperature>[0-9.]+)_naive_(?P<prompt>[A-Za-z0-9]+)"
    r"_sample_(?P<n>\d+)_start(?P<start>\d+)_end(?P<end>\d+)\.json$"
)
_TOT_COST_NOTE = (
    "cost = the task's completion-token delta of the log's cumulative usage_so_far divided by "
    "the number of samples (the logs hold no per-sample usage); a counter reset (a resumed run) "
    "is taken as starting from 0."
)


class _TotUsage(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    completion_tokens: Annotated[int, Field(ge=0)]
    prompt_tokens: Annotated[int, Field(ge=0)]


class _TotRecord(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    idx: int
    ys: Annotated[list[str], Field(min_length=1)]
    infos: list[dict[str, Any]] | None = None
    accs: list[bool] | None = None
    usage_so_far: _TotUsage


_TOT_LOG = TypeAdapter(list[_TotRecord])


def _read_tot_log(path: Path) -> list[_TotRecord]:
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PoolError(
            f"cannot read the log ({exc.strerror}); check the path", source=source
        ) from None
    try:
        records = _TOT_LOG.validate_json(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        raise PoolError(
            f"not a Tree-of-Thoughts log ({err['msg']}); expected a JSON list of "
            '{"idx", "ys", "infos" | "accs", "usage_so_far"} records',
            source=source,
            field=field.lstrip(".") or None,
        ) from None
    if not records:
        raise PoolError("holds no tasks", source=source)
    return records


def _per_sample_costs(records: Sequence[_TotRecord]) -> list[float]:
    """Each task's completion-token delta of ``usage_so_far``, divided by its sample count.

    The counter is cumulative per process; where it drops, the run was resumed and the counter
    restarted at 0, so that task's delta is its own value.
    """
    out: list[float] = []
    prev = 0
    for rec in records:
        now = rec.usage_so_far.completion_tokens
        delta = now - prev if now >= prev else now
        out.append(delta / len(rec.ys))
        prev = now
    return out


def _tot_scores(rec: _TotRecord, key: str, source: str, pos: int) -> list[float]:
    if rec.accs is not None:
        values: list[Any] = list(rec.accs)
        field = "accs"
    elif rec.infos is not None:
        values = [info.get(key) for info in rec.infos]
        field = f"infos[].{key}"
    else:
        raise PoolError(
            'has neither "accs" nor "infos"; cannot score its samples',
            source=source,
            field=f"[{pos}]",
        )
    if len(values) != len(rec.ys):
        raise PoolError(
            f"{len(values)} scores for {len(rec.ys)} samples; the log is truncated or corrupt",
            source=source,
            field=f"[{pos}].{field.split('[')[0]}",
        )
    out: list[float] = []
    for v in values:
        if isinstance(v, bool) or (isinstance(v, int | float) and math.isfinite(v)):
            out.append(float(v))
        else:
            raise PoolError(
                f"score {v!r} is not a finite number",
                source=source,
                field=f"[{pos}].{field}",
            )
    return out


def _tot_cells(
    path: Path, prompt: str, query_prefix: str, objective: str, divisor: float
) -> list[Cell]:
    records = _read_tot_log(path)
    costs = _per_sample_costs(records)
    cells: list[Cell] = []
    for pos, (rec, cost) in enumerate(zip(records, costs, strict=True)):
        scores = _tot_scores(rec, "r", str(path), pos)
        # round off float noise (2.2 / 10 = 0.22000000000000003); the ratings have few decimals
        samples = [Sample(None, {objective: round(s / divisor, 10)}, cost) for s in scores]
        cells.append(full_cell(prompt, f"{query_prefix}-{rec.idx}", None, samples))
    return cells


def _common_grid(groups: Sequence[list[Cell]], source: str) -> list[Cell]:
    """Cells of every prompt, restricted to the queries every prompt has."""
    per_prompt: list[dict[str, Cell]] = []
    for cells in groups:
        by_query: dict[str, Cell] = {}
        for c in cells:
            if c.query in by_query:
                raise PoolError(
                    f"task {c.query!r} appears twice in the log of prompt {c.prompt!r}",
                    source=source,
                    field="idx",
                )
            by_query[c.query] = c
        per_prompt.append(by_query)
    common = [q for q in per_prompt[0] if all(q in m for m in per_prompt[1:])]
    if not common:
        raise PoolError("the logs share no task; nothing to compare", source=source)
    return [m[q] for m in per_prompt for q in common]


def _tot_dir(root: str | Path, sub: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise PoolError("no such directory; pass the tot-logs directory", source=str(root))
    return root / sub if (root / sub).is_dir() else root


def _tot_meta(files: Sequence[Path], description: str) -> dict[str, Any]:
    sources = []
    for f in files:
        repo, commit = _TOT_SOURCES.get(f.name, _TOT_PRINCETON)
        sources.append(f"{repo} @ {commit}: logs/{f.parent.name}/{f.name}")
    repos = sorted({_TOT_SOURCES.get(f.name, _TOT_PRINCETON) for f in files})
    return {
        "source": "; ".join(sources),
        "repo": ", ".join(r for r, _ in repos),
        "commit": ", ".join(c for _, c in repos),
        "paper": "Yao et al., Tree of Thoughts: Deliberate Problem Solving with Large Language "
        "Models, NeurIPS 2023 (arXiv 2305.10601)",
        "license": TOT_LICENSE,
        "description": description,
        "cost_note": _TOT_COST_NOTE,
    }


def import_tot_text(dir: str | Path) -> Pool:
    """The ToT creative-writing baseline logs (GPT-4, T=1.0, 100 tasks x 10 samples) as a
    Best-of-N pool.

    Prompts ``standard`` (IO) and ``cot``; query ``text-{idx}``; one outcome per sample with
    score ``coherence`` = the mean of the GPT-4 judge's 1-10 ratings / 10; no gold. ``dir`` is
    the ``tot-logs`` directory (or its ``text/`` folder).

    Cost per sample is the task's completion-token delta / 10. In these logs it includes the
    judge's completions (5 ratings per sample), about half of the total: the cost of Best-of-N
    with this judge, not of generation alone.
    """
    d = _tot_dir(dir, "text")
    files = [d / _TOT_TEXT_FILE.format(prompt=p) for p in _TOT_TEXT_PROMPTS]
    for f in files:
        if not f.is_file():
            raise PoolError(
                f"missing log {f.name}; logs here: {available(x.name for x in d.glob('*.json'))}",
                source=str(d),
            )
    groups = [
        _tot_cells(f, p, "text", "coherence", 10.0)
        for f, p in zip(files, _TOT_TEXT_PROMPTS, strict=True)
    ]
    description = (
        "Tree-of-Thoughts creative writing (write 4 paragraphs ending in 4 given sentences), "
        "GPT-4 at T=1.0, 100 tasks x 10 samples per prompt (standard = IO, cot = plan then "
        "write). Score coherence = mean GPT-4 judge rating (1-10) / 10. Cost = output tokens "
        "per sample, including the judge's 5 ratings of the sample."
    )
    return pool_from_cells(
        _common_grid(groups, str(d)),
        objectives=("coherence",),
        cost_unit="output_tokens",
        meta=_tot_meta(files, description),
    )


def import_tot_game24(dir: str | Path) -> Pool:
    """The ToT Game of 24 baseline logs (puzzles 900-999, 100 samples each) as a Best-of-N pool.

    Prompts ``{model}/{prompt}`` per log (``gpt-4/standard``, ``gpt-4/cot``,
    ``gpt-3.5-turbo/cot``); query ``24-{idx}``; score ``correct`` (0/1, from ``accs[i]`` or
    ``infos[i]["r"]``); cost per sample = the task's completion-token delta / 100 (generation
    only: Game of 24 is checked locally). ``dir`` is the ``tot-logs`` directory (or ``game24/``).
    """
    d = _tot_dir(dir, "game24")
    logs: dict[str, Path] = {}
    for f in sorted(d.glob("*.json")):
        m = _TOT_LOG_NAME.match(f.name)
        if m is None:
            continue
        prompt = f"{m['model']}/{m['prompt']}"
        if prompt in logs:
            raise PoolError(
                f"two logs for prompt {prompt!r}: {logs[prompt].name} and {f.name}; keep one",
                source=str(d),
            )
        logs[prompt] = f
    if not logs:
        raise PoolError(
            "no Game of 24 logs (*_naive_*_sample_*_start*_end*.json) here; pass the tot-logs "
            "directory",
            source=str(d),
        )

    def rank(p: str) -> tuple[int, str]:
        order = _TOT_GAME24_ORDER
        return (order.index(p) if p in order else len(order), p)

    prompts = sorted(logs, key=rank)
    groups = [_tot_cells(logs[p], p, "24", "correct", 1.0) for p in prompts]
    description = (
        "Tree-of-Thoughts Game of 24 (puzzles 900-999 of 24.csv), T=0.7, 100 samples per puzzle "
        f"and prompt ({', '.join(prompts)}). Score correct = 1 if the sample's expression is "
        "valid and equals 24. Cost = output tokens per sample."
    )
    return pool_from_cells(
        _common_grid(groups, str(d)),
        objectives=("correct",),
        cost_unit="output_tokens",
        meta=_tot_meta([logs[p] for p in prompts], description),
    )
