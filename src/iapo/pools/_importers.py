"""Importers from real recorded pools (the authors' formats) into :class:`Pool`.

* :func:`import_renze`: Renze & Guven's self-consistency pools (10 answers per question,
  multiple-choice exams): majority-vote pools in the compact form.
* :func:`import_tot_text`, :func:`import_tot_game24`: the Tree-of-Thoughts baseline sampling logs
  (IO vs CoT prompts): Best-of-N pools with a per-sample score.

Paths are always passed in; nothing here knows where the data lives. Sample texts are not kept
(size); outcome ``i`` of a ToT cell is sample ``ys[i]`` of the task ``idx`` in the source log.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from iapo.errors import PoolError
from iapo.pools._format import compact_cell, full_cell, pool_from_cells
from iapo.pools._model import Cell, Pool
from iapo.types import Sample

__all__ = ["import_renze", "import_tot_game24", "import_tot_text"]

RENZE_LICENSE = "BSD-2-Clause, Copyright (c) 2023 Matthew Renze"
TOT_LICENSE = "MIT, Copyright (c) 2023 Shunyu Yao"

# study -> (repo, commit, files in the repo, paper)
_RENZE_SOURCES: dict[str, tuple[str, str, str, str]] = {
    "temperature": (
        "matthewrenze/jhu-llm-temperature",
        "b00cfb652897e8bdc28c63234def9b490fa84cfb",
        "data/details/*.csv",
        "Renze & Guven, The Effect of Sampling Temperature on Problem Solving in Large Language "
        "Models, Findings of EMNLP 2024 (arXiv 2402.05201)",
    ),
    "concise_cot": (
        "matthewrenze/jhu-concise-cot",
        "a6a892ab2b92dc7911203507d16af6f0d4644779",
        "details/*.csv",
        "Renze & Guven, The Benefits of a Concise Chain of Thought on Problem-Solving in Large "
        "Language Models (arXiv 2401.05618)",
    ),
}

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


def _available(values: Iterable[Any]) -> str:
    vals = sorted(set(values), key=lambda v: (isinstance(v, str), v))
    return ", ".join(str(v) for v in vals) or "none"


# --------------------------------------------------------------------------------------------
# Renze & Guven MCQA pools
# --------------------------------------------------------------------------------------------


class _RenzeRow(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    study: str
    model: str
    prompt: str
    exam: str
    temperature: float
    problem_id: int
    answers: Annotated[list[str], Field(min_length=1)]
    gold: str
    output_tokens: Annotated[int, Field(ge=0)]


def _read_renze(path: Path, source: str) -> list[tuple[int, _RenzeRow]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PoolError(
            f"cannot read the file ({exc.strerror}); check the path", source=source
        ) from None
    rows: list[tuple[int, _RenzeRow]] = []
    validate = _RenzeRow.model_validate_json
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append((lineno, validate(line)))
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in err["loc"]) or None
            raise PoolError(
                f"not a renze-mcqa record ({err['msg']}); pass temperature_pool.jsonl or "
                "concise_cot_pool.jsonl",
                source=f"{source}:{lineno}",
                field=field,
            ) from None
    if not rows:
        raise PoolError("no records: the file is empty", source=source)
    return rows


def import_renze(
    path: str | Path,
    *,
    model: str,
    exam: str,
    temperature: float | None = None,
    study: str | None = None,
    prompts: Sequence[str] | None = None,
) -> Pool:
    """A majority-vote pool from ``temperature_pool.jsonl`` or ``concise_cot_pool.jsonl``.

    One compact cell per (prompt, question): the 10 extracted answers as counts (``""`` = no
    answer = abstain), the gold letter, and cost per sample = ``output_tokens / 10`` (the study
    sums output tokens over the 10 samples). Prompt id = the row's ``prompt``; query id =
    ``f"{exam}-{problem_id}"``. Rows are filtered by ``model``, ``exam``, ``temperature``,
    ``study`` and ``prompts``; only questions present for every kept prompt are kept.
    """
    path = Path(path)
    source = str(path)
    rows = _read_renze(path, source)

    if study is not None:
        found = [lr for lr in rows if lr[1].study == study]
        if not found:
            raise PoolError(
                f"no rows for study {study!r}; this file holds: "
                f"{_available(r.study for _, r in rows)}",
                source=source,
                field="study",
            )
        rows = found
    by_model = [lr for lr in rows if lr[1].model == model]
    if not by_model:
        raise PoolError(
            f"no rows for model {model!r}; available models: "
            f"{_available(r.model for _, r in rows)}",
            source=source,
            field="model",
        )
    by_exam = [lr for lr in by_model if lr[1].exam == exam]
    if not by_exam:
        raise PoolError(
            f"no rows for exam {exam!r} with model {model!r}; available exams: "
            f"{_available(r.exam for _, r in by_model)}",
            source=source,
            field="exam",
        )
    selected = by_exam
    if temperature is not None:
        selected = [lr for lr in by_exam if math.isclose(lr[1].temperature, temperature)]
        if not selected:
            raise PoolError(
                f"no rows at temperature {temperature} for model {model!r}, exam {exam!r}; "
                f"available temperatures: {_available(r.temperature for _, r in by_exam)}",
                source=source,
                field="temperature",
            )
    if prompts is not None:
        if not prompts:
            raise PoolError(
                "is empty; name at least one prompt or pass None", source=source, field="prompts"
            )
        have = {r.prompt for _, r in selected}
        for p in prompts:
            if p not in have:
                where = f"model {model!r}, exam {exam!r}"
                if temperature is not None:
                    where += f", temperature {temperature}"
                raise PoolError(
                    f"no rows for prompt {p!r} ({where}); available prompts: {_available(have)}",
                    source=source,
                    field="prompts",
                )
        wanted = set(prompts)
        selected = [lr for lr in selected if lr[1].prompt in wanted]

    temps = {r.temperature for _, r in selected}
    seen: dict[tuple[str, int], int] = {}
    for lineno, r in selected:
        key = (r.prompt, r.problem_id)
        if key in seen:
            if len(temps) > 1 and temperature is None:
                raise PoolError(
                    f"rows at several temperatures match ({_available(temps)}); pass "
                    "temperature= one of them",
                    source=source,
                    field="temperature",
                )
            raise PoolError(
                f"duplicate row for prompt {r.prompt!r}, problem {r.problem_id} (first on line "
                f"{seen[key]}); narrow the filter (study=, temperature=)",
                source=f"{source}:{lineno}",
                field="problem_id",
            )
        seen[key] = lineno

    prompt_order: list[str] = list(prompts) if prompts is not None else []
    if prompts is None:
        for _, r in selected:
            if r.prompt not in prompt_order:
                prompt_order.append(r.prompt)
    ids_of: dict[str, set[int]] = {p: set() for p in prompt_order}
    for _, r in selected:
        ids_of[r.prompt].add(r.problem_id)
    common = set.intersection(*ids_of.values())
    if not common:
        raise PoolError(
            f"the prompts {prompt_order} share no question; choose prompts run on the same exam",
            source=source,
            field="prompts",
        )

    cells: dict[tuple[str, int], Cell] = {}
    gold_of: dict[int, str] = {}
    for lineno, r in selected:
        if r.problem_id not in common:
            continue
        if gold_of.setdefault(r.problem_id, r.gold) != r.gold:
            raise PoolError(
                f"gold {r.gold!r} differs from {gold_of[r.problem_id]!r} for problem "
                f"{r.problem_id} under another prompt; the source data is inconsistent",
                source=f"{source}:{lineno}",
                field="gold",
            )
        counts: dict[str, int] = {}
        abstain = 0
        for a in r.answers:
            if a == "":
                abstain += 1
            else:
                counts[a] = counts.get(a, 0) + 1
        cost = r.output_tokens / len(r.answers)
        query = f"{exam}-{r.problem_id}"
        cells[(r.prompt, r.problem_id)] = compact_cell(
            r.prompt, query, r.gold, counts, abstain, cost
        )

    query_ids: list[int] = []
    for _, r in selected:
        if r.problem_id in common and r.problem_id not in query_ids:
            query_ids.append(r.problem_id)
    ordered = [cells[(p, q)] for p in prompt_order for q in query_ids]

    studies = sorted({r.study for _, r in selected})
    study_name = studies[0]
    repo, commit, files, paper = _RENZE_SOURCES.get(study_name, ("unknown", "unknown", "", ""))
    temp_used = sorted(temps)[0] if len(temps) == 1 else None
    meta: dict[str, Any] = {
        "source": f"{repo} @ {commit} ({files}), via renze-mcqa/{path.name}",
        "repo": repo,
        "commit": commit,
        "paper": paper,
        "license": RENZE_LICENSE,
        "description": (
            f"Self-consistency pool: {model} on {exam} (100 multiple-choice questions) at "
            f"temperature {temp_used}, prompts {', '.join(prompt_order)}; 10 samples per question, "
            "answer = extracted choice letter (abstain = nothing parsed), cost = output tokens "
            "per sample (the request's output_tokens / 10)."
        ),
        "filter": {
            "study": study_name,
            "model": model,
            "exam": exam,
            "temperature": temp_used,
        },
    }
    return pool_from_cells(ordered, objectives=("accuracy",), cost_unit="output_tokens", meta=meta)


# --------------------------------------------------------------------------------------------
# Tree-of-Thoughts baseline logs
# --------------------------------------------------------------------------------------------


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
                f"missing log {f.name}; logs here: {_available(x.name for x in d.glob('*.json'))}",
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
