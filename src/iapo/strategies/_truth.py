"""Ground truth: the exact expected utility of every (prompt, query, context, N) of a pool."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from iapo.pools import Pool
from iapo.strategies._base import Strategy
from iapo.types import Context

__all__ = ["exact_cell_utilities"]


def exact_cell_utilities(
    pool: Pool,
    strategy: Strategy,
    contexts: Sequence[Context],
    n_max: int,
    *,
    prompts: Sequence[str] | None = None,
    queries: Sequence[str] | None = None,
) -> NDArray[np.float64]:
    """(P, Q, C, n_max): the expected utility of (prompt, N = k) on each query under i.i.d.
    draws from its cell (the categorical model of replay). Q(c, (p, N)) on a set of queries is
    the mean over the query axis. ``prompts``/``queries`` default to all of the pool's."""
    ps = tuple(prompts) if prompts is not None else pool.prompts
    qs = tuple(queries) if queries is not None else pool.queries
    out = np.zeros((len(ps), len(qs), len(contexts), n_max))
    for pi, p in enumerate(ps):
        out[pi] = strategy.exact_utility([pool.cell(p, q) for q in qs], contexts, n_max)
    return out
