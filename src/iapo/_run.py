"""The shared core of the Python API and the CLI: set up a run from a config, run, evaluate."""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from iapo import algorithms
from iapo.backends import Backend, ReplayBackend, stable_key
from iapo.bank import open_bank
from iapo.config import RunConfig, load_config
from iapo.errors import BudgetError, ConfigError, InputError, PoolError
from iapo.pools import Pool, load_pool
from iapo.problem import Problem, split_queries
from iapo.strategies import Strategy, get_strategy
from iapo.study import Progress, Study
from iapo.types import Arm, Context, PromptSpec, Query

__all__ = [
    "Evaluation",
    "RunResult",
    "Setup",
    "evaluate",
    "exact_q_table",
    "preflight",
    "run",
    "setup",
    "split_queries",
]

BUILTIN_PREFIX = "builtin:"


def builtin_pool_path(name: str) -> Path:
    """Path of a pool shipped inside the package (``builtin:NAME``)."""
    root = resources.files("iapo") / "data"
    path = Path(str(root / f"{name}.jsonl"))
    if not path.exists():
        names = sorted(p.name[: -len(".jsonl")] for p in Path(str(root)).glob("*.jsonl"))
        raise ConfigError(f"no built-in pool {name!r}: use one of {', '.join(names)}", field="pool")
    return path


def resolve_data_path(ref: str, base: Path) -> Path:
    """A data file: ``builtin:NAME`` (shipped with iapo) or a path relative to ``base``."""
    return resolve_pool_path(ref, base)


def resolve_pool_path(ref: str, base: Path) -> Path:
    if ref.startswith(BUILTIN_PREFIX):
        return builtin_pool_path(ref[len(BUILTIN_PREFIX) :])
    p = Path(ref).expanduser()
    return p if p.is_absolute() else (base / p)


def exact_q_table(
    pool: Pool,
    strategy: Strategy,
    contexts: tuple[Context, ...],
    n_max: int,
    queries: tuple[str, ...] | None = None,
    prompts: tuple[str, ...] | None = None,
) -> NDArray[np.float64]:
    """Ground-truth Q(c, (p, N)) of the categorical cell model: (C, P, n_max), mean over queries."""
    qs = queries if queries is not None else pool.queries
    ps = prompts if prompts is not None else pool.prompts
    out = np.zeros((len(contexts), len(ps), n_max))
    for pi, p in enumerate(ps):
        cells = [pool.cell(p, q) for q in qs]
        out[:, pi, :] = strategy.exact_utility(cells, contexts, n_max).mean(axis=0)
    return out


@dataclass(frozen=True)
class Setup:
    """Everything a run needs, derived from a config (nothing is written yet)."""

    config: RunConfig
    config_path: Path | None
    strategy: Strategy
    contexts: tuple[Context, ...]
    prompts: tuple[str, ...]
    train: tuple[str, ...]
    test: tuple[str, ...]
    pool: Pool | None
    cost_scale: float
    run_dir: Path
    storage: str
    run_id: str
    queries: Mapping[str, Query] | None = None
    prompt_specs: Mapping[str, PromptSpec] | None = None
    cost_unit: str = "unit"

    def make_backend(self) -> Backend:
        """Replay of the pool, or the configured live backend (which starts nothing yet)."""
        if self.pool is not None:
            return ReplayBackend(self.pool, self.config.seed)
        from iapo.answers import get_extractor
        from iapo.backends._factory import build_live_backend

        assert self.config.backend is not None and self.queries is not None
        assert self.prompt_specs is not None
        try:
            extract = get_extractor(self.config.extract)
        except ValueError as exc:
            raise ConfigError(str(exc), source=self._src, field="extract") from None
        scorers = None
        if self.config.scorers:
            from iapo.scorers import build_scorers

            try:
                scorers = build_scorers(self.config.scorers, extract=extract)
            except ValueError as exc:
                raise ConfigError(str(exc), source=self._src, field="scorers") from None
        try:
            return build_live_backend(
                self.config.backend, self.prompt_specs, self.queries, extract, scorers
            )
        except ValueError as exc:
            raise ConfigError(str(exc), source=self._src, field="backend") from None

    @property
    def problem(self) -> Problem:
        return Problem(
            self.prompts,
            self.train,
            self.config.n_max,
            self.contexts,
            self.strategy,
            self.config.algorithm.estimator,
        )

    def make_algorithm(self, budget: int | None = None) -> algorithms.Algorithm:
        cfg = self.config
        try:
            return algorithms.create(
                cfg.algorithm.name,
                self.problem,
                budget if budget is not None else cfg.budget,
                cfg.seed,
                **cfg.algorithm.params,
            )
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc), source=self._src, field="algorithm") from None
        except InputError as exc:
            raise type(exc)(str(exc).split(": ", 1)[-1], source=self._src, field="budget") from None

    @property
    def _src(self) -> str | None:
        return str(self.config_path) if self.config_path else None


