"""The run configuration (:class:`RunConfig`) and its source of completions: a pool to replay
(:class:`PoolSource`) or a live backend (:class:`LiveSource`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from iapo.answers import get_extractor
from iapo.config._backend import BackendConfig
from iapo.config._secrets import find_secret
from iapo.config._sections import (
    MAX_BUDGET,
    AdaptiveConfig,
    AlgorithmConfig,
    ContextsConfig,
    CostConfig,
    ExecutionConfig,
    PromptConfig,
    Seed,
    SplitConfig,
    StrictModel,
)
from iapo.estimators import TieCredit
from iapo.types import Context

__all__ = ["LiveSource", "PoolSource", "RunConfig", "RunSource"]


class RunConfig(StrictModel):
    name: str = Field("run", min_length=1)
    strategy: Literal["majority_vote", "best_of_n"]
    #: majority vote's credit for a tie at the top that includes gold: 1/t (fractional) or 0.5
    #: (half, the paper's released code). Left at fractional, it stays out of the run's id.
    tie_credit: TieCredit = "fractional"
    objectives: list[str] | None = None
    pool: str | None = None
    prompts: list[str] | list[PromptConfig] | None = None
    n_max: int = Field(ge=1, le=256)
    contexts: ContextsConfig
    budget: int = Field(ge=1, le=MAX_BUDGET)
    algorithm: AlgorithmConfig = Field(default_factory=lambda: AlgorithmConfig())
    #: adaptive majority-vote arms (issue #15); None: fixed arms only (and not in the run's id)
    adaptive: AdaptiveConfig | None = None
    split: SplitConfig = Field(default_factory=lambda: SplitConfig.model_validate({}))
    cost: CostConfig = Field(default_factory=lambda: CostConfig.model_validate({}))
    seed: Seed = 0
    storage: str | None = None
    run_dir: str | None = None
    backend: BackendConfig | None = None
    queries: str | None = None
    extract: str | dict[str, Any] = "number"
    scorers: dict[str, Any] | None = None
    execution: ExecutionConfig = Field(default_factory=lambda: ExecutionConfig.model_validate({}))

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        found = find_secret(data)
        if found:
            raise ValueError(f"{found[0]}: {found[1]}")
        return data

    @field_validator("extract")
    @classmethod
    def _extract(cls, v: str | dict[str, Any]) -> str | dict[str, Any]:
        get_extractor(v)  # a ValueError naming the problem (an unknown name, a broken regex)
        return v

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
        if self.execution.mode == "distributed" and self.pool is not None:
            raise ValueError(
                "execution.mode: distributed needs a live 'backend' (a replayed pool is drawn "
                "in process): use mode: local, or sample a backend"
            )
        if self.strategy == "majority_vote" and self.objectives not in (None, ["accuracy"]):
            raise ValueError(
                "objectives: majority_vote has one objective, 'accuracy': drop 'objectives'"
            )
        if self.adaptive is not None and self.strategy != "majority_vote":
            raise ValueError(
                "adaptive: adaptive arms stop a majority vote early; best_of_n has no votes: "
                "drop 'adaptive'"
            )
        if self.adaptive is not None and self.algorithm.estimator != "ustat":
            raise ValueError(
                "adaptive: adaptive arms are estimated over orderings of each pull (ustat): "
                "drop algorithm.estimator or 'adaptive'"
            )
        if self.strategy == "best_of_n" and self.tie_credit != "fractional":
            raise ValueError(
                "tie_credit: applies to majority_vote only (best_of_n has no votes): drop it"
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
