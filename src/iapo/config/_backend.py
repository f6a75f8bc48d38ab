"""Backend configs, one class per ``kind`` (openai when omitted), discriminated on ``kind``."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from iapo.config._sections import PriceConfig, StrictModel

__all__ = [
    "BACKEND_KINDS",
    "MAX_TIMEOUT",
    "MAX_TOKENS",
    "BackendConfig",
    "LocalBackendConfig",
    "OpenAIBackendConfig",
    "check_params",
]


#: The longest a request may take (a day) and the most tokens a completion may be capped at.
MAX_TIMEOUT = 86_400.0
MAX_TOKENS = 1_000_000
#: Request fields that iapo sets per request (``seed`` would make the N samples identical).
RESERVED_PARAMS = frozenset({"model", "messages", "n", "stream", "seed"})
#: Known sampling parameters: (lowest, highest, integer?) of each.
_PARAM_RANGES: dict[str, tuple[float, float, bool]] = {
    "max_tokens": (1, MAX_TOKENS, True),
    "max_completion_tokens": (1, MAX_TOKENS, True),
    "temperature": (0.0, 100.0, False),
    "top_p": (0.0, 1.0, False),
    "top_k": (-1, 1_000_000, True),
    "min_p": (0.0, 1.0, False),
    "presence_penalty": (-2.0, 2.0, False),
    "frequency_penalty": (-2.0, 2.0, False),
    "repetition_penalty": (0.0, 100.0, False),
}


def _check_number(name: str, value: Any) -> None:
    low, high, integer = _PARAM_RANGES[name]
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not low <= value <= high:
        raise ValueError(f".{name}: must be {kind} from {low:g} to {high:g} (got {value!r})")


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` if every request field in it is valid: no field iapo sets per request, known
    sampling parameters in their ranges, every number finite (JSON has no NaN or infinity).
    ``ValueError(".name: …")`` names the offending entry."""
    bad = sorted(RESERVED_PARAMS.intersection(params))
    if bad:
        raise ValueError(
            f".{bad[0]}: iapo sets model/messages/n/stream per request, and a fixed seed would "
            "make the N samples identical instead of independent: remove it"
        )
    for name, value in params.items():
        if name in _PARAM_RANGES:
            _check_number(name, value)
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"must hold only finite numbers, strings, lists and mappings ({exc})"
        ) from None
    return params


class _BackendBase(StrictModel):
    """What every kind of backend takes (``kind`` is narrowed by each kind's class)."""

    kind: str
    model: str = Field(min_length=1)
    concurrency: int = Field(8, ge=1, le=1024)
    max_attempts: int = Field(6, ge=1, le=100)
    timeout: float = Field(120.0, gt=0, le=MAX_TIMEOUT)
    params: dict[str, Any] = Field(default_factory=dict)
    price: PriceConfig | None = None

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_params(v)

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
    never put it here. ``http_client``: the HTTP stack under the ``openai`` SDK, ``aiohttp``
    (the default where ``openai[aiohttp]`` is installed) or ``httpx``; it changes no result, so
    it stays out of the run's id and its stored config."""

    kind: Literal["openai"] = "openai"
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    rpm: float | None = Field(None, gt=0, le=1e6)
    n_mode: Literal["auto", "native", "fanout"] = "auto"
    backoff: float = Field(0.5, ge=0, le=3600)
    max_backoff: float = Field(20.0, ge=0, le=3600)
    seed_per_sample: bool = False
    http_client: Literal["aiohttp", "httpx"] | None = Field(None, exclude=True)


class LocalBackendConfig(_BackendBase):
    """``kind: local``: a small model run in-process by llama.cpp (the ``local`` extra), no
    network. ``threads``: llama.cpp threads (default: by the machine's load); ``slots``: parallel
    sequences (default: ``concurrency``)."""

    kind: Literal["local"]
    threads: int | None = Field(None, ge=1, le=1024)
    slots: int | None = Field(None, ge=1, le=1024)


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
