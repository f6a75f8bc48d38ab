"""Run configuration: a YAML file validated by pydantic models.

Every validation problem becomes one :class:`~iapo.errors.ConfigError` line naming the file, the
field and the fix. The models live by concept: the plain sections (contexts, algorithm, split,
cost, price, prompts), the backend configs by ``kind``, the run config with its source (a pool
to replay or a live backend), and the reading and error rendering.
"""

from __future__ import annotations

from iapo.config._backend import (
    BACKEND_KINDS,
    MAX_TIMEOUT,
    MAX_TOKENS,
    BackendConfig,
    LocalBackendConfig,
    OpenAIBackendConfig,
    check_params,
)
from iapo.config._parse import load_config, load_worker_config, parse_config
from iapo.config._run import LiveSource, PoolSource, RunConfig, RunSource
from iapo.config._sections import (
    MAX_BUDGET,
    MAX_CAP,
    MAX_PRICE,
    MAX_SEED,
    MAX_WEIGHT,
    AdaptiveConfig,
    AlgorithmConfig,
    ContextsConfig,
    ContextSpec,
    CostConfig,
    ExecutionConfig,
    GridSpec,
    PriceConfig,
    PromptConfig,
    SplitConfig,
)

__all__ = [
    "BACKEND_KINDS",
    "MAX_BUDGET",
    "MAX_CAP",
    "MAX_PRICE",
    "MAX_SEED",
    "MAX_TIMEOUT",
    "MAX_TOKENS",
    "MAX_WEIGHT",
    "AdaptiveConfig",
    "AlgorithmConfig",
    "BackendConfig",
    "ContextSpec",
    "ContextsConfig",
    "CostConfig",
    "ExecutionConfig",
    "GridSpec",
    "LiveSource",
    "LocalBackendConfig",
    "OpenAIBackendConfig",
    "PoolSource",
    "PriceConfig",
    "PromptConfig",
    "RunConfig",
    "RunSource",
    "SplitConfig",
    "check_params",
    "load_config",
    "load_worker_config",
    "parse_config",
]
