"""Reading and validating a run configuration: every validation problem becomes one
:class:`~iapo.errors.ConfigError` line naming the file, the field and the fix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from iapo.config._backend import BACKEND_KINDS
from iapo.config._run import RunConfig
from iapo.config._yaml import YAMLLimitError, load_yaml
from iapo.errors import ConfigError
from iapo.inputs import read_input_text

__all__ = ["load_config", "parse_config"]


def _loc(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        parts.append(f"[{p}]" if isinstance(p, int) else ("." if parts else "") + str(p))
    return "".join(parts) or "(top level)"


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key: remove it or check its spelling"
    if kind == "missing":
        return "required: add it"
    msg = str(err["msg"]).replace("Input should be", "must be")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    inp = err.get("input")
    if kind not in ("model_type",) and isinstance(inp, str | int | float):
        shown = repr(inp) if len(repr(inp)) < 40 else repr(inp)[:36] + "…"
        msg += f" (got {shown})"
    return msg + _FIXES.get(kind, "")


#: The fix for the kinds of validation error whose message names none.
_FIXES = {
    "less_than_equal": ": lower it",
    "less_than": ": lower it",
    "greater_than_equal": ": raise it",
    "greater_than": ": raise it",
    "finite_number": ": give a finite number",
}


def _describe(err: Any) -> tuple[str, str]:
    """(field, message) of a validation error; a backend's field path leaves out the union tag
    (``backend.model``, not ``backend.openai.model``) and its messages name the kind."""
    loc = tuple(err["loc"])
    if loc[:1] == ("backend",) and err["type"] == "union_tag_invalid":
        kinds = " or ".join(repr(k) for k in BACKEND_KINDS)
        return _loc((*loc, "kind")), f"must be {kinds} (got {err['input']['kind']!r})"
    if loc[:1] == ("backend",) and len(loc) > 1 and loc[1] in BACKEND_KINDS:
        if err["type"] == "model_type":
            return _loc(loc[:1]), "must be a mapping of settings (kind, model, …)"
        kind, loc = loc[1], (loc[0], *loc[2:])
        if err["type"] == "extra_forbidden" and len(loc) == 2:
            owners = [k for k, m in BACKEND_KINDS.items() if loc[1] in m.model_fields]
            fix = (
                f"it is a kind: {owners[0]} setting: remove it or set kind: {owners[0]}"
                if owners
                else "remove it or check its spelling"
            )
            return _loc(loc), f"unknown key for kind: {kind}: {fix}"
    return _loc(loc), _message(err)


def parse_config(data: Any, source: str) -> RunConfig:
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of settings at the top level", source=source)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
        field, message = _describe(err)
        prefixed = re.match(r"([a-z_][\w.\[\]]*): (.*)", message)
        if prefixed and field == "(top level)":  # a cross-field check names its field itself
            field, message = prefixed.group(1), prefixed.group(2)
        sub = re.match(r"\.(\w+): (.*)", message)
        if sub:  # a check of a mapping's entries names the entry: backend.params.max_tokens
            field, message = f"{field}.{sub.group(1)}", sub.group(2)
        raise ConfigError(message + more, source=source, field=field) from None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run configuration (a regular UTF-8 file; duplicate keys, deep
    nesting and alias bombs refused: see :func:`~iapo.config._yaml.load_yaml`)."""
    p = Path(path)
    text = read_input_text(p, error=ConfigError, what="a YAML config file")
    try:
        data = load_yaml(text)
    except YAMLLimitError as exc:
        where = f"line {exc.line}: " if exc.line else ""
        raise ConfigError(f"{where}{exc}", source=str(p), field=exc.field) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or "invalid syntax"
        raise ConfigError(
            f"malformed YAML at {where}: {problem}: fix the syntax", source=str(p)
        ) from None
    return parse_config(data, str(p))