def setup(
    config: RunConfig | str | Path,
    *,
    config_path: Path | None = None,
    run_dir: str | Path | None = None,
    storage: str | None = None,
) -> Setup:
    """Validate a config (against its pool, or its live backend's queries) and derive the run's
    setup. Writes nothing and starts nothing."""
    if not isinstance(config, RunConfig):
        config_path = Path(config)
        config = load_config(config_path)
    src = str(config_path) if config_path else None
    base = config_path.parent if config_path else Path.cwd()
    if config.pool is None:
        try:
            return _setup_live(config, src, base, config_path, run_dir, storage)
        except InputError as exc:
            raise exc.within(src) if exc.source is None else exc from None
    strategy_name = config.strategy
    try:
        pool_path = resolve_data_path(config.pool, base)
    except InputError as exc:
        raise exc.within(src) from None
    if not pool_path.exists():
        raise ConfigError(f"no pool file at {pool_path}: check the path", source=src, field="pool")
    pool = load_pool(pool_path, require_gold=strategy_name == "majority_vote")
    objectives = tuple(config.objectives) if config.objectives else pool.objectives
    if strategy_name == "majority_vote":
        objectives = ("accuracy",)
    else:
        missing = [o for o in objectives if o not in pool.objectives]
        if missing:
            raise ConfigError(
                f"objectives {missing} are not scored in the pool (it has "
                f"{list(pool.objectives)}): use those names",
                source=src,
                field="objectives",
            )
    try:
        strategy = get_strategy(strategy_name, objectives)
    except ValueError as exc:
        raise ConfigError(str(exc), source=src, field="strategy") from None
    contexts = _check_contexts(config, strategy, objectives, src)
    prompts = tuple(config.prompt_ids) if config.prompt_ids else pool.prompts
    unknown = [p for p in prompts if p not in pool.prompts]
    if unknown:
        raise ConfigError(
            f"prompts {unknown} are not in the pool (it has {list(pool.prompts)})",
            source=src,
            field="prompts",
        )
    train, test = _split(pool.queries, config, src)
    scale = config.cost.scale
    if config.cost.normalize == "max":
        top = pool.subset(prompts=prompts).max_cost()
        scale = scale / top if top > 0 else scale
    rdir, store = _run_location(config, run_dir, storage)
    ident = config.model_dump(exclude={"run_dir", "storage"})
    run_id = stable_key({"config": ident, "pool": pool.meta.get("sha256")})[:12]
    return Setup(
        config,
        config_path,
        strategy,
        contexts,
        prompts,
        train,
        test,
        pool.subset(prompts=prompts),
        scale,
        rdir,
        store,
        run_id,
        cost_unit=pool.cost_unit,
    )


