from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _postgres
import numpy as np
import pytest

import iapo
from iapo.backends import ReplayBackend
from iapo.pools import Cell, Pool, dump_pool
from iapo.types import PullRequest, PullResult, Sample

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MCQA = REPO / "examples" / "mcqa.yaml"


def bernoulli_pool(success: np.ndarray, costs: Sequence[float] | None = None) -> Pool:
    """A majority-vote pool: success[p, q] = P(correct); one wrong answer class."""
    n_p, n_q = success.shape
    prompts = tuple(f"p{i}" for i in range(n_p))
    queries = tuple(f"q{j}" for j in range(n_q))
    costs = list(costs) if costs is not None else [0.0] * n_p
    cells = {}
    for i, p in enumerate(prompts):
        for j, q in enumerate(queries):
            s = float(success[i, j])
            cells[(p, q)] = Cell(
                p,
                q,
                "gold",
                (Sample("gold", {}, costs[i]), Sample("wrong", {}, costs[i])),
                np.array([s, 1 - s]) + 1e-15,
            )
    return Pool(("accuracy",), prompts, queries, cells, "unit", {"name": "test"})


def replay_puller(pool: Pool, seed: int = 0) -> Callable[[list[PullRequest]], list[PullResult]]:
    """A synchronous pull function over a pool (fresh sample indices per (prompt, query))."""
    backend = ReplayBackend(pool, seed)
    used: dict[tuple[str, str], int] = {}

    def pull(batch: list[PullRequest]) -> list[PullResult]:
        out = []
        for r in batch:
            start = used.get((r.prompt, r.query), 0)
            used[(r.prompt, r.query)] = start + r.n
            samples = backend.draw(r.prompt, r.query, range(start, start + r.n))
            out.append(PullResult(r, tuple(samples), pool.gold(r.query)))
        return out

    return pull


@pytest.fixture
def shared() -> Path:
    if not SHARED.exists():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """An API key in $IAPO_TEST_KEY (the live test configs' api_key_env), to be searched for."""
    key = "sk-test-" + hashlib.sha256(b"iapo").hexdigest()[:24]
    monkeypatch.setenv("IAPO_TEST_KEY", key)
    return key


@dataclass(frozen=True)
class Done:
    """A finished run: its folder ``root/runs/NAME``, bank URL, ``result.json`` and report page."""

    root: Path
    run_dir: Path
    storage: str
    result: dict[str, Any]
    page: Path


def run_and_report(config: Path, root: Path, name: str) -> Done:
    """Run ``config`` to the end into ``root/runs/name`` and write its HTML report there."""
    from iapo.report import write_report  # matplotlib: only for the tests that need a report

    run_dir = root / "runs" / name
    storage = f"sqlite:///{run_dir / 'bank.sqlite'}"
    iapo.run(config, run_dir=run_dir, storage=storage)
    result = json.loads((run_dir / "result.json").read_text())
    page = write_report(result, run_dir / "report")
    return Done(root, run_dir, storage, result, page)


@pytest.fixture(scope="session")
def finished_mcqa(tmp_path_factory: pytest.TempPathFactory) -> Done:
    """The embedded default (examples/mcqa.yaml) run once for the whole session, with its report.
    Read it, never write into it: every test that uses it sees the same folder."""
    return run_and_report(MCQA, tmp_path_factory.mktemp("mcqa"), "mcqa")


def _bon_pool(path: Path) -> None:
    """A two-objective Best-of-N pool (helpful, harmless) with integer outcome counts."""
    from iapo.bench import synth_categorical

    base = synth_categorical(6, 60, seed=1)
    rng = np.random.default_rng(0)
    cells = {
        k: Cell(
            c.prompt,
            c.query,
            c.gold,
            c.outcomes,
            rng.integers(1, 5, len(c.outcomes)).astype(np.float64),
        )
        for k, c in base.cells.items()
    }
    dump_pool(
        Pool(base.objectives, base.prompts, base.queries, cells, "normalised", base.meta), path
    )


GRID_YAML = """
name: grid
strategy: best_of_n
pool: pool.jsonl
n_max: 8
contexts:
  grid:
    weights: {helpful: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]}
    complement: harmless
    cost_weight: [0, 0.01, 0.05]
budget: 8000
algorithm: {name: psst}
split: {test_fraction: 0.2, seed: 0}
seed: 0
"""


@pytest.fixture(scope="session")
def finished_grid(tmp_path_factory: pytest.TempPathFactory) -> Done:
    """A Best-of-N run on 27 contexts (9 helpful/harmless weight pairs × 3 cost levels) of a
    synthetic two-objective pool, run once for the whole session, with its report."""
    root = tmp_path_factory.mktemp("grid")
    _bon_pool(root / "pool.jsonl")
    (root / "grid.yaml").write_text(GRID_YAML)
    return run_and_report(root / "grid.yaml", root, "grid")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The admin URL of a real PostgreSQL server for the session (see tests/_postgres.py):
    skipped where there is none, failed under $CI."""
    with _postgres.server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on :func:`postgres_server` for one test, dropped after it."""
    name, url = _postgres.create_database(postgres_server)
    yield url
    _postgres.drop_database(postgres_server, name)
