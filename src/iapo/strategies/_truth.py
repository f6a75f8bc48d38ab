"""Ground truth: the exact expected utility of every (prompt, query, context, N) of a pool, and
the encoded rows of a pool's outcomes, both computed on the pool's arrays
(:class:`~iapo.pools.PoolArrays`) for the built-in strategies.

Both give, bit for bit, what the per-cell methods give (:meth:`Strategy.exact_utility
<iapo.strategies.Strategy.exact_utility>` per prompt, :meth:`Strategy.encode
<iapo.strategies.Strategy.encode>` per cell): every floating-point operation is the one the
per-cell code performs, on arrays of the same shape (cells are grouped by their outcome count,
prompts by their padded width), and identical majority-vote profiles are computed once
(:func:`~iapo.estimators.mv_exact_many`). Other strategies (subclasses included) take the
per-cell path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from iapo.adaptive import ArmLayout, adaptive_exact
from iapo.estimators import bon_exact, mv_exact_many
from iapo.pools import Pool, PoolArrays
from iapo.strategies._base import Strategy, cost_weights
from iapo.strategies._bon import BestOfN
from iapo.strategies._majority import ABSTAIN_CODE, MajorityVote
from iapo.types import Context

__all__ = ["encode_outcomes", "exact_adaptive_utilities", "exact_cell_utilities"]

_CELLS_PER_PASS = 8192


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
    if not ps or not qs:
        return out
    arrays = pool.arrays
    cells = arrays.cell_ids(ps, qs)
    util = out.reshape(cells.size, len(contexts), n_max)  # a view: quality, then utility
    done = False
    if type(strategy) is MajorityVote and n_max >= 1:  # a subclass may redefine the methods
        done = _mv_quality(arrays, strategy, contexts, n_max, cells, util)
    elif type(strategy) is BestOfN and n_max >= 1:
        done = _bon_quality(arrays, strategy, contexts, n_max, cells, util)
    if not done:
        for pi, p in enumerate(ps):
            out[pi] = strategy.exact_utility([pool.cell(p, q) for q in qs], contexts, n_max)
        return out
    # Strategy.exact_utility of every cell at once: q - wc · mean cost · k, elementwise
    flat = cells.ravel()
    rows, _, p_rows = _cell_probs(arrays, flat)
    probs = np.zeros(len(arrays.weight))
    probs[rows] = p_rows
    mean_cost = arrays.cell_dots(probs, arrays.cost, flat)
    wc = cost_weights(contexts)
    k = np.arange(1, n_max + 1)
    # bounded memory: one pass's spend at a time, about 2^20 values (8 MiB) whatever C and N
    step = max(1, min(_CELLS_PER_PASS, (1 << 20) // max(1, len(contexts) * n_max)))
    for lo in range(0, len(flat), step):
        part = slice(lo, lo + step)
        spend = np.multiply(wc[None, :, None] * mean_cost[part, None, None], k[None, None, :])
        np.subtract(util[part], spend, out=util[part])
    return out


def _cell_probs(
    arrays: PoolArrays, flat: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Rows of ``flat``'s cells, each row's position in ``flat``, and ``cell.probs`` per row."""
    rows, owner = arrays.rows_of(flat)
    return rows, owner, arrays.weight[rows] / arrays.cell_sums(arrays.weight, flat)[owner]


def _mv_quality(
    arrays: PoolArrays,
    strategy: MajorityVote,
    contexts: Sequence[Context],
    n_max: int,
    cells: NDArray[np.int64],
    out: NDArray[np.float64],
) -> bool:
    """:meth:`MajorityVote.exact_quality` of every cell into ``out`` (P·Q, C, n_max), prompt by
    prompt (one :func:`~iapo.estimators.mv_exact` block each)."""
    n_p, n_q = cells.shape
    flat = cells.ravel()
    cls, gold_index, n_cls = _class_probs(arrays, flat)
    blocks: list[tuple[NDArray[np.float64], NDArray[np.int64]]] = []
    for pi in range(n_p):
        part = slice(pi * n_q, (pi + 1) * n_q)
        m = max(int(n_cls[part].max()), 1)
        blocks.append((np.ascontiguousarray(cls[part, :m]), gold_index[part]))
    credit = np.concatenate(mv_exact_many(blocks, n_max, strategy.tie_credit))
    weights = np.array([float(c.weights.get("accuracy", 1.0)) for c in contexts])
    np.multiply(credit[:, None, :], weights[None, :, None], out=out)
    return True


