"""Build a live backend from a run configuration, by its ``kind``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from iapo.backends._base import Backend
from iapo.backends._local import make_local_backend
from iapo.backends._openai import LLMBackend
from iapo.chat_client import Completion, OpenAIChatClient
from iapo.config import BackendConfig, LocalBackendConfig, OpenAIBackendConfig
from iapo.types import PromptSpec, Query

__all__ = ["build_live_backend", "cost_function"]


def cost_function(cfg: BackendConfig) -> tuple[Callable[[Completion], float], str]:
    """A sample's cost and its unit: dollars with a price table, else completion tokens (the
    billed counts: as reported, or the worst case where the endpoint reported none usably)."""
    price = cfg.price
    if price is None:

        def tokens(c: Completion) -> float:
            return float(c.billed_completion_tokens)

        return tokens, "completion_tokens"

    def dollars(c: Completion) -> float:
        return (
            c.billed_prompt_tokens * price.prompt + c.billed_completion_tokens * price.completion
        ) / 1e6

    return dollars, "usd"


def build_live_backend(
    cfg: BackendConfig,
    prompts: Mapping[str, PromptSpec],
    queries: Mapping[str, Query],
    extract: Callable[[str], str | None],
    scorers: Mapping[str, Any] | None = None,
) -> Backend:
    """The backend of ``cfg``'s kind: an OpenAI-compatible endpoint, or the embedded local model
    (which starts nothing until its first completion); ``scorers`` map objective names to
    :mod:`iapo.scorers` scorers (Best-of-N)."""
    cost, _ = cost_function(cfg)
    if isinstance(cfg, LocalBackendConfig):
        return make_local_backend(cfg, prompts, queries, extract, cost, scorers)
    return _openai_backend(cfg, prompts, queries, extract, cost, scorers)


def _openai_backend(
    cfg: OpenAIBackendConfig,
    prompts: Mapping[str, PromptSpec],
    queries: Mapping[str, Query],
    extract: Callable[[str], str | None],
    cost: Callable[[Completion], float],
    scorers: Mapping[str, Any] | None,
) -> LLMBackend:
    client = OpenAIChatClient(
        cfg.base_url,
        cfg.model,
        api_key_env=cfg.api_key_env,
        concurrency=cfg.concurrency,
        rpm=cfg.rpm,
        max_attempts=cfg.max_attempts,
        backoff=cfg.backoff,
        max_backoff=cfg.max_backoff,
        timeout=cfg.timeout,
        n_mode=cfg.n_mode,
        http_client=cfg.http_client,
    )
    return LLMBackend(
        client,
        prompts,
        queries,
        params=cfg.params,
        extract=extract,
        cost=cost,
        scorers=scorers,
        seed_per_sample=cfg.seed_per_sample,
    )
