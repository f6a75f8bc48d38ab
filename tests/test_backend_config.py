"""The backend section of a config: one class per kind, one-line errors that name the kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_local import HAVE_SMOLLM, PROMPTS, QUERIES, SMOL

from iapo.answers import get_extractor
from iapo.backends import LLMBackend, build_live_backend
from iapo.config import (
    BackendConfig,
    LocalBackendConfig,
    OpenAIBackendConfig,
    load_config,
    parse_config,
)
from iapo.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def live(backend: Any) -> dict[str, Any]:
    return {
        "strategy": "majority_vote",
        "queries": "q.jsonl",
        "prompts": [{"id": "a", "system": "Solve."}],
        "n_max": 2,
        "contexts": {"grid": {"cost_weight": [0]}},
        "budget": 10,
        "backend": backend,
    }


def backend_of(backend: Any) -> BackendConfig | None:
    return parse_config(live(backend), "c.yaml").backend


def error(backend: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(live(backend), "c.yaml")
    message = str(info.value)
    assert "\n" not in message and ".openai." not in message and ".local." not in message
    return message


def test_the_kind_picks_the_class_and_openai_is_the_default() -> None:
    plain = backend_of({"model": "m", "rpm": 30, "n_mode": "fanout"})
    assert isinstance(plain, OpenAIBackendConfig)
    assert plain.kind == "openai" and plain.rpm == 30 and plain.n_mode == "fanout"
    local = backend_of({"kind": "local", "model": SMOL, "threads": 2, "slots": 3})
    assert isinstance(local, LocalBackendConfig)
    assert (local.threads, local.slots, local.concurrency) == (2, 3, 8)
    assert set(local.model_dump()) == {
        "kind",
        "model",
        "concurrency",
        "max_attempts",
        "timeout",
    } | {
        "params",
        "price",
        "threads",
        "slots",
    }
    for example in sorted((REPO / "examples").glob("*.yaml")):
        load_config(example)  # the shipped configs keep loading


def test_a_key_of_another_kind_says_which_kind_it_belongs_to() -> None:
    assert error({"model": "m", "threads": 2}) == (
        "c.yaml: backend.threads: unknown key for kind: openai: it is a kind: local setting: "
        "remove it or set kind: local"
    )
    assert "backend.base_url: unknown key for kind: local: it is a kind: openai setting" in (
        error({"kind": "local", "model": SMOL, "base_url": "http://127.0.0.1:1/v1"})
    )
    assert error({"model": "m", "thread": 2}) == (
        "c.yaml: backend.thread: unknown key for kind: openai: remove it or check its spelling"
    )


def test_other_backend_mistakes_name_the_field_without_the_kind_tag() -> None:
    assert error({"kind": "remote", "model": "m"}) == (
        "c.yaml: backend.kind: must be 'openai' or 'local' (got 'remote')"
    )
    assert error({"kind": "local"}) == "c.yaml: backend.model: required: add it"
    assert error({"model": "m", "concurrency": 0}).startswith("c.yaml: backend.concurrency: ")
    assert error({"kind": "local", "model": "m", "slots": 0}).startswith("c.yaml: backend.slots: ")
    assert error("gpt-4o") == "c.yaml: backend: must be a mapping of settings (kind, model, …)"
    assert "never write an API key" in error({"kind": "local", "model": "m", "api_key": "sk-x"})


def test_a_result_written_before_the_split_still_loads() -> None:
    flat = {
        "model": "m",
        "base_url": None,
        "api_key_env": "OPENAI_API_KEY",
        "concurrency": 8,
        "rpm": None,
        "n_mode": "auto",
        "max_attempts": 6,
        "backoff": 0.5,
        "max_backoff": 20.0,
        "timeout": 120.0,
        "seed_per_sample": False,
        "params": {},
        "price": None,
        "threads": None,
        "slots": None,
    }
    assert isinstance(backend_of({**flat, "kind": "openai"}), OpenAIBackendConfig)
    assert isinstance(backend_of({**flat, "kind": "local"}), LocalBackendConfig)
    # a setting of the other kind that is not at its default was meant: it is refused
    assert "unknown key for kind: local" in error({**flat, "kind": "local", "rpm": 5})


def test_live_backends_are_built_by_kind() -> None:
    cfg = backend_of({"base_url": "http://127.0.0.1:1/v1", "model": "m", "concurrency": 3})
    assert cfg is not None
    backend = build_live_backend(cfg, PROMPTS, QUERIES, get_extractor("number"))
    assert isinstance(backend, LLMBackend) and backend.concurrency == 3
    if not HAVE_SMOLLM:
        return
    local = backend_of({"kind": "local", "model": SMOL, "concurrency": 2})
    assert local is not None
    built = build_live_backend(local, PROMPTS, QUERIES, get_extractor("number"))
    assert built.name.startswith(f"local({SMOL}") and built.concurrency == 2