def _class_probs(
    arrays: PoolArrays, flat: NDArray[np.int64]
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """Per cell of ``flat``: its answer classes' probabilities (first-appearance order, padded
    with 0), the gold class (-1: none) and the number of classes."""
    rows, owner, p = _cell_probs(arrays, flat)
    answer = arrays.answer[rows]
    has = answer >= 0
    slot = arrays.first_ranks(rows, owner, has)  # class of each answer, first-appearance order
    n_cls = np.zeros(len(flat), dtype=np.int64)
    np.maximum.at(n_cls, owner[has], slot[has] + 1)
    width = max(int(n_cls.max()), 1)
    # class probabilities summed in outcome order from 0.0, as the per-cell dictionary does
    cls = np.bincount(
        owner[has] * width + slot[has], weights=p[has], minlength=len(flat) * width
    ).reshape(len(flat), width)
    gold_index = np.full(len(flat), -1, dtype=np.int64)
    is_gold = has & (answer == arrays.gold[flat][owner])
    gold_index[owner[is_gold]] = slot[is_gold]
    return np.asarray(cls, dtype=np.float64), gold_index, n_cls


def exact_adaptive_utilities(
    pool: Pool,
    strategy: MajorityVote,
    contexts: Sequence[Context],
    n_max: int,
    adaptive: Sequence[str],
    prompts: Sequence[str] | None = None,
    queries: Sequence[str] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The adaptive arms of ``adaptive`` (issue #15) on every cell, as
    :func:`exact_cell_utilities` for the fixed ones: utility (P, Q, C, A·n_max) and expected
    samples (P, Q, A·n_max), in the blocks of :class:`iapo.adaptive.ArmLayout` after the fixed
    one (NaN at N_max' = 1, not an arm). Utility ``w_accuracy · credit − w_cost · E[samples] ·
    mean cost`` (:func:`iapo.adaptive.adaptive_exact`, exact to rounding)."""
    ps = tuple(prompts) if prompts is not None else pool.prompts
    qs = tuple(queries) if queries is not None else pool.queries
    layout = ArmLayout(n_max, tuple(adaptive))
    extra = layout.width - n_max
    util = np.full((len(ps), len(qs), len(contexts), extra), np.nan)
    samples = np.full((len(ps), len(qs), extra), np.nan)
    if not ps or not qs or not extra:
        return util, samples
    arrays = pool.arrays
    flat = arrays.cell_ids(ps, qs).ravel()
    cls, gold_index, n_cls = _class_probs(arrays, flat)
    cls = cls[:, : max(int(n_cls.max()), 1)]
    rows, _, p_rows = _cell_probs(arrays, flat)
    probs = np.zeros(len(arrays.weight))
    probs[rows] = p_rows
    mean_cost = arrays.cell_dots(probs, arrays.cost, flat)
    w = np.array([float(c.weights.get("accuracy", 1.0)) for c in contexts])
    wc = cost_weights(contexts)
    shape = (len(ps), len(qs))
    for col, scheme in layout.schemes():
        got = adaptive_exact(cls, gold_index, scheme, strategy.tie_credit, mean_cost)
        q = got.credit[:, None] * w[None, :]
        util[..., col - n_max] = (q - got.cost[:, None] * wc[None, :]).reshape(
            *shape, len(contexts)
        )
        samples[..., col - n_max] = got.samples.reshape(shape)
    return util, samples


def _bon_select(
    arrays: PoolArrays,
    strategy: BestOfN,
    contexts: Sequence[Context],
    flat: NDArray[np.int64],
    rows: NDArray[np.int64],
) -> NDArray[np.float64] | None:
    """(rows, C): each outcome's selection score, per cell ``scores @ weight matrix`` (one matmul
    per cell, stacked by outcome count); None if an outcome lacks an objective's score."""
    try:
        cols = [arrays.score_names.index(o) for o in strategy.objectives]
    except ValueError:
        return None
    scores = arrays.scores[:, cols]
    if np.isnan(scores[rows]).any():
        return None
    wm = np.array([c.weight_vector(strategy.objectives) for c in contexts]).T  # (K, C)
    out = np.zeros((len(arrays.weight), len(contexts)))
    for length, _, cell_rows in arrays.by_length(flat):
        if length:
            out[cell_rows] = np.ascontiguousarray(scores[cell_rows]) @ wm
    return out[rows]


def _bon_quality(
    arrays: PoolArrays,
    strategy: BestOfN,
    contexts: Sequence[Context],
    n_max: int,
    cells: NDArray[np.int64],
    out: NDArray[np.float64],
) -> bool:
    """:meth:`BestOfN.exact_quality` of every cell into ``out`` (P·Q, C, n_max); prompts of one
    padded width (their largest outcome count) in one :func:`~iapo.estimators.bon_exact` call.
    False (nothing written) if an outcome lacks a score."""
    n_p, n_q = cells.shape
    flat = cells.ravel()
    rows, owner, p = _cell_probs(arrays, flat)
    select = _bon_select(arrays, strategy, contexts, flat, rows)
    if select is None:
        return False
    n_ctx = len(contexts)
    lengths = arrays.lengths[flat]
    pos = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    widths = np.array([int(lengths[i * n_q : (i + 1) * n_q].max()) for i in range(n_p)])
    for v in np.unique(widths):
        prompt_ids = np.flatnonzero(widths == v)
        cell_pos = (prompt_ids[:, None] * n_q + np.arange(n_q)).ravel()
        local = np.full(len(flat), -1, dtype=np.int64)
        local[cell_pos] = np.arange(len(cell_pos))
        mine = np.flatnonzero(local[owner] >= 0)
        sel = np.zeros((len(cell_pos), n_ctx, int(v)))
        prob = np.zeros((len(cell_pos), n_ctx, int(v)))
        r, j = local[owner[mine]], pos[mine]
        sel[r, :, j] = select[mine]
        prob[r, :, j] = p[mine][:, None]
        est = bon_exact(sel.reshape(-1, int(v)), prob.reshape(-1, int(v)), None, n_max)
        out[cell_pos] = est.reshape(len(cell_pos), n_ctx, n_max)
    return True


def encode_outcomes(
    pool: Pool, strategy: Strategy, contexts: Sequence[Context], cells: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[Any]]:
    """The outcome rows of ``cells`` (grid indices of ``pool.arrays``, 1-D), each row's position
    in ``cells``, and its encoded row: :meth:`Strategy.encode` of each cell's outcomes, stacked."""
    arrays = pool.arrays
    rows, owner = arrays.rows_of(cells)
    if type(strategy) is MajorityVote:  # a subclass may redefine encode
        answer = arrays.answer[rows]
        gold = arrays.gold[cells][owner]
        is_gold = (answer == gold) & (answer >= 0)
        other = (answer >= 0) & ~is_gold
        codes = arrays.first_ranks(rows, owner, other) + 1
        codes[is_gold] = 0
        codes[answer < 0] = ABSTAIN_CODE
        return rows, owner, codes[:, None]
    if type(strategy) is BestOfN:
        select = _bon_select(arrays, strategy, contexts, cells, rows)
        if select is not None:
            return rows, owner, select
    n_q = len(arrays.queries)
    parts = []
    for c in cells.tolist():
        cell = pool.cell(arrays.prompts[c // n_q], arrays.queries[c % n_q])
        parts.append(strategy.encode(cell.outcomes, cell.gold, contexts))
    return rows, owner, np.concatenate(parts) if parts else np.zeros((0, 1))
