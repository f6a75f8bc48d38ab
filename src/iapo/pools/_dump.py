"""Writing a :class:`Pool` as a pool file (the format of :mod:`iapo.pools._format`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from iapo.errors import PoolError
from iapo.pools._format import POOL_SCHEMA
from iapo.pools._model import Cell, Pool

__all__ = ["dump_pool"]


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
