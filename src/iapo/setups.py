"""From a validated config to everything a run needs: a replay setup (a recorded pool) or a live
setup (an endpoint, its prompts and queries), behind one small interface.

``setup(config)`` does every check that needs the data (the pool's prompts and objectives, the
query file, the prompt templates); nothing is written and nothing is started.
"""

from __future__ import annotations

import importlib
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from iapo.algorithms import Algorithm, create
from iapo.answers import Extractor, get_extractor
from iapo.backends import Backend, ReplayBackend, build_live_backend, stable_key
from iapo.config import (
    MAX_BUDGET,
    BackendConfig,
    LiveSource,
    PoolSource,
    RunConfig,
    load_config,
)
from iapo.errors import ConfigError, InputError
from iapo.inputs import not_a_file
from iapo.locations import check_storage, default_run_dir
from iapo.pools import Pool, load_pool
from iapo.problem import Problem, split_queries
from iapo.queries import load_queries
from iapo.scorers import Scorer, build_scorers
from iapo.strategies import Strategy, get_strategy
from iapo.types import Context, PromptSpec, Query

__all__ = [
    "LiveSetup",
    "ReplaySetup",
    "Setup",
    "builtin_pool_path",
    "resolve_data_path",
    "setup",
]

BUILTIN_PREFIX = "builtin:"


def builtin_pool_path(name: str) -> Path:
    """Path of a data file shipped inside the package (``builtin:NAME``)."""
    root = resources.files("iapo") / "data"
    path = Path(str(root / f"{name}.jsonl"))
    if not path.exists():
        names = sorted(p.name[: -len(".jsonl")] for p in Path(str(root)).glob("*.jsonl"))
        raise ConfigError(f"no built-in pool {name!r}: use one of {', '.join(names)}", field="pool")
    return path


def resolve_data_path(ref: str, base: Path, *, field: str | None = None) -> Path:
    """A data file: ``builtin:NAME`` (a pool or query file shipped with iapo) or a path relative
    to ``base``. With ``field``, a path that exists but is no regular file (a directory, a FIFO,
    a device) is refused as that config field (``ConfigError``)."""
    if ref.startswith(BUILTIN_PREFIX):
        return builtin_pool_path(ref[len(BUILTIN_PREFIX) :])
    p = Path(ref).expanduser()
    p = p if p.is_absolute() else (base / p)
    kind = not_a_file(p) if field else None
    if kind:
        raise ConfigError(f"{p} is {kind}, not a file: give the path of a file", field=field)
    return p


@dataclass(frozen=True, kw_only=True)
class Setup(ABC):
    """Everything a run needs, derived from a config (nothing is written yet)."""

    config: RunConfig
    config_path: Path | None
    strategy: Strategy
    contexts: tuple[Context, ...]
    prompts: tuple[str, ...]
    train: tuple[str, ...]
    test: tuple[str, ...]
    cost_scale: float
    cost_unit: str
    run_dir: Path
    storage: str
    run_id: str

    @abstractmethod
    def make_backend(self) -> Backend:
        """The backend completions come from (which starts nothing until it is first used)."""

    def mean_costs(self) -> Mapping[str, float] | None:
        """Each prompt's expected cost per completion on the training queries, if known."""
        return None

    @property
    def source(self) -> str | None:
        """The config file, for error messages."""
        return str(self.config_path) if self.config_path else None

    @property
    def problem(self) -> Problem:
        return Problem(
            self.prompts,
            self.train,
            self.config.n_max,
            self.contexts,
            self.strategy,
            self.config.algorithm.estimator,
            self.config.adaptive.ids() if self.config.adaptive else (),
        )

    def make_algorithm(self, budget: int | None = None) -> Algorithm:
        """The configured algorithm (a ``BudgetError`` naming the config if it cannot run)."""
        cfg = self.config
        if budget is not None and not 1 <= budget <= MAX_BUDGET:
            raise ConfigError(
                f"must be from 1 to {MAX_BUDGET:,} completions (got {budget:,}): lower it",
                source="--budget",
                field="budget",
            )
        try:
            return create(
                cfg.algorithm.name,
                self.problem,
                budget if budget is not None else cfg.budget,
                cfg.seed,
                **cfg.algorithm.params,
            )
        except (ValueError, TypeError) as exc:
            field, message = "algorithm", str(exc)
            param = re.match(r"(params\.\w+): (.*)", message)
            if param:
                field, message = f"algorithm.{param.group(1)}", param.group(2)
            raise ConfigError(message, source=self.source, field=field) from None
        except InputError as exc:
            raise type(exc)(
                str(exc).split(": ", 1)[-1], source=self.source, field="budget"
            ) from None


