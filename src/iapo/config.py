"""Run configuration: a YAML file validated by pydantic models.

Every validation problem becomes one :class:`~iapo.errors.ConfigError` line naming the file, the
field and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from iapo.contexts import context_grid
from iapo.errors import ConfigError
from iapo.types import Context

__all__ = [
    "BACKEND_KINDS",
    "AlgorithmConfig",
    "BackendConfig",
    "ContextsConfig",
    "CostConfig",
    "LiveSource",
    "LocalBackendConfig",
    "OpenAIBackendConfig",
    "PoolSource",
    "RunConfig",
    "RunSource",
    "SplitConfig",
    "load_config",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class ContextSpec(_Model):
    name: str | None = None
    weights: dict[str, FiniteFloat] = Field(default_factory=dict)
    cost_weight: FiniteFloat = Field(0.0, ge=0)


class GridSpec(_Model):
    weights: dict[str, list[FiniteFloat]] = Field(default_factory=dict)
    complement: str | None = None
    cost_weight: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=lambda: [0.0], min_length=1
    )


class ContextsConfig(_Model):
    """Either ``list`` (explicit contexts) or ``grid``."""

    items: list[ContextSpec] | None = Field(None, alias="list")
    grid: GridSpec | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ContextsConfig:
        if (self.items is None) == (self.grid is None):
            raise ValueError("give exactly one of 'list' or 'grid'")
        if self.items is not None and not self.items:
            raise ValueError("the context list is empty: give at least one context")
        return self

    def build(self, default_objective: str | None) -> list[Context]:
        if self.grid is not None:
            weights = dict(self.grid.weights)
            if not weights and self.grid.complement is None and default_objective:
                weights = {default_objective: [1.0]}
            return context_grid(weights, self.grid.cost_weight, self.grid.complement)
        from iapo.contexts import context_name

        out = []
        assert self.items is not None
        for spec in self.items:
            w = dict(spec.weights) or ({default_objective: 1.0} if default_objective else {})
            out.append(Context(spec.name or context_name(w, spec.cost_weight), w, spec.cost_weight))
        return out


class AlgorithmConfig(_Model):
    name: str = "psst"
    estimator: Literal["ustat", "blocks"] = "ustat"
    params: dict[str, Any] = Field(default_factory=dict)


class SplitConfig(_Model):
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    seed: int = 0


class CostConfig(_Model):
    """How a sample's cost enters utilities: ``cost · scale``; ``normalize: max`` divides by the
    pool's largest per-sample cost so costs lie in [0, 1]."""

    normalize: Literal["none", "max"] = "max"
    scale: FiniteFloat = Field(1.0, gt=0)
    #: Never spend more than this (in the backend's cost unit: tokens, or dollars with a price).
    cap: FiniteFloat | None = Field(None, gt=0)


class PriceConfig(_Model):
    """Dollars per million tokens; with a price, a sample's cost is in dollars."""

    prompt: FiniteFloat = Field(0.0, ge=0)
    completion: FiniteFloat = Field(0.0, ge=0)


