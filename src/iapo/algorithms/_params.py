"""Declared algorithm parameters: what a config's ``algorithm.params`` may set, with ranges.

An algorithm declares its parameters once, as a :class:`AlgorithmParams` subclass in its
``Params`` class attribute; :meth:`Algorithm.validate_params` checks a mapping against it (strict
types, unknown names refused, NaN and infinities refused) before the algorithm is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["AlgorithmParams", "Finite", "validate_against"]

#: A finite float (NaN and infinities refused).
Finite = Annotated[float, Field(allow_inf_nan=False)]


class AlgorithmParams(BaseModel):
    """Base of an algorithm's declared parameters: strict types, unknown names refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def validate_against(
    model: type[AlgorithmParams], params: Mapping[str, Any], algorithm: str
) -> dict[str, Any]:
    """``params`` checked against ``model``: the given names with their validated values.
    ``ValueError("params.NAME: must be … (got …)")`` for the first problem."""
    try:
        checked = model.model_validate(dict(params))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        name = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields) or "none"
            raise ValueError(
                f"params.{name}: {algorithm} has no parameter {name!r}: use one of: {known}"
            ) from None
        msg = str(err["msg"]).replace("Input should be", "must be")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        raise ValueError(f"params.{name}: {msg} (got {err.get('input')!r})") from None
    return {k: getattr(checked, k) for k in params}
