"""Ground truth on a replayed pool: the exact Q of every arm per context, and what a policy scores.

A pool cell is a categorical distribution over recorded completions, so the expected utility of
(prompt, N) on a query is exact (``Strategy.exact_utility``); Q is its mean over queries.
Adaptive majority-vote arms (issue #15) are exact too (:func:`iapo.adaptive.adaptive_exact`):
their columns follow the fixed ones (:class:`iapo.adaptive.ArmLayout`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from iapo.adaptive import ArmLayout
from iapo.pools import Pool
from iapo.strategies import MajorityVote, Strategy, exact_adaptive_utilities, exact_cell_utilities
from iapo.types import Arm, Context

__all__ = ["Evaluation", "exact_q_table", "policy_evaluation"]


def exact_q_table(
    pool: Pool,
    strategy: Strategy,
    contexts: tuple[Context, ...],
    n_max: int,
    queries: tuple[str, ...] | None = None,
    prompts: tuple[str, ...] | None = None,
) -> NDArray[np.float64]:
    """Ground-truth Q(c, (p, N)) of the categorical cell model: (C, P, n_max), mean over queries."""
    cells = exact_cell_utilities(pool, strategy, contexts, n_max, prompts=prompts, queries=queries)
    return np.asarray(cells.mean(axis=1).transpose(1, 0, 2), dtype=np.float64)


def _adaptive_tables(
    pool: Pool,
    strategy: Strategy,
    contexts: tuple[Context, ...],
    n_max: int,
    adaptive: tuple[str, ...],
    queries: tuple[str, ...] | None,
    prompts: tuple[str, ...] | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The adaptive columns' Q (C, P, A·n_max) and expected samples (P, A·n_max)."""
    if not isinstance(strategy, MajorityVote):
        raise ValueError(f"adaptive arms need majority_vote, not {strategy.name}")
    util, samples = exact_adaptive_utilities(
        pool, strategy, contexts, n_max, adaptive, prompts, queries
    )
    q = np.asarray(util.mean(axis=1).transpose(1, 0, 2), dtype=np.float64)
    return q, np.asarray(samples.mean(axis=1), dtype=np.float64)