def _split(
    queries: tuple[str, ...], config: RunConfig, src: str | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    train, test = split_queries(queries, config.split.test_fraction, config.split.seed)
    if not train:
        raise ConfigError(
            "no training queries left: lower split.test_fraction",
            source=src,
            field="split.test_fraction",
        )
    return train, test


def _check_contexts(
    config: RunConfig, strategy: Strategy, objectives: tuple[str, ...], src: str | None
) -> tuple[Context, ...]:
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
    return contexts


def _run_location(
    config: RunConfig, run_dir: str | Path | None, storage: str | None
) -> tuple[Path, str]:
    rdir = Path(run_dir) if run_dir else Path(config.run_dir or f"runs/{config.name}")
    return rdir, storage or config.storage or f"sqlite:///{rdir / 'bank.sqlite'}"


def _setup_live(
    config: RunConfig,
    src: str | None,
    base: Path,
    config_path: Path | None,
    run_dir: str | Path | None,
    storage: str | None,
) -> Setup:
    from iapo.queries import load_queries

    backend = config.backend
    assert backend is not None and config.queries is not None
    if config.strategy == "majority_vote":
        objectives: tuple[str, ...] = ("accuracy",)
    else:
        if not config.scorers:
            raise ConfigError(
                "a live best_of_n run needs 'scorers': one per objective (exact_match, judge, "
                "http, python, profanity, agreement)",
                source=src,
                field="scorers",
            )
        objectives = tuple(config.objectives or config.scorers)
        missing_scorers = [o for o in objectives if o not in config.scorers]
        if missing_scorers:
            raise ConfigError(
                f"objectives {missing_scorers} have no scorer: add them under 'scorers'",
                source=src,
                field="scorers",
            )
    try:
        strategy = get_strategy(config.strategy, objectives)
    except ValueError as exc:
        raise ConfigError(str(exc), source=src, field="strategy") from None
    contexts = _check_contexts(config, strategy, objectives, src)
    qpath = resolve_data_path(config.queries, base)
    queries = load_queries(qpath)
    missing = [q.id for q in queries if q.gold is None]
    if missing and config.strategy == "majority_vote":
        raise ConfigError(
            f"query {missing[0]!r} has no gold answer, which majority voting needs: add 'gold'",
            source=str(qpath),
            field="gold",
        )
    specs = {
        p.id: PromptSpec(p.id, p.system, p.template)
        for p in config.prompts or []
        if not isinstance(p, str)
    }
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
    train, test = _split(tuple(q.id for q in queries), config, src)
    scale = config.cost.scale
    max_tokens = backend.params.get("max_tokens")
    if config.cost.normalize == "max" and isinstance(max_tokens, int) and max_tokens > 0:
        per = max_tokens * (backend.price.completion / 1e6 if backend.price else 1.0)
        scale = scale / per if per > 0 else scale
    rdir, store = _run_location(config, run_dir, storage)
    run_id = stable_key({"config": config.model_dump(exclude={"run_dir", "storage"})})[:12]
    return Setup(
        config,
        config_path,
        strategy,
        contexts,
        tuple(specs),
        train,
        test,
        None,
        scale,
        rdir,
        store,
        run_id,
        queries={q.id: q for q in queries},
        prompt_specs=specs,
        cost_unit="usd" if backend.price else "completion_tokens",
    )


@dataclass(frozen=True)
class RunResult:
    """The frozen, JSON-serialisable result of a run."""

    run_id: str
    name: str
    algorithm: str
    strategy: str
    seed: int
    policy: dict[str, dict[str, Any]]
    estimates: dict[str, list[dict[str, Any]]]
    account: dict[str, Any]
    trace: list[dict[str, Any]]
    contexts: list[dict[str, Any]]
    prompts: list[str]
    n_max: int
    evaluation: dict[str, Any] | None
    versions: dict[str, str]
    config: dict[str, Any]
    elapsed_s: float
    run_dir: str
    storage: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunResult:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    @classmethod
    def load(cls, path: str | Path) -> RunResult:
        p = Path(path)
        if p.is_dir():
            p = p / "result.json"
        return cls.from_dict(json.loads(p.read_text()))


def _versions() -> dict[str, str]:
    from iapo.version import __version__

    return {"iapo": __version__, "python": platform.python_version(), "numpy": np.__version__}


def _clean(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def run(
    config: RunConfig | str | Path | Setup,
    *,
    budget: int | None = None,
    progress: Progress | None = None,
    backend: Backend | None = None,
    run_dir: str | Path | None = None,
    storage: str | None = None,
    write: bool = True,
) -> RunResult:
    """Run the configured algorithm to the end and return its :class:`RunResult`.

    Writes the sample bank and ``result.json`` to the run directory (``write=False``: only the
    bank). Re-running the same config re-uses every stored completion.
    """
    s = config if isinstance(config, Setup) else setup(config, run_dir=run_dir, storage=storage)
    algo = s.make_algorithm(budget)
    owns_backend = backend is None
    if backend is None:
        backend = s.make_backend()
    cap = s.config.cost.cap
    if cap is not None and backend.max_cost(s.prompts[0], s.train[0]) is None:
        raise ConfigError(
            "cost.cap needs a bound on each completion's cost: set backend.params.max_tokens",
            source=s._src,
            field="cost.cap",
        )
    try:
        if write:
            _check_writable(s.run_dir)
        bank = open_bank(s.storage)
    except InputError as exc:
        raise exc.within(s._src) from None
    t0 = time.perf_counter()
    try:
        bank.start_run(s.run_id, s.config.name, algo.budget, s.config.model_dump(mode="json"))
        study = Study(algo, backend, bank, cost_scale=s.cost_scale, progress=progress, cost_cap=cap)
        try:
            outcome = study.run(close_backend=owns_backend)
        except BudgetError:
            bank.update_run(s.run_id, status="stopped", spent=study.account.completions)
            raise
        except BaseException:
            bank.update_run(s.run_id, status="interrupted", spent=study.account.completions)
            raise
        mean, sem, count = algo.stats.mean, algo.stats.sem, algo.stats.count
        estimates: dict[str, list[dict[str, Any]]] = {}
        for ci, c in enumerate(s.contexts):
            rows = []
            for pi, p in enumerate(s.prompts):
                for k in range(s.config.n_max):
                    if count[ci, pi, k] > 0:
                        m, e = float(mean[ci, pi, k]), float(sem[ci, pi, k])
                        rows.append(
                            {
                                "prompt": p,
                                "n": k + 1,
                                "q": _clean(m),
                                "sem": _clean(e),
                                "observations": int(count[ci, pi, k]),
                            }
                        )
            estimates[c.name] = rows
        policy = {}
        for c in s.contexts:
            ch = outcome.policy[c.name].to_dict()
            ru = outcome.runner_up[c.name]
            ch["runner_up"] = ru.to_dict() if ru else None
            policy[c.name] = ch
        evaluation = None
        if s.pool is not None and s.test:
            chosen = {c: Arm(v["prompt"], v["n"]) for c, v in policy.items()}
            evaluation = policy_evaluation(s, chosen)
        result = RunResult(
            run_id=s.run_id,
            name=s.config.name,
            algorithm=algo.name,
            strategy=s.strategy.name,
            seed=s.config.seed,
            policy=policy,
            estimates=estimates,
            account=outcome.account.to_dict(),
            trace=[t.__dict__ for t in algo.trace],
            contexts=[c.to_dict() for c in s.contexts],
            prompts=list(s.prompts),
            n_max=s.config.n_max,
            evaluation=evaluation,
            versions=_versions(),
            config=s.config.model_dump(mode="json"),
            elapsed_s=time.perf_counter() - t0,
            run_dir=str(s.run_dir),
            storage=s.storage,
            extra={
                "cost_scale": s.cost_scale,
                "cost_unit": s.cost_unit,
                "stopped": study.stopped,
                "config_dir": str(
                    (s.config_path.parent if s.config_path else Path.cwd()).resolve()
                ),
                "train_queries": len(s.train),
                "test_queries": len(s.test),
                "backend": backend.name,
            },
        )
        bank.update_run(
            s.run_id,
            status="stopped" if study.stopped else "done",
            spent=outcome.account.completions,
            result=result.to_dict(),
        )
    finally:
        bank.close()
    if write:
        try:
            s.run_dir.mkdir(parents=True, exist_ok=True)
            tmp = s.run_dir / "result.json.tmp"
            tmp.write_text(result.to_json())
            tmp.replace(s.run_dir / "result.json")  # atomic: never a half-written result
        except OSError as exc:
            raise InputError(
                f"cannot write the result ({exc.strerror}): choose a writable run_dir",
                source=str(s.run_dir),
                field="run_dir",
            ) from None
    return result


def _check_writable(run_dir: Path) -> None:
    """Fail before anything is spent if the run directory cannot take the result."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".iapo-write-check"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise InputError(
            f"the run directory is not writable ({exc.strerror}): choose another run_dir",
            source=str(run_dir),
            field="run_dir",
        ) from None


def policy_evaluation(s: Setup, chosen: Mapping[str, Arm]) -> dict[str, Any]:
    """Exact Q on the test queries of the chosen arms and of the oracle's, the ACR of both, and
    the whole ground-truth table (for reports)."""
    ev = evaluate(s, split="test")
    opt = ev.optimal()
    per_context: dict[str, dict[str, Any]] = {
        c.name: {
            "q_test": ev.value(c.name, chosen[c.name]),
            "oracle": {
                "prompt": opt[c.name].prompt,
                "n": opt[c.name].n,
                "q_test": ev.value(c.name, opt[c.name]),
            },
        }
        for c in s.contexts
    }
    return {
        "acr_test": float(np.mean([v["q_test"] for v in per_context.values()])),
        "oracle_acr_test": float(np.mean([v["oracle"]["q_test"] for v in per_context.values()])),
        "contexts": per_context,
        "ground_truth": ev.to_dict(),
    }


@dataclass(frozen=True)
class Evaluation:
    """The exact Q table of every arm per context, the optimal policy and the deceiving prompts."""

    contexts: tuple[Context, ...]
    prompts: tuple[str, ...]
    q: NDArray[np.float64]  # (C, P, n_max)
    queries: str

    def value(self, context: str, arm: Arm) -> float:
        ci = [c.name for c in self.contexts].index(context)
        return float(self.q[ci, self.prompts.index(arm.prompt), arm.n - 1])

    def optimal(self) -> dict[str, Arm]:
        out = {}
        for ci, c in enumerate(self.contexts):
            p, k = np.unravel_index(int(np.argmax(self.q[ci])), self.q[ci].shape)
            out[c.name] = Arm(self.prompts[int(p)], int(k) + 1)
        return out

    def deceiving(self) -> list[dict[str, Any]]:
        """Contexts where the best prompt at N=1 is not the prompt of the optimal arm."""
        out = []
        opt = self.optimal()
        for ci, c in enumerate(self.contexts):
            p1 = int(np.argmax(self.q[ci, :, 0]))
            arm = opt[c.name]
            ps = self.prompts.index(arm.prompt)
            if p1 == ps or self.q[ci, ps, 0] >= self.q[ci, p1, 0]:  # not ahead, or only tied
                continue
            k = arm.n - 1
            out.append(
                {
                    "context": c.name,
                    "deceiving_prompt": self.prompts[p1],
                    "optimal_prompt": arm.prompt,
                    "optimal_n": arm.n,
                    "n1": {
                        "deceiving": float(self.q[ci, p1, 0]),
                        "optimal": float(self.q[ci, ps, 0]),
                    },
                    "at_optimal_n": {
                        "deceiving": float(self.q[ci, p1, k]),
                        "optimal": float(self.q[ci, ps, k]),
                    },
                    "deceiving_best": {
                        "n": int(np.argmax(self.q[ci, p1])) + 1,
                        "q": float(self.q[ci, p1].max()),
                    },
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "prompts": list(self.prompts),
            "contexts": [c.to_dict() for c in self.contexts],
            "q": {
                c.name: {p: [float(x) for x in self.q[ci, pi]] for pi, p in enumerate(self.prompts)}
                for ci, c in enumerate(self.contexts)
            },
            "optimal": {k: {"prompt": a.prompt, "n": a.n} for k, a in self.optimal().items()},
            "deceiving": self.deceiving(),
        }


def evaluate(config: RunConfig | str | Path | Setup, *, split: str = "test") -> Evaluation:
    """Exact Q table on the pool's ``test`` split (or ``all`` queries)."""
    s = config if isinstance(config, Setup) else setup(config)
    if s.pool is None:
        raise PoolError(
            "evaluate needs a pool with recorded samples: record one with "
            "`iapo record CONFIG -k 8 --out pool.jsonl` and replay it with 'pool'",
            source=s._src,
            field="pool",
        )
    if split not in ("test", "all", "train"):
        raise ConfigError("split must be 'test', 'train' or 'all'", field="split")
    qs = {"test": s.test, "train": s.train, "all": s.pool.queries}[split]
    if not qs:
        qs, split = s.pool.queries, "all"
    scaled = s.pool.scale_costs(s.cost_scale)
    q = exact_q_table(scaled, s.strategy, s.contexts, s.config.n_max, qs, s.prompts)
    return Evaluation(s.contexts, s.prompts, q, f"{split} ({len(qs)} queries)")


def preflight(
    config: RunConfig | str | Path | Setup, *, budget: int | None = None
) -> dict[str, Any]:
    """The schedule and spend of a run before anything is drawn.

    The algorithm is dry-run on uninformative samples (no bank; the backend only prices the
    requests, it samples nothing): the first round is exact; later rounds depend on which arms
    survive, so their sizes are indicative. The budget is a hard cap. ``expected_cost`` uses the
    pool's mean costs (unknown for a live backend); ``max_cost`` bounds the dry run's cost with
    each completion at its worst case (a pool's costliest sample, a live backend's
    ``max_tokens``), or is None when nothing bounds it.
    """
    from iapo.types import PullResult, Sample

    s = config if isinstance(config, Setup) else setup(config)
    algo = s.make_algorithm(budget)
    backend = s.make_backend()
    min_budget = type(algo).min_budget(algo.problem, **algo.params())
    rounds: list[dict[str, Any]] = []
    mean_cost: dict[str, float] = {}
    if s.pool is not None:
        for p in s.prompts:
            mean_cost[p] = float(np.mean([s.pool.cell(p, q).mean_cost() for q in s.train]))
    fake = Sample(answer=None, scores={o: 0.0 for o in s.strategy.objectives})
    bound: float | None = 0.0
    while batch := algo.ask():
        worst = [backend.max_cost(r.prompt, r.query) for r in batch]
        if bound is not None and all(w is not None for w in worst):
            bound += sum(r.n * float(w or 0.0) for r, w in zip(batch, worst, strict=True))
        else:
            bound = None
        rounds.append(
            {
                "round": len(rounds) + 1,
                "pulls": len(batch),
                "completions": sum(r.n for r in batch),
                "expected_cost": sum(r.n * mean_cost[r.prompt] for r in batch)
                if mean_cost
                else None,
            }
        )
        algo.tell([PullResult(r, (fake,) * r.n, None) for r in batch])
    return {
        "algorithm": algo.name,
        "budget": algo.budget,
        "completions": algo.spent,
        "rounds": rounds,
        "expected_cost": sum(r["expected_cost"] for r in rounds) if mean_cost else None,
        "cost_unit": s.cost_unit,
        "arms": len(s.prompts) * s.config.n_max,
        "contexts": len(s.contexts),
        "min_budget": min_budget,
        "max_cost": bound,
    }