class _BackendBase(_Model):
    """What every kind of backend takes (``kind`` is narrowed by each kind's class)."""

    kind: str
    model: str = Field(min_length=1)
    concurrency: int = Field(8, ge=1, le=1024)
    max_attempts: int = Field(6, ge=1, le=100)
    timeout: float = Field(120.0, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)
    price: PriceConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_key(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "api_key" in data:
            raise ValueError(
                "never write an API key into a config: set api_key_env to the name of the "
                "environment variable that holds it"
            )
        # A result written before the kinds were split carries the keys of every kind, those of
        # the other kinds at their defaults: they are dropped, so that it still loads.
        foreign = {
            name: field.default
            for other in BACKEND_KINDS.values()
            for name, field in other.model_fields.items()
            if name not in cls.model_fields
        }
        return {k: v for k, v in data.items() if not (k in foreign and v == foreign[k])}


class OpenAIBackendConfig(_BackendBase):
    """``kind: openai`` (the default): any OpenAI-compatible endpoint at ``base_url`` (OpenAI
    itself when omitted). The API key is read from the environment variable ``api_key_env``;
    never put it here."""

    kind: Literal["openai"] = "openai"
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    rpm: float | None = Field(None, gt=0)
    n_mode: Literal["auto", "native", "fanout"] = "auto"
    backoff: float = Field(0.5, ge=0)
    max_backoff: float = Field(20.0, ge=0)
    seed_per_sample: bool = False


class LocalBackendConfig(_BackendBase):
    """``kind: local``: a small model run in-process by llama.cpp (the ``local`` extra), no
    network. ``threads``: llama.cpp threads (default: by the machine's load); ``slots``: parallel
    sequences (default: ``concurrency``)."""

    kind: Literal["local"]
    threads: int | None = Field(None, ge=1)
    slots: int | None = Field(None, ge=1)


#: The backend config class of each ``kind``.
BACKEND_KINDS: dict[str, type[OpenAIBackendConfig] | type[LocalBackendConfig]] = {
    "openai": OpenAIBackendConfig,
    "local": LocalBackendConfig,
}


def _backend_kind(data: Any) -> str:
    """The union tag: ``kind``, ``"openai"`` when omitted."""
    kind = data.get("kind", "openai") if isinstance(data, dict) else getattr(data, "kind", "openai")
    return kind if isinstance(kind, str) else repr(kind)


#: Where live completions come from: one config class per ``kind`` (openai when omitted).
BackendConfig = Annotated[
    Annotated[OpenAIBackendConfig, Tag("openai")] | Annotated[LocalBackendConfig, Tag("local")],
    Discriminator(_backend_kind),
]


class PromptConfig(_Model):
    id: str = Field(min_length=1)
    system: str | None = None
    template: str = "{question}"


class RunConfig(_Model):
    name: str = Field("run", min_length=1)
    strategy: Literal["majority_vote", "best_of_n"]
    objectives: list[str] | None = None
    pool: str | None = None
    prompts: list[str] | list[PromptConfig] | None = None
    n_max: int = Field(ge=1, le=256)
    contexts: ContextsConfig
    budget: int = Field(ge=1)
    algorithm: AlgorithmConfig = Field(default_factory=lambda: AlgorithmConfig())
    split: SplitConfig = Field(default_factory=lambda: SplitConfig.model_validate({}))
    cost: CostConfig = Field(default_factory=lambda: CostConfig.model_validate({}))
    seed: int = 0
    storage: str | None = None
    run_dir: str | None = None
    backend: BackendConfig | None = None
    queries: str | None = None
    extract: str | dict[str, Any] = "number"
    scorers: dict[str, Any] | None = None

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError("list at least one objective")
            if len(set(v)) != len(v):
                raise ValueError("objective names must be unique")
        return v

    @field_validator("prompts")
    @classmethod
    def _prompts(cls, v: list[Any] | None) -> list[Any] | None:
        if v is not None:
            if not v:
                raise ValueError("the prompt set is empty: list at least one prompt")
            ids = [p if isinstance(p, str) else p.id for p in v]
            dup = sorted({i for i in ids if ids.count(i) > 1})
            if dup:
                raise ValueError(f"duplicate prompt ids {dup}: give each prompt its own id")
        return v

    @model_validator(mode="after")
    def _source(self) -> RunConfig:
        if (self.pool is None) == (self.backend is None):
            raise ValueError("pool: give either a 'pool' to replay or a 'backend' to sample from")
        if self.backend is not None:
            if self.queries is None:
                raise ValueError(
                    "queries: a live backend needs 'queries', a JSONL file of questions"
                )
            if not self.prompts or any(isinstance(p, str) for p in self.prompts):
                raise ValueError(
                    "prompts: a live backend needs prompts with text: [{id, system, template}]"
                )
        if self.strategy == "majority_vote" and self.objectives not in (None, ["accuracy"]):
            raise ValueError(
                "objectives: majority_vote has one objective, 'accuracy': drop 'objectives'"
            )
        if self.backend is not None and self.strategy == "best_of_n":
            if not self.scorers:
                raise ValueError(
                    "scorers: a live best_of_n run needs 'scorers': one per objective "
                    "(exact_match, judge, http, python, profanity, agreement)"
                )
            missing = [o for o in self.objectives or self.scorers if o not in self.scorers]
            if missing:
                raise ValueError(
                    f"scorers: objectives {missing} have no scorer: add them under 'scorers'"
                )
        return self

    # -- derived ------------------------------------------------------------------------
    @property
    def source(self) -> RunSource:
        """Where completions come from: a pool to replay, or a live backend (validated: exactly
        one of the two, with what it needs)."""
        if self.pool is not None:
            return PoolSource(self.pool)
        assert self.backend is not None and self.queries is not None and self.prompts is not None
        return LiveSource(
            self.backend,
            self.queries,
            tuple(p for p in self.prompts if isinstance(p, PromptConfig)),
            self.extract,
            self.scorers,
        )

    @property
    def prompt_ids(self) -> list[str] | None:
        if self.prompts is None:
            return None
        return [p if isinstance(p, str) else p.id for p in self.prompts]

    def build_contexts(self, objectives: tuple[str, ...]) -> list[Context]:
        default = objectives[0] if len(objectives) == 1 else None
        return self.contexts.build(default)


@dataclass(frozen=True)
class PoolSource:
    """Replay the recorded pool at ``pool`` (a path, or ``builtin:NAME``)."""

    pool: str


@dataclass(frozen=True)
class LiveSource:
    """Sample ``backend`` on the questions of ``queries`` with these prompt texts."""

    backend: BackendConfig
    queries: str
    prompts: tuple[PromptConfig, ...]
    extract: str | dict[str, Any]
    scorers: dict[str, Any] | None

    @property
    def objectives(self) -> tuple[str, ...]:
        return tuple(self.scorers or ())


#: A run's source of completions, by kind.
RunSource = PoolSource | LiveSource


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
    if kind not in ("model_type",) and isinstance(inp, str | int | float) and len(repr(inp)) < 40:
        msg += f" (got {inp!r})"
    return msg


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
        prefixed = re.match(r"([a-z_][\w.]*): (.*)", message)
        if prefixed and field == "(top level)":  # a cross-field check names its field itself
            field, message = prefixed.group(1), prefixed.group(2)
        raise ConfigError(message + more, source=source, field=field) from None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run configuration."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file: check the path", source=str(p)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=str(p)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or "invalid syntax"
        raise ConfigError(
            f"malformed YAML at {where}: {problem}: fix the syntax", source=str(p)
        ) from None
    return parse_config(data, str(p))