@dataclass(frozen=True, kw_only=True)
class ReplaySetup(Setup):
    """A run that replays a recorded pool as if it were the LLM (ground truth is exact)."""

    pool: Pool

    def make_backend(self) -> Backend:
        return ReplayBackend(self.pool, self.config.seed)

    def mean_costs(self) -> Mapping[str, float]:
        return {
            p: float(np.mean([self.pool.cell(p, q).mean_cost() for q in self.train]))
            for p in self.prompts
        }


@dataclass(frozen=True, kw_only=True)
class LiveSetup(Setup):
    """A run that samples a live backend (an OpenAI-compatible endpoint or the local model)."""

    queries: Mapping[str, Query]
    prompt_specs: Mapping[str, PromptSpec]
    extract: Extractor
    scorers: Mapping[str, Scorer] | None

    backend_config: BackendConfig

    def make_backend(self) -> Backend:
        return build_live_backend(
            self.backend_config, self.prompt_specs, self.queries, self.extract, self.scorers
        )


def setup(
    config: RunConfig | str | Path,
    *,
    config_path: Path | None = None,
    run_dir: str | Path | None = None,
    storage: str | None = None,
) -> Setup:
    """Check a config against its pool (or its live backend's queries) and derive the run's
    setup. Writes nothing and starts nothing."""
    if not isinstance(config, RunConfig):
        config_path = Path(config)
        config = load_config(config_path)
    src = str(config_path) if config_path else None
    base = config_path.parent if config_path else Path.cwd()
    source = config.source
    try:
        if isinstance(source, PoolSource):
            return _replay_setup(config, source, src, base, config_path, run_dir, storage)
        return _live_setup(config, source, src, base, config_path, run_dir, storage)
    except InputError as exc:
        raise (exc.within(src) if exc.source is None else exc) from None


def _common(
    config: RunConfig,
    objectives: tuple[str, ...],
    queries: tuple[str, ...],
    src: str | None,
    config_path: Path | None,
    run_dir: str | Path | None,
    storage: str | None,
    identity: Mapping[str, Any],
) -> dict[str, Any]:
    """The fields every setup shares: strategy, contexts, split, where the run lives, its id."""
    try:
        strategy = get_strategy(config.strategy, objectives, config.tie_credit)
    except ValueError as exc:
        raise ConfigError(str(exc), source=src, field="strategy") from None
    contexts = tuple(config.build_contexts(objectives))
    if not contexts:
        raise ConfigError(
            "the context grid is empty: give weights that sum to ≤ 1", source=src, field="contexts"
        )
    for i, c in enumerate(contexts):
        problem = strategy.validate_context(c)
        if problem:
            raise ConfigError(problem + ": fix the weights", source=src, field=f"contexts[{i}]")
    names = [c.name for c in contexts]
    if len(set(names)) != len(names):
        raise ConfigError("context names must be unique", source=src, field="contexts")
    train, test = split_queries(queries, config.split.test_fraction, config.split.seed)
    if not train:
        raise ConfigError(
            "no training queries left: lower split.test_fraction",
            source=src,
            field="split.test_fraction",
        )
    rdir = Path(run_dir) if run_dir else Path(config.run_dir or default_run_dir(config.name))
    store = storage or config.storage or f"sqlite:///{rdir / 'bank.sqlite'}"
    check_storage(store, "--storage" if storage else src)
    # the default tie rule stays out of the id: runs from before the option keep theirs; where
    # completions are drawn (execution) never changes them: a distributed run resumes a local one
    fixed = (
        {"run_dir", "storage", "execution"}
        | ({"tie_credit"} if config.tie_credit == "fractional" else set())
        | ({"adaptive"} if config.adaptive is None else set())  # ids of runs without keep theirs
    )
    ident = {"config": config.model_dump(exclude=fixed), **identity}
    return {
        "config": config,
        "config_path": config_path,
        "strategy": strategy,
        "contexts": contexts,
        "train": train,
        "test": test,
        "run_dir": rdir,
        "storage": store,
        "run_id": stable_key(ident)[:12],
    }


