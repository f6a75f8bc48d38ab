"""Text formatting shared by the CLI commands and the report: numbers and plain-text tables."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["amount", "count", "finite_or_none", "num", "strict_json", "table", "weight"]


def _finite(x: Any) -> float | str:
    """``x`` as a finite float, or the text to print instead: "—" for None, NaN and
    infinities, ``str(x)`` for what is not a number."""
    if x is None:
        return "—"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return v if math.isfinite(v) else "—"


def num(x: Any, digits: int = 4) -> str:
    """``x`` with ``digits`` decimals; "—" for None, NaN and infinities."""
    v = _finite(x)
    return v if isinstance(v, str) else f"{v:.{digits}f}"


def amount(x: Any, sig: int = 6) -> str:
    """A cost, budget or count as a person reads it: never scientific notation; thousands
    separators; whole above 1,000 (730,116), else ``sig`` significant digits without trailing
    zeros (3.5, 0.000125); "—" for None and non-finite values."""
    v = _finite(x)
    if isinstance(v, str):
        return v
    if v == 0:
        return "0"
    if abs(v) >= 1000 or v == int(v):
        return f"{v:,.0f}"
    decimals = max(0, sig - 1 - math.floor(math.log10(abs(v))))
    return f"{v:,.{decimals}f}".rstrip("0").rstrip(".")


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` with its noun in the right number: "1 held-out query", "20 held-out queries"."""
    word = noun if n == 1 else (plural or _plural(noun))
    return f"{n:,} {word}"


def _plural(noun: str) -> str:
    if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou"):
        return noun[:-1] + "ies"
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


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