@dataclass(frozen=True)
class Evaluation:
    """The exact Q table of every arm per context, the optimal policy and the deceiving prompts."""

    contexts: tuple[Context, ...]
    prompts: tuple[str, ...]
    q: NDArray[np.float64]  # (C, P, n_max), or (C, P, width) with adaptive arms
    queries: str
    adaptive: tuple[str, ...] = ()
    samples: NDArray[np.float64] | None = None  # (P, width): expected samples, adaptive arms

    @classmethod
    def from_pool(
        cls,
        pool: Pool,
        strategy: Strategy,
        contexts: tuple[Context, ...],
        n_max: int,
        queries: tuple[str, ...],
        prompts: tuple[str, ...],
        label: str,
        adaptive: tuple[str, ...] = (),
    ) -> Evaluation:
        """The exact table of ``prompts`` on ``queries`` (``label`` names them), adaptive arms
        included when ``adaptive`` names some."""
        q = exact_q_table(pool, strategy, contexts, n_max, queries, prompts)
        if not adaptive:
            return cls(contexts, prompts, q, label)
        qa, sa = _adaptive_tables(pool, strategy, contexts, n_max, adaptive, queries, prompts)
        fixed = np.broadcast_to(np.arange(1.0, n_max + 1), (len(prompts), n_max))
        return cls(
            contexts,
            prompts,
            np.concatenate([q, qa], axis=2),
            label,
            adaptive,
            np.concatenate([fixed, sa], axis=1),
        )

    @property
    def layout(self) -> ArmLayout:
        return ArmLayout(self.q.shape[2] // (1 + len(self.adaptive)), self.adaptive)

    def value(self, context: str, arm: Arm) -> float:
        ci = [c.name for c in self.contexts].index(context)
        return float(self.q[ci, self.prompts.index(arm.prompt), self.layout.column(arm)])

    def expected_samples(self, arm: Arm) -> float:
        """Expected samples per query of ``arm`` (N for a fixed arm)."""
        if self.samples is None or not arm.adaptive:
            return float(arm.n)
        return float(self.samples[self.prompts.index(arm.prompt), self.layout.column(arm)])

    def optimal(self) -> dict[str, Arm]:
        out = {}
        lay = self.layout
        for ci, c in enumerate(self.contexts):
            if not self.adaptive:
                p, k = np.unravel_index(int(np.argmax(self.q[ci])), self.q[ci].shape)
                out[c.name] = Arm(self.prompts[int(p)], int(k) + 1)
                continue
            q = np.where(lay.valid[None, :], self.q[ci], -np.inf)
            ps, ks = np.nonzero(q >= q.max() - 1e-12)  # ties (to rounding): smaller N, adaptive
            # first (it never draws more), then prompt order
            i = int(np.lexsort((ps, lay.tie_rank[ks]))[0])
            out[c.name] = lay.arm(self.prompts[int(ps[i])], int(ks[i]))
        return out

    def deceiving(self) -> list[dict[str, Any]]:
        """Contexts where the best prompt at N=1 is not the prompt of the optimal arm."""
        out = []
        opt = self.optimal()
        lay = self.layout
        for ci, c in enumerate(self.contexts):
            p1 = int(np.argmax(self.q[ci, :, 0]))
            arm = opt[c.name]
            ps = self.prompts.index(arm.prompt)
            if p1 == ps or self.q[ci, ps, 0] >= self.q[ci, p1, 0]:  # not ahead, or only tied
                continue
            k = lay.column(arm)
            best = int(np.argmax(np.where(lay.valid, self.q[ci, p1], -np.inf)))
            extra = {"optimal_adaptive": arm.adaptive} if arm.adaptive else {}
            if self.adaptive and lay.arm("", best).adaptive:
                extra["deceiving_best_adaptive"] = lay.arm("", best).adaptive
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
                        "n": int(lay.sizes[best]),
                        "q": float(self.q[ci, p1, best]),
                    },
                    **extra,
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        n = self.layout.n_max
        out: dict[str, Any] = {
            "queries": self.queries,
            "prompts": list(self.prompts),
            "contexts": [c.to_dict() for c in self.contexts],
            "q": {
                c.name: {
                    p: [float(x) for x in self.q[ci, pi, :n]] for pi, p in enumerate(self.prompts)
                }
                for ci, c in enumerate(self.contexts)
            },
            "optimal": {k: _arm_dict(a) for k, a in self.optimal().items()},
            "deceiving": self.deceiving(),
        }
        if self.adaptive:  # per arm id, N_max' = 2..n_max
            blocks = {a: slice((r + 1) * n + 1, (r + 2) * n) for r, a in enumerate(self.adaptive)}
            out["adaptive"] = list(self.adaptive)
            out["q_adaptive"] = {
                c.name: {
                    p: {a: [float(x) for x in self.q[ci, pi, sl]] for a, sl in blocks.items()}
                    for pi, p in enumerate(self.prompts)
                }
                for ci, c in enumerate(self.contexts)
            }
            assert self.samples is not None
            out["samples_adaptive"] = {
                p: {a: [float(x) for x in self.samples[pi, sl]] for a, sl in blocks.items()}
                for pi, p in enumerate(self.prompts)
            }
        return out


def _arm_dict(arm: Arm) -> dict[str, Any]:
    out: dict[str, Any] = {"prompt": arm.prompt, "n": arm.n}
    if arm.adaptive:
        out["adaptive"] = arm.adaptive
    return out


def policy_evaluation(ev: Evaluation, chosen: Mapping[str, Arm]) -> dict[str, Any]:
    """Exact Q (on ``ev``'s queries) of the chosen arms and of the oracle's, the ACR of both, and
    the whole ground-truth table (for reports)."""
    opt = ev.optimal()
    per_context: dict[str, dict[str, Any]] = {
        c.name: {
            "q_test": ev.value(c.name, chosen[c.name]),
            "oracle": {**_arm_dict(opt[c.name]), "q_test": ev.value(c.name, opt[c.name])},
            **_samples(ev, chosen[c.name], opt[c.name]),
        }
        for c in ev.contexts
    }
    return {
        "acr_test": float(np.mean([v["q_test"] for v in per_context.values()])),
        "oracle_acr_test": float(np.mean([v["oracle"]["q_test"] for v in per_context.values()])),
        "contexts": per_context,
        "ground_truth": ev.to_dict(),
    }


def _samples(ev: Evaluation, chosen: Arm, oracle: Arm) -> dict[str, Any]:
    """Expected samples per query of the chosen and the oracle arm, with adaptive arms only."""
    if not ev.adaptive:
        return {}
    return {
        "expected_samples": ev.expected_samples(chosen),
        "oracle_expected_samples": ev.expected_samples(oracle),
    }
