"""Importer of Renze & Guven's self-consistency pools (10 answers per question, multiple-choice
exams) into majority-vote pools in the compact form.

Paths are always passed in; nothing here knows where the data lives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from iapo.errors import PoolError
from iapo.pools._format import available
from iapo.pools._model import Cell, Pool, compact_cell, pool_from_cells

__all__ = ["config_id", "import_renze", "import_renze_configs"]

RENZE_LICENSE = "BSD-2-Clause, Copyright (c) 2023 Matthew Renze"

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
                f"{available(r.study for _, r in rows)}",
                source=source,
                field="study",
            )
        rows = found
    by_model = [lr for lr in rows if lr[1].model == model]
    if not by_model:
        raise PoolError(
            f"no rows for model {model!r}; available models: {available(r.model for _, r in rows)}",
            source=source,
            field="model",
        )
    by_exam = [lr for lr in by_model if lr[1].exam == exam]
    if not by_exam:
        raise PoolError(
            f"no rows for exam {exam!r} with model {model!r}; available exams: "
            f"{available(r.exam for _, r in by_model)}",
            source=source,
            field="exam",
        )
    selected = by_exam
    if temperature is not None:
        selected = [lr for lr in by_exam if math.isclose(lr[1].temperature, temperature)]
        if not selected:
            raise PoolError(
                f"no rows at temperature {temperature} for model {model!r}, exam {exam!r}; "
                f"available temperatures: {available(r.temperature for _, r in by_exam)}",
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
                    f"no rows for prompt {p!r} ({where}); available prompts: {available(have)}",
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
                    f"rows at several temperatures match ({available(temps)}); pass "
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
        cells[(r.prompt, r.problem_id)] = _cell(r, r.prompt, exam)

    query_ids: list[int] = []
    for _, r in selected:
        if r.problem_id in common and r.problem_id not in query_ids:
            query_ids.append(r.problem_id)
    ordered = [cells[(p, q)] for p in prompt_order for q in query_ids]

    studies = sorted({r.study for _, r in selected})
    study_name = studies[0]
    temp_used = sorted(temps)[0] if len(temps) == 1 else None
    meta: dict[str, Any] = {
        **_provenance(study_name, path),
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


def _cell(r: _RenzeRow, prompt: str, exam: str) -> Cell:
    """One record's compact cell: answer counts, abstentions (nothing parsed), and the cost per
    sample (the request's output tokens over its samples)."""
    counts: dict[str, int] = {}
    for a in r.answers:
        if a != "":
            counts[a] = counts.get(a, 0) + 1
    abstain = sum(1 for a in r.answers if a == "")
    cost = r.output_tokens / len(r.answers)
    return compact_cell(prompt, f"{exam}-{r.problem_id}", r.gold, counts, abstain, cost)


def _provenance(study: str, path: Path) -> dict[str, Any]:
    """Where a study's records come from and under which licence (kept with every pool)."""
    repo, commit, files, paper = _RENZE_SOURCES.get(study, ("unknown", "unknown", "", ""))
    return {
        "source": f"{repo} @ {commit} ({files}), via renze-mcqa/{path.name}",
        "repo": repo,
        "commit": commit,
        "paper": paper,
        "license": RENZE_LICENSE,
    }


def config_id(model: str, prompt: str, temperature: float) -> str:
    """The prompt id of one (model, prompt, temperature) config: ``"model/prompt/T0.7"``."""
    return f"{model}/{prompt}/T{temperature:.1f}"


def import_renze_configs(path: str | Path, *, exam: str, study: str = "temperature") -> Pool:
    """A majority-vote pool over **every** (model, prompt, temperature) config of ``study`` on
    ``exam``: each config is one prompt (id :func:`config_id`), cells as in :func:`import_renze`
    (answer counts, gold, cost per sample = ``output_tokens / 10``). Only questions every config
    answered are kept; a duplicate (config, question) or a gold that differs between configs is
    a :class:`~iapo.errors.PoolError` naming the line."""
    path = Path(path)
    source = str(path)
    rows = [lr for lr in _read_renze(path, source) if lr[1].study == study]
    if not rows:
        raise PoolError(f"no rows for study {study!r}", source=source, field="study")
    selected = [lr for lr in rows if lr[1].exam == exam]
    if not selected:
        raise PoolError(
            f"no rows for exam {exam!r}; available exams: {available(r.exam for _, r in rows)}",
            source=source,
            field="exam",
        )
    order: list[str] = []
    ids_of: dict[str, set[int]] = {}
    seen: dict[tuple[str, int], int] = {}
    gold_of: dict[int, str] = {}
    for lineno, r in selected:
        cid = config_id(r.model, r.prompt, r.temperature)
        if cid not in ids_of:
            order.append(cid)
            ids_of[cid] = set()
        if (cid, r.problem_id) in seen:
            raise PoolError(
                f"duplicate row for config {cid!r}, problem {r.problem_id} (first on line "
                f"{seen[(cid, r.problem_id)]}); the source data is inconsistent",
                source=f"{source}:{lineno}",
                field="problem_id",
            )
        seen[(cid, r.problem_id)] = lineno
        ids_of[cid].add(r.problem_id)
        if gold_of.setdefault(r.problem_id, r.gold) != r.gold:
            raise PoolError(
                f"gold {r.gold!r} differs from {gold_of[r.problem_id]!r} for problem "
                f"{r.problem_id} under another config; the source data is inconsistent",
                source=f"{source}:{lineno}",
                field="gold",
            )
    common = set.intersection(*ids_of.values())
    if not common:
        raise PoolError(f"the configs on {exam!r} share no question", source=source, field="exam")
    cells: dict[tuple[str, int], Cell] = {}
    for _, r in selected:
        if r.problem_id not in common:
            continue
        cid = config_id(r.model, r.prompt, r.temperature)
        cells[(cid, r.problem_id)] = _cell(r, cid, exam)
    ordered = [cells[(c, q)] for c in order for q in sorted(common)]
    meta: dict[str, Any] = {
        **_provenance(study, path),
        "description": (
            f"Self-consistency pool over all {len(order)} (model, prompt, temperature) configs "
            f"of the {study} study on {exam} ({len(common)} questions); 10 samples per question, "
            "answer = extracted choice letter (abstain = nothing parsed), cost = output tokens "
            "per sample (the request's output_tokens / 10)."
        ),
        "filter": {"study": study, "exam": exam},
    }
    return pool_from_cells(ordered, objectives=("accuracy",), cost_unit="output_tokens", meta=meta)
