"""A run's result dict seen through the accessors every report table uses, and the small
helpers those tables share (plain Python, no plotting)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ResultView", "Row", "adaptive_of", "arm_label", "as_float", "distinct"]

Row = dict[str, Any]


def as_float(x: Any) -> float:
    """A JSON number (or null) as a float; null becomes NaN."""
    return float("nan") if x is None else float(x)


def adaptive_of(entry: Mapping[str, Any]) -> str | None:
    """The adaptive rule and batch of a policy or estimate entry (``"decided/b2"``; issue #15),
    None for a fixed arm (the key absent or empty)."""
    a = entry.get("adaptive")
    return str(a) if a else None


def arm_label(prompt: str, n: Any, adaptive: str | None) -> str:
    """``prompt @ N=4`` for a fixed arm, ``prompt @ N≤10 decided/b2`` for an adaptive one."""
    return f"{prompt} @ N≤{n} {adaptive}" if adaptive else f"{prompt} @ N={n}"


def distinct(items: Sequence[str]) -> list[str]:
    """``items`` without repeats, in first-appearance order."""
    out: list[str] = []
    for x in items:
        if x not in out:
            out.append(x)
    return out


@dataclass(frozen=True)
class ResultView:
    """A run's result (``RunResult.to_dict()``): its prompts, contexts and evaluation."""

    result: dict[str, Any]

    @property
    def prompts(self) -> list[str]:
        return [str(p) for p in self.result["prompts"]]

    @property
    def n_max(self) -> int:
        return int(self.result["n_max"])

    @property
    def contexts(self) -> list[dict[str, Any]]:
        return list(self.result["contexts"])

    @property
    def context_names(self) -> list[str]:
        return [str(c["name"]) for c in self.contexts]

    @property
    def cost_unit(self) -> str:
        return str(self.result.get("extra", {}).get("cost_unit") or "")

    @property
    def evaluation(self) -> dict[str, Any] | None:
        ev = self.result.get("evaluation")
        return ev if isinstance(ev, Mapping) and ev else None  # type: ignore[return-value]

    @property
    def truth(self) -> dict[str, dict[str, list[float]]] | None:
        """Exact Q on held-out queries per context and prompt, N = 1..n_max (pool runs only)."""
        ev = self.evaluation
        if ev is None:
            return None
        gt = ev.get("ground_truth") or {}
        q = gt.get("q")
        return q if isinstance(q, dict) and q else None

    @property
    def has_adaptive(self) -> bool:
        """Whether any policy or estimate entry is an adaptive arm (issue #15): only then do the
        report's adaptive columns and its Pareto figure appear (fixed-only reports as before)."""
        entries = list(self.result["policy"].values())
        entries += [e for es in self.result["estimates"].values() for e in es]
        return any(adaptive_of(e) for e in entries)

    def prompts_used(self) -> list[str]:
        """Prompts in the result, plus any that appear only in the policy or the account."""
        seen = list(self.prompts)
        extra = [ch["prompt"] for ch in self.result["policy"].values()]
        extra += list(self.result["account"].get("by_prompt", {}))
        for p in extra:
            if p not in seen:
                seen.append(p)
        return seen

    def _policy_order(self) -> list[str]:
        """The policy's contexts: in context-list order, then any only the policy names."""
        names = [n for n in self.context_names if n in self.result["policy"]]
        names += [n for n in self.result["policy"] if n not in names]
        return names
