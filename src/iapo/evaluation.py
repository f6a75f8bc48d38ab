"""Ground truth on a replayed pool: the exact Q of every arm per context, and what a policy scores.

A pool cell is a categorical distribution over recorded completions, so the expected utility of
(prompt, N) on a query is exact (``Strategy.exact_utility``); Q is its mean over queries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from iapo.pools import Pool
from iapo.strategies import Strategy, exact_cell_utilities
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


def policy_evaluation(ev: Evaluation, chosen: Mapping[str, Arm]) -> dict[str, Any]:
    """Exact Q (on ``ev``'s queries) of the chosen arms and of the oracle's, the ACR of both, and
    the whole ground-truth table (for reports)."""
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
        for c in ev.contexts
    }
    return {
        "acr_test": float(np.mean([v["q_test"] for v in per_context.values()])),
        "oracle_acr_test": float(np.mean([v["oracle"]["q_test"] for v in per_context.values()])),
        "contexts": per_context,
        "ground_truth": ev.to_dict(),
    }
