"""Backends: where completions come from (a replayed pool, an OpenAI-compatible endpoint, …)."""

from __future__ import annotations

from iapo.backends._base import KEY_SCHEMA, Backend, OnSamples, stable_key
from iapo.backends._factory import build_live_backend, cost_function
from iapo.backends._mock import MockBackend
from iapo.backends._openai import LLMBackend
from iapo.backends._replay import ReplayBackend
from iapo.chat_client import Completion, OpenAIChatClient

__all__ = [
    "KEY_SCHEMA",
    "Backend",
    "Completion",
    "LLMBackend",
    "MockBackend",
    "OnSamples",
    "OpenAIChatClient",
    "ReplayBackend",
    "build_live_backend",
    "cost_function",
    "stable_key",
]
