"""Query sets for live runs: JSONL files of ``{"id", "question", "gold", ...}``."""

from __future__ import annotations

import json
from pathlib import Path

from iapo.errors import ConfigError
from iapo.types import Query

__all__ = ["load_queries"]


def load_queries(path: str | Path) -> list[Query]:
    """Read a query file. Extra string fields become template variables (``{choices}``, …)."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(
            f"cannot read ({exc.strerror}): check the path", source=str(p), field="queries"
        ) from None
    out: list[Query] = []
    seen: set[str] = set()
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{p}:{no}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid JSON ({exc.msg}): fix the line", source=where) from None
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
