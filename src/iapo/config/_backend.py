"""Backend configs, one class per ``kind`` (openai when omitted), discriminated on ``kind``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from iapo.config._sections import PriceConfig, StrictModel

__all__ = ["BACKEND_KINDS", "BackendConfig", "LocalBackendConfig", "OpenAIBackendConfig"]


class _BackendBase(StrictModel):
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
