"""Query sets for live runs: JSONL files of ``{"id", "question", "gold", ...}``."""

from __future__ import annotations

from pathlib import Path

from pydantic_core import from_json

from iapo.errors import ConfigError
from iapo.inputs import read_input_text
from iapo.types import Query

__all__ = ["load_queries"]


def load_queries(path: str | Path) -> list[Query]:
    """Read a query file (a regular UTF-8 file; JSON nested too deeply is refused by the parser).
    Extra string fields become template variables (``{choices}``, …)."""
    p = Path(path)
    text = read_input_text(p, error=ConfigError, what="a JSONL query file", field="queries")
    lines = text.split("\n")
    out: list[Query] = []
    seen: set[str] = set()
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{p}:{no}"
        try:
            rec = from_json(line)
        except ValueError as exc:
            raise ConfigError(f"invalid JSON ({exc}): fix the line", source=where) from None
        if not isinstance(rec, dict):
            raise ConfigError("expected a JSON object per line", source=where)
        for key in ("id", "question"):
            if not isinstance(rec.get(key), str | int) or rec.get(key) == "":
                raise ConfigError(f"required: add a non-empty {key!r}", source=where, field=key)
        qid = str(rec["id"])
        if qid in seen:
            raise ConfigError(
                f"duplicate query id {qid!r}: ids must be unique", source=where, field="id"
            )
        seen.add(qid)
        gold = rec.get("gold")
        fields = {k: str(v) for k, v in rec.items() if k not in ("id", "question", "gold")}
        out.append(Query(qid, str(rec["question"]), None if gold is None else str(gold), fields))
    if not out:
        raise ConfigError(
            "no queries in the file: add one JSON object per line", source=str(p), field="queries"
        )
    return out
