"""Reading and validating a run configuration: every validation problem becomes one
:class:`~iapo.errors.ConfigError` line naming the file, the field and the fix."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from iapo.config._backend import BACKEND_KINDS, BackendConfig
from iapo.config._run import RunConfig
from iapo.config._yaml import YAMLLimitError, load_yaml
from iapo.errors import ConfigError
from iapo.inputs import read_input_text

__all__ = ["load_config", "load_worker_config", "parse_config"]


def _loc(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        parts.append(f"[{p}]" if isinstance(p, int) else ("." if parts else "") + str(p))
    return "".join(parts) or "(top level)"


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys a config accepts at the mapping that holds ``loc``'s last part: RunConfig's
    fields walked down ``loc`` (list indices and mapping keys keep the item's model; a backend's
    location names its kind, as pydantic's union tag does)."""
    models: list[type[BaseModel]] = [RunConfig]
    for i, part in enumerate(loc[:-1]):
        if isinstance(part, int):
            continue
        if i == 1 and loc[0] == "backend" and part in BACKEND_KINDS:
            models = [BACKEND_KINDS[part]]
            continue
        found = [m.model_fields[part] for m in models if part in m.model_fields]
        if found:
            models = [m for f in found for m in _models_in(f.annotation)]
    return sorted({k for m in models for k in m.model_fields})


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a field's annotation (through Optional, unions, lists)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _near_miss(err: Any) -> str | None:
    """For an unknown key, the known key it most likely misspells (``n_maxx`` → ``n_max``)."""
    loc = tuple(err["loc"])
    if err["type"] != "extra_forbidden" or not loc or not isinstance(loc[-1], str):
        return None
    close = difflib.get_close_matches(loc[-1], _known_keys(loc), n=1, cutoff=0.75)
    return close[0] if close else None


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        guess = _near_miss(err)
        if guess is not None:
            return f"unknown key: did you mean {guess}?"
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
            guess = _near_miss(err)
            if owners:
                fix = f"it is a kind: {owners[0]} setting: remove it or set kind: {owners[0]}"
            elif guess is not None:
                fix = f"did you mean {guess}?"
            else:
                fix = "remove it or check its spelling"
            return _loc(loc), f"unknown key for kind: {kind}: {fix}"
    return _loc(loc), _message(err)


def parse_config(data: Any, source: str) -> RunConfig:
    """Validate a config mapping. Every problem is reported at once: a :class:`ConfigError`
    whose first line names the file, the field and the fix of the first problem, then one line
    per further problem (``  FILE: FIELD: FIX``). An unknown key that misspells a known one
    comes first and says so (``n_maxx: unknown key: did you mean n_max?``)."""
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of settings at the top level", source=source)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, source) from None


def _config_error(exc: ValidationError, source: str) -> ConfigError:
    """One :class:`ConfigError` for every problem of ``exc`` (see :func:`parse_config`)."""
    errors = exc.errors()
    # a misspelt key explains the "required" error of the key it misspells: it goes first
    errors.sort(key=lambda e: _near_miss(e) is None)
    problems = []
    for err in errors:
        field, message = _describe(err)
        prefixed = re.match(r"([a-z_][\w.\[\]]*): (.*)", message)
        if prefixed and field == "(top level)":  # a cross-field check names its field itself
            field, message = prefixed.group(1), prefixed.group(2)
        sub = re.match(r"\.(\w+): (.*)", message)
        if sub:  # a check of a mapping's entries names the entry: backend.params.max_tokens
            field, message = f"{field}.{sub.group(1)}", sub.group(2)
        problems.append((field, message))
    (field, message), more = problems[0], problems[1:]
    extra = "".join(f"\n  {source}: {f}: {m}" for f, m in more)
    return ConfigError(message + extra, source=source, field=field)


class _WorkerConfig(BaseModel):
    """What ``iapo worker`` needs of its config: the ``backend`` (other keys are read only when
    the file is a whole run config)."""

    backend: BackendConfig


def load_worker_config(path: str | Path) -> tuple[BackendConfig, RunConfig | None]:
    """A worker's config file: its ``backend`` section (validated, errors as for a run config),
    and the whole run config when the file is one (None when it only gives a backend)."""
    p = Path(path)
    data = _read_yaml(p)
    if not isinstance(data, dict) or "backend" not in data:
        raise ConfigError(
            "a worker's config needs a 'backend' section: the endpoint, model and parameters "
            "this worker draws from (the same model and params as the run's)",
            source=str(p),
            field="backend",
        )
    try:
        backend = _WorkerConfig.model_validate({"backend": data["backend"]}).backend
    except ValidationError as exc:
        raise _config_error(exc, str(p)) from None
    try:
        return backend, RunConfig.model_validate(data)
    except ValidationError:
        return backend, None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run configuration (a regular UTF-8 file; duplicate keys, deep
    nesting and alias bombs refused: see :func:`~iapo.config._yaml.load_yaml`)."""
    p = Path(path)
    return parse_config(_read_yaml(p), str(p))


def _read_yaml(p: Path) -> Any:
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
    return data