def _replay_setup(
    config: RunConfig,
    source: PoolSource,
    src: str | None,
    base: Path,
    config_path: Path | None,
    run_dir: str | Path | None,
    storage: str | None,
) -> ReplaySetup:
    pool_path = resolve_data_path(source.pool, base, field="pool")
    if not pool_path.exists():
        raise ConfigError(f"no pool file at {pool_path}: check the path", source=src, field="pool")
    mv = config.strategy == "majority_vote"
    pool = load_pool(pool_path, require_gold=mv)
    objectives = ("accuracy",) if mv else tuple(config.objectives or pool.objectives)
    missing = [o for o in objectives if o not in pool.objectives]
    if missing:
        raise ConfigError(
            f"objectives {missing} are not scored in the pool (it has "
            f"{list(pool.objectives)}): use those names",
            source=src,
            field="objectives",
        )
    prompts = tuple(config.prompt_ids) if config.prompt_ids else pool.prompts
    unknown = [p for p in prompts if p not in pool.prompts]
    if unknown:
        raise ConfigError(
            f"prompts {unknown} are not in the pool (it has {list(pool.prompts)})",
            source=src,
            field="prompts",
        )
    scale = config.cost.scale
    if config.cost.normalize == "max":
        top = pool.subset(prompts=prompts).max_cost()
        scale = scale / top if top > 0 else scale
    common = _common(
        config,
        objectives,
        pool.queries,
        src,
        config_path,
        run_dir,
        storage,
        {"pool": pool.meta.get("sha256")},
    )
    return ReplaySetup(
        **common,
        prompts=prompts,
        cost_scale=scale,
        cost_unit=pool.cost_unit,
        pool=pool.subset(prompts=prompts),
    )


def _require_openai(kind: str, src: str | None) -> None:
    """Every live backend talks through the ``openai`` SDK: refuse the config at set-up, before
    a run record exists, when the SDK cannot be imported (missing or broken install)."""
    try:
        importlib.import_module("openai")
    except ImportError:
        extra = "local" if kind == "local" else "openai"
        raise ConfigError(
            f"kind: {kind} needs the openai package, which is not installed: "
            f"pip install 'iapo[{extra}]'",
            source=src,
            field="backend.kind",
        ) from None


def _live_setup(
    config: RunConfig,
    source: LiveSource,
    src: str | None,
    base: Path,
    config_path: Path | None,
    run_dir: str | Path | None,
    storage: str | None,
) -> LiveSetup:
    backend = source.backend
    _require_openai(backend.kind, src)
    mv = config.strategy == "majority_vote"
    objectives = ("accuracy",) if mv else tuple(config.objectives or source.objectives)
    try:
        extract = get_extractor(source.extract)
    except ValueError as exc:
        raise ConfigError(str(exc), source=src, field="extract") from None
    scorers = None
    if source.scorers:
        try:
            scorers = build_scorers(source.scorers, extract=extract)
        except ValueError as exc:
            raise ConfigError(str(exc), source=src, field="scorers") from None
    qpath = resolve_data_path(source.queries, base, field="queries")
    queries = load_queries(qpath)
    missing = [q.id for q in queries if q.gold is None]
    if missing and mv:
        raise ConfigError(
            f"query {missing[0]!r} has no gold answer, which majority voting needs: add 'gold'",
            source=str(qpath),
            field="gold",
        )
    specs = {p.id: PromptSpec(p.id, p.system, p.template) for p in source.prompts}
    for spec in specs.values():
        try:
            spec.render(queries[0])
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"the template of prompt {spec.id!r} names an unknown field {exc}: use "
                "{question} or a field of the query file",
                source=src,
                field="prompts",
            ) from None
    scale = config.cost.scale
    max_tokens = backend.params.get("max_tokens")
    if config.cost.normalize == "max" and isinstance(max_tokens, int) and max_tokens > 0:
        per = max_tokens * (backend.price.completion / 1e6 if backend.price else 1.0)
        scale = scale / per if per > 0 else scale
    common = _common(
        config, objectives, tuple(q.id for q in queries), src, config_path, run_dir, storage, {}
    )
    return LiveSetup(
        **common,
        prompts=tuple(specs),
        cost_scale=scale,
        cost_unit="usd" if backend.price else "completion_tokens",
        queries={q.id: q for q in queries},
        prompt_specs=specs,
        extract=extract,
        scorers=scorers,
        backend_config=backend,
    )
