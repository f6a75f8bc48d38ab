"""Text formatting shared by the CLI commands and the report: numbers and plain-text tables."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["finite_or_none", "num", "strict_json", "table", "weight"]


def num(x: Any, digits: int = 4) -> str:
    """``x`` with ``digits`` decimals; "—" for None, NaN, infinities and non-numbers' absence."""
    if x is None:
        return "—"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "—" if not math.isfinite(v) else f"{v:.{digits}f}"


def weight(x: float) -> str:
    """A context weight as context names write it: 0.50 → "0.5", 1.0 → "1"."""
    return f"{x:g}"


def finite_or_none(x: float) -> float | None:
    """``x`` as a float, or None when it is NaN or infinite (JSON has neither)."""
    return float(x) if math.isfinite(x) else None


def _strict(x: Any) -> Any:
    if isinstance(x, float | int) and not isinstance(x, bool):
        if isinstance(x, float):
            return x if math.isfinite(x) else None
        return x
    if isinstance(x, str | bool) or x is None:
        return x
    if isinstance(x, Mapping):
        return {k: _strict(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_strict(v) for v in x]
    tolist = getattr(x, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return _strict(tolist())
    return x


def strict_json(obj: Any, **kwargs: Any) -> str:
    """``obj`` as standard JSON that every parser reads: NaN and infinities (which JSON does not
    have) become ``null``, numpy numbers and arrays plain ones; ``allow_nan=False`` so nothing
    non-standard slips through. ``kwargs`` go to :func:`json.dumps` (``indent``, …)."""
    return json.dumps(_strict(obj), allow_nan=False, **kwargs)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A left-aligned plain-text table with a dashed rule under the headers."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(str(h)), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    out = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    for r in cells:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(out)
