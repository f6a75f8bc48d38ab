from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from iapo.backends import ReplayBackend
from iapo.pools import Cell, Pool
from iapo.types import PullRequest, PullResult, Sample

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


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
