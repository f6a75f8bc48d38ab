"""The deceiving-prompts tables (each prompt's rank at N=1 vs at the chosen N) and the choice
of the few contexts and prompts a crowded figure shows."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from iapo.report._view import ResultView, Row, as_float, distinct

__all__ = ["MAX_PANELS", "RankingTables"]

#: At most this many contexts get their own panel in the per-context figures.
MAX_PANELS = 6


@dataclass(frozen=True)
class RankingTables(ResultView):
    """A run's result with its rankings and the contexts and prompts worth a panel or a colour."""

    # -- deceiving prompts ------------------------------------------------------------------------
    def ranking_rows(self) -> list[Row]:
        """Per context and prompt: the estimated Q and rank at N=1 and at the context's chosen N.

        Ranks are 1 = best; a prompt with no estimate at that N gets no rank. ``q_true_*`` hold
        the exact held-out values when the run replayed a pool.
        """
        truth = self.truth or {}
        rows = []
        for ctx in self._policy_order():
            chosen = self.result["policy"][ctx]
            n_star = int(chosen["n"])
            est: dict[tuple[str, int], float] = {}
            for e in self.result["estimates"].get(ctx, []):
                q = as_float(e.get("q"))
                if math.isfinite(q) and not e.get("adaptive"):  # fixed arms: Q at N
                    est[(e["prompt"], int(e["n"]))] = q
            r1 = _ranks({p: est.get((p, 1)) for p in self.prompts})
            rn = _ranks({p: est.get((p, n_star)) for p in self.prompts})
            for p in self.prompts:
                t = truth.get(ctx, {}).get(p)
                rows.append(
                    {
                        "context": ctx,
                        "chosen_prompt": chosen["prompt"],
                        "chosen_n": n_star,
                        "prompt": p,
                        "q_n1": est.get((p, 1)),
                        "rank_n1": r1.get(p),
                        "q_chosen_n": est.get((p, n_star)),
                        "rank_chosen_n": rn.get(p),
                        "q_true_n1": t[0] if t else None,
                        "q_true_chosen_n": t[n_star - 1] if t and n_star <= len(t) else None,
                    }
                )
        return rows

    def rankings(self) -> list[Row]:
        """Per context: the prompts ordered by estimated Q at N=1 and at the chosen N, and whether
        the N=1 leader is not the chosen prompt (it looked best alone and was dropped)."""
        by_ctx: dict[str, list[Row]] = {}
        for r in self.ranking_rows():
            by_ctx.setdefault(r["context"], []).append(r)
        out = []
        for ctx, rows in by_ctx.items():
            ranked1 = sorted((r for r in rows if r["rank_n1"]), key=lambda r: r["rank_n1"])
            rankedn = sorted(
                (r for r in rows if r["rank_chosen_n"]), key=lambda r: r["rank_chosen_n"]
            )
            leader = ranked1[0]["prompt"] if ranked1 else None
            chosen = rows[0]["chosen_prompt"]
            out.append(
                {
                    "context": ctx,
                    "chosen_prompt": chosen,
                    "chosen_n": rows[0]["chosen_n"],
                    "n1": [(r["prompt"], r["q_n1"]) for r in ranked1],
                    "chosen_n_ranking": [(r["prompt"], r["q_chosen_n"]) for r in rankedn],
                    "leader_n1": leader,
                    "deceived": leader is not None and leader != chosen,
                    "missing": [r["prompt"] for r in rows if not r["rank_chosen_n"]],
                }
            )
        return out

    def highlighted_prompts(self, ctx: str, k: int = 5) -> list[str]:
        """The prompts worth a colour in a crowded panel: the chosen one, the runner-up's, the
        N=1 leader, then the best by estimated Q at any N, ``k`` in all (at least the first
        three), in the run's prompt order."""
        policy = self.result["policy"][ctx]
        first = [policy["prompt"]]
        ru = policy.get("runner_up")
        if ru:
            first.append(ru["prompt"])
        best: dict[str, float] = {}
        n1: dict[str, float] = {}
        for e in self.result["estimates"].get(ctx, []):
            q = as_float(e.get("q"))
            if not math.isfinite(q):
                continue
            p = e["prompt"]
            best[p] = max(best.get(p, -math.inf), q)
            if int(e["n"]) == 1 and not e.get("adaptive"):
                n1[p] = q
        if n1:
            first.append(max(n1, key=lambda p: n1[p]))
        picked = distinct(first)
        for p in sorted(best, key=lambda p: -best[p]):
            if len(picked) >= k:
                break
            if p not in picked:
                picked.append(p)
        return [p for p in self.prompts_used() if p in picked]

    def deceiving_truth(self) -> list[dict[str, Any]]:
        """The exact deceiving prompts on held-out queries (pool runs), as the evaluation lists
        them: the N=1 leader is not the optimal arm's prompt."""
        ev = self.evaluation or {}
        return list((ev.get("ground_truth") or {}).get("deceiving") or [])

    # -- which contexts get a panel ---------------------------------------------------------------
    def representative_contexts(self, k: int = MAX_PANELS) -> list[str]:
        """All contexts when there are at most ``k``; otherwise ``k`` of them spread over the
        context list, covering every distinct chosen prompt first."""
        names = self._policy_order()
        if len(names) <= k:
            return names
        picked: list[int] = []
        by_prompt: dict[str, list[int]] = {}
        for i, n in enumerate(names):
            by_prompt.setdefault(self.result["policy"][n]["prompt"], []).append(i)
        for idx in by_prompt.values():
            if len(picked) < k:
                picked.append(idx[len(idx) // 2])
        step = (len(names) - 1) / max(k - 1, 1)
        for j in range(k):
            if len(picked) >= k:
                break
            i = round(j * step)
            if i not in picked:
                picked.append(i)
        for i in range(len(names)):
            if len(picked) >= k:
                break
            if i not in picked:
                picked.append(i)
        return [names[i] for i in sorted(picked)]

    def ranking_contexts(self, k: int = MAX_PANELS) -> list[str]:
        """Contexts for the deceiving-prompts panels: those whose N=1 leader was dropped first
        (spread over the list), then representative others."""
        names = self._policy_order()
        if len(names) <= k:
            return names
        deceived = [r["context"] for r in self.rankings() if r["deceived"]]
        if len(deceived) >= k:
            step = (len(deceived) - 1) / max(k - 1, 1)
            picked = distinct([deceived[round(j * step)] for j in range(k)])
        else:
            picked = list(deceived)
            for c in [*self.representative_contexts(k), *names]:
                if len(picked) >= k:
                    break
                if c not in picked:
                    picked.append(c)
        return [n for n in names if n in picked]


def _ranks(values: Mapping[str, float | None]) -> dict[str, int]:
    """1 = largest; ties keep the given order; missing values get no rank."""
    present = [(p, v) for p, v in values.items() if v is not None]
    order = sorted(present, key=lambda pv: -pv[1])
    return {p: i + 1 for i, (p, _) in enumerate(order)}
