"""Estimates of an adaptive scheme's expected credit, samples and cost from one pull each.

A pull of n ≥ N_max i.i.d. samples gives, for each ordering of its samples, the scheme's outcome
on the first N_max of them in that order; the mean over all orderings (equivalently, over all
ordered N_max-tuples of distinct samples) is a U-statistic, unbiased for the scheme's
expectation (docs/adaptive.md). Exact mode computes that mean by the programme of
:mod:`iapo.adaptive._dp` over the pull's class counts (draws without replacement); the drawn
samples of a class are a uniformly random subset of its samples, so the expected cost is
``Σ_a E[drawn of class a] · mean cost of class a``. Random mode averages a stated number of
seeded random orderings instead (also unbiased), for pulls whose programme is too large.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from iapo.adaptive._dp import check_size, propagate
from iapo.adaptive._exact import layout_groups, layout_table
from iapo.adaptive._scheme import AdaptiveScheme, run_sequences
from iapo.adaptive._space import DEFAULT_MAX_STATES
from iapo.estimators import TieCredit, check_tie_credit
from iapo.types import Context

__all__ = [
    "AdaptiveEstimate",
    "ProfileMemo",
    "adaptive_ustat",
    "adaptive_ustat_many",
    "adaptive_utility",
]

ACCURACY = "accuracy"


@dataclass(frozen=True)
class AdaptiveEstimate:
    """Per pull: estimated ``credit``, ``samples`` drawn and ``cost`` of the samples drawn
    (NaN where a pull has fewer than N_max samples)."""

    credit: NDArray[np.float64]
    samples: NDArray[np.float64]
    cost: NDArray[np.float64]


def adaptive_ustat(
    labels: NDArray[np.int64],
    gold: NDArray[np.int64],
    scheme: AdaptiveScheme,
    costs: NDArray[np.float64] | None = None,
    tie_credit: TieCredit = "fractional",
    *,
    orderings: int | None = None,
    seed: int = 0,
    max_states: int = DEFAULT_MAX_STATES,
) -> AdaptiveEstimate:
    """The scheme's outcome averaged over the orderings of each pull's samples.

    ``labels`` (m, n): integer answers, -1 abstains (the conventions of
    :func:`iapo.estimators.mv_ustat`); ``gold`` (m,); ``costs`` (m, n) per sample (default 0).
    ``orderings=None``: exact over all orderings (ValueError if a pull's programme exceeds
    ``max_states``); an integer K: the mean over K random orderings per pull, drawn from
    ``numpy.random.default_rng(seed)`` (reproducible, unbiased, not exact).
    """
    tie_credit = check_tie_credit(tie_credit)
    labels = np.asarray(labels, dtype=np.int64)
    gold = np.asarray(gold, dtype=np.int64)
    if labels.ndim != 2 or gold.shape != (labels.shape[0],):
        raise ValueError(f"expected labels (m, n) and gold (m,), got {labels.shape}, {gold.shape}")
    m, n = labels.shape
    cost = np.zeros((m, n)) if costs is None else np.asarray(costs, dtype=np.float64)
    if cost.shape != (m, n):
        raise ValueError(f"expected costs of shape {(m, n)}, got {cost.shape}")
    if n < scheme.n_max or m == 0:
        nan = np.full(m, np.nan)
        return AdaptiveEstimate(nan, nan.copy(), nan.copy())
    if orderings is not None:
        return _random(labels, gold, cost, scheme, tie_credit, orderings, seed)
    return _exact(labels, gold, cost, scheme, tie_credit, max_states)


def _class_counts(
    labels: NDArray[np.int64], gold: NDArray[np.int64], cost: NDArray[np.float64]
) -> tuple[NDArray[np.float64], ...]:
    """Per pull: gold count, other classes' counts (descending), abstentions, and the mean cost
    of the gold class, of each other class (same order) and of the abstentions."""
    m, n = labels.shape
    is_gold = (labels == gold[:, None]) & (gold[:, None] >= 0)
    absent = labels < 0
    big = np.iinfo(np.int64).max
    key = np.where(is_gold | absent, big, labels)
    order = np.argsort(key, axis=1, kind="stable")
    srt = np.take_along_axis(key, order, axis=1)
    start = np.ones((m, n), dtype=bool)
    start[:, 1:] = srt[:, 1:] != srt[:, :-1]
    start &= srt != big
    grp = np.cumsum(start, axis=1) - 1  # class index of each sorted sample (-1 before the first)
    valid = srt != big
    csrt = np.take_along_axis(cost, order, axis=1)
    width = max(int(start.sum(axis=1).max()), 1)
    cnt = np.zeros((m, width))
    csum = np.zeros((m, width))
    rr = np.repeat(np.arange(m), n).reshape(m, n)
    np.add.at(cnt, (rr[valid], grp[valid]), 1.0)
    np.add.at(csum, (rr[valid], grp[valid]), csrt[valid])
    desc = np.argsort(-cnt, axis=1, kind="stable")
    cnt = np.take_along_axis(cnt, desc, axis=1)
    cmean = np.take_along_axis(csum, desc, axis=1) / np.maximum(cnt, 1.0)
    g = is_gold.sum(axis=1).astype(float)
    ab = absent.sum(axis=1).astype(float)
    g_cost = np.where(is_gold, cost, 0.0).sum(axis=1) / np.maximum(g, 1.0)
    a_cost = np.where(absent, cost, 0.0).sum(axis=1) / np.maximum(ab, 1.0)
    return g, cnt, ab, g_cost, cmean, a_cost


def _exact(
    labels: NDArray[np.int64],
    gold: NDArray[np.int64],
    cost: NDArray[np.float64],
    scheme: AdaptiveScheme,
    tie_credit: TieCredit,
    max_states: int,
) -> AdaptiveEstimate:
    m = labels.shape[0]
    g, cnt, ab, g_cost, cmean, a_cost = _class_counts(labels, gold, cost)
    credit = np.zeros(m)
    samples = np.zeros(m)
    spent = np.zeros(m)
    for layout, idx in layout_groups(g, cnt, ab).items():
        roles, table = layout_table(layout, g[idx], cnt[idx], ab[idx])
        _, cost_tab = layout_table(layout, g_cost[idx], cmean[idx], a_cost[idx])
        caps = tuple(int(min(c, scheme.n_max)) for c in table.max(axis=0))
        check_size(roles, caps, scheme, max_states)
        uniq, inv = np.unique(table, axis=0, return_inverse=True)
        res = propagate(
            roles, caps, scheme, tie_credit, pool=uniq.astype(np.int64), limit=max_states
        )
        inv = np.asarray(inv).ravel()
        credit[idx] = res.credit[inv]
        samples[idx] = res.samples[inv]
        spent[idx] = (res.drawn[inv] * cost_tab).sum(axis=1)
    return AdaptiveEstimate(credit, samples, spent)


#: Memo of :func:`adaptive_ustat_many`: (scheme, tie rule, class roles, class counts) →
#: (credit, samples, drawn per class) of that count profile.
ProfileMemo = dict[tuple[object, ...], tuple[float, float, NDArray[np.float64]]]


def adaptive_ustat_many(
    labels: NDArray[np.int64],
    gold: NDArray[np.int64],
    schemes: Sequence[AdaptiveScheme],
    costs: NDArray[np.float64] | None = None,
    tie_credit: TieCredit = "fractional",
    memo: ProfileMemo | None = None,
    *,
    max_states: int = DEFAULT_MAX_STATES,
) -> AdaptiveEstimate:
    """:func:`adaptive_ustat` (exact mode) of several schemes at once: ``credit``, ``samples``
    and ``cost`` are (m, len(schemes)). The pulls' class counts are computed once, and each
    distinct count profile once per scheme, memoised in ``memo`` across calls (the estimate of
    a pull depends only on its class counts and its classes' mean costs)."""
    tie_credit = check_tie_credit(tie_credit)
    labels = np.asarray(labels, dtype=np.int64)
    gold = np.asarray(gold, dtype=np.int64)
    m, n = labels.shape
    k = len(schemes)
    cost = np.zeros((m, n)) if costs is None else np.asarray(costs, dtype=np.float64)
    credit = np.full((m, k), np.nan)
    samples = np.full((m, k), np.nan)
    spent = np.full((m, k), np.nan)
    if m == 0 or k == 0:
        return AdaptiveEstimate(credit, samples, spent)
    memo = {} if memo is None else memo
    g, cnt, ab, g_cost, cmean, a_cost = _class_counts(labels, gold, cost)
    for layout, idx in layout_groups(g, cnt, ab).items():
        roles, table = layout_table(layout, g[idx], cnt[idx], ab[idx])
        _, cost_tab = layout_table(layout, g_cost[idx], cmean[idx], a_cost[idx])
        uniq, inv = np.unique(table.astype(np.int64), axis=0, return_inverse=True)
        inv = np.asarray(inv).ravel()
        keys = [tuple(row) for row in uniq.tolist()]
        for j, scheme in enumerate(schemes):
            if n < scheme.n_max:
                continue
            missing = [
                i for i, key in enumerate(keys) if (scheme, tie_credit, roles, key) not in memo
            ]
            if missing:
                pool = uniq[missing]
                # one space per (roles, pull size, scheme): reused by every later call
                caps = (min(n, scheme.n_max),) * len(roles)
                check_size(roles, caps, scheme, max_states)
                res = propagate(roles, caps, scheme, tie_credit, pool=pool, limit=max_states)
                for r, i in enumerate(missing):
                    memo[(scheme, tie_credit, roles, keys[i])] = (
                        float(res.credit[r]),
                        float(res.samples[r]),
                        res.drawn[r].copy(),
                    )
            got = [memo[(scheme, tie_credit, roles, key)] for key in keys]
            cu = np.array([x[0] for x in got])
            su = np.array([x[1] for x in got])
            du = np.array([x[2] for x in got]).reshape(len(keys), len(roles))
            credit[idx, j] = cu[inv]
            samples[idx, j] = su[inv]
            spent[idx, j] = (du[inv] * cost_tab).sum(axis=1)
    return AdaptiveEstimate(credit, samples, spent)


def _random(
    labels: NDArray[np.int64],
    gold: NDArray[np.int64],
    cost: NDArray[np.float64],
    scheme: AdaptiveScheme,
    tie_credit: TieCredit,
    orderings: int,
    seed: int,
) -> AdaptiveEstimate:
    if not (isinstance(orderings, int) and orderings >= 1):
        raise ValueError(f"orderings must be an integer >= 1, got {orderings!r}")
    m, n = labels.shape
    rng = np.random.default_rng(seed)
    perm = np.argsort(rng.random((m * orderings, n)), axis=1)[:, : scheme.n_max]
    owner = np.repeat(np.arange(m), orderings)
    seq = labels[owner[:, None], perm]
    cst = cost[owner[:, None], perm]
    credit, drawn, spent = run_sequences(scheme, seq, gold[owner], cst, tie_credit)
    shape = (m, orderings)
    return AdaptiveEstimate(
        credit.reshape(shape).mean(axis=1),
        drawn.reshape(shape).mean(axis=1).astype(float),
        spent.reshape(shape).mean(axis=1),
    )


def adaptive_utility(
    credit: NDArray[np.float64], cost: NDArray[np.float64], contexts: Sequence[Context]
) -> NDArray[np.float64]:
    """(rows, C): ``w_accuracy · credit − w_cost · cost`` per context (majority vote's utility,
    ``w_accuracy`` defaulting to 1 as in :class:`iapo.strategies.MajorityVote`)."""
    w = np.array([float(c.weights.get(ACCURACY, 1.0)) for c in contexts])
    wc = np.array([c.cost_weight for c in contexts])
    return np.asarray(credit[:, None] * w[None, :] - cost[:, None] * wc[None, :], dtype=np.float64)
