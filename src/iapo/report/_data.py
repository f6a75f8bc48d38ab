"""The tables behind the report, derived from a run's result (plain Python, no plotting)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from iapo.errors import InputError

__all__ = [
    "REQUIRED_KEYS",
    "Report",
    "as_result_dict",
]

REQUIRED_KEYS = ("policy", "estimates", "account", "trace", "contexts", "prompts", "n_max")

#: At most this many contexts get their own panel in the per-context figures.
MAX_PANELS = 6

Row = dict[str, Any]


def as_result_dict(result: Any, *, source: str | None = None) -> dict[str, Any]:
    """A run's result as a plain dict (a :class:`~iapo.RunResult` or its ``to_dict()``)."""
    to_dict = getattr(result, "to_dict", None)
    d = to_dict() if callable(to_dict) else result
    if not isinstance(d, Mapping):
        raise InputError("not an iapo run result: expected result.json's object", source=source)
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise InputError(
            f"not an iapo run result (missing {', '.join(missing)}): point at a run's result.json",
            source=source,
        )
    return dict(d)


def _f(x: Any) -> float:
    """A JSON number (or null) as a float; null becomes NaN."""
    return float("nan") if x is None else float(x)


def fmt_weight(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class Report:
    """A run's result, with the derived tables every figure, CSV and HTML section uses."""

    result: dict[str, Any]

    # -- basics -----------------------------------------------------------------------------------
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

    def prompts_used(self) -> list[str]:
        """Prompts in the result, plus any that appear only in the policy or the account."""
        seen = list(self.prompts)
        extra = [ch["prompt"] for ch in self.result["policy"].values()]
        extra += list(self.result["account"].get("by_prompt", {}))
        for p in extra:
            if p not in seen:
                seen.append(p)
        return seen

    # -- the policy -------------------------------------------------------------------------------
    def policy_rows(self) -> list[Row]:
        """One row per context: the chosen arm, its estimate and interval, the runner-up, and
        (pool runs) its exact Q on held-out queries and the oracle's arm."""
        ev_ctx = (self.evaluation or {}).get("contexts", {})
        rows = []
        for name in self._policy_order():
            ch = self.result["policy"][name]
            lo, hi = (ch.get("ci95") or [None, None])[:2]
            ru = ch.get("runner_up") or None
            row: Row = {
                "context": name,
                "prompt": ch["prompt"],
                "n": int(ch["n"]),
                "q": ch.get("q"),
                "ci_low": lo,
                "ci_high": hi,
                "observations": ch.get("observations"),
                "runner_up_prompt": ru["prompt"] if ru else None,
                "runner_up_n": int(ru["n"]) if ru else None,
                "runner_up_q": ru.get("q") if ru else None,
            }
            if ev_ctx:
                e = ev_ctx.get(name) or {}
                oracle = e.get("oracle") or {}
                row.update(
                    {
                        "q_test": e.get("q_test"),
                        "oracle_prompt": oracle.get("prompt"),
                        "oracle_n": oracle.get("n"),
                        "oracle_q_test": oracle.get("q_test"),
                    }
                )
            rows.append(row)
        return rows

    def _policy_order(self) -> list[str]:
        names = [n for n in self.context_names if n in self.result["policy"]]
        names += [n for n in self.result["policy"] if n not in names]
        return names

    # -- the estimates ----------------------------------------------------------------------------
    def estimate_rows(self) -> list[Row]:
        """Every estimated arm per context, with its 95 % interval (q ± 1.96·SEM)."""
        truth = self.truth or {}
        rows = []
        for ctx in self._policy_order():
            chosen = self.result["policy"][ctx]
            for e in self.result["estimates"].get(ctx, []):
                q, sem = _f(e.get("q")), _f(e.get("sem"))
                half = 1.96 * sem
                t = truth.get(ctx, {}).get(e["prompt"])
                n = int(e["n"])
                rows.append(
                    {
                        "context": ctx,
                        "prompt": e["prompt"],
                        "n": n,
                        "q": e.get("q"),
                        "sem": e.get("sem"),
                        "ci_low": q - half if math.isfinite(half) else None,
                        "ci_high": q + half if math.isfinite(half) else None,
                        "observations": e.get("observations"),
                        "chosen": e["prompt"] == chosen["prompt"] and n == int(chosen["n"]),
                        "q_true": t[n - 1] if t is not None and n <= len(t) else None,
                    }
                )
        return rows

    def curves(self, ctx: str) -> dict[str, list[Row]]:
        """Per prompt, the context's estimates ordered by N."""
        out: dict[str, list[Row]] = {}
        for r in self.estimate_rows():
            if r["context"] == ctx:
                out.setdefault(r["prompt"], []).append(r)
        for rows in out.values():
            rows.sort(key=lambda r: r["n"])
        return out

    # -- PSST trace -------------------------------------------------------------------------------
    def trace_rows(self) -> list[Row]:
        """Per round and prompt: pulls, the N pulled at, completions (pulls × N)."""
        rows = []
        for t in self.result["trace"]:
            pulls: Mapping[str, int] = t.get("pulls", {})
            ns: Mapping[str, int] = t.get("n", {})
            for p in self.prompts_used():
                if p in pulls:
                    k, n = int(pulls[p]), int(ns.get(p, 0))
                    rows.append(
                        {
                            "round": int(t["round"]),
                            "prompt": p,
                            "pulls": k,
                            "n": n,
                            "completions": k * n,
                        }
                    )
        return rows

    def alive_rows(self) -> list[Row]:
        """Per round (0: before the first) and context: arms still alive."""
        start = len(self.prompts) * self.n_max
        rows = [{"round": 0, "context": c, "alive": start} for c in self.context_names]
        for t in self.result["trace"]:
            for c, a in t.get("alive", {}).items():
                rows.append({"round": int(t["round"]), "context": c, "alive": int(a)})
        return rows

    def round_summary(self) -> list[Row]:
        """Per round: completions spent, the per-prompt pulls × N, arms alive (min/median/max)."""
        rows = []
        for t in self.result["trace"]:
            alive = sorted(int(a) for a in t.get("alive", {}).values())
            pulls: Mapping[str, int] = t.get("pulls", {})
            ns: Mapping[str, int] = t.get("n", {})
            rows.append(
                {
                    "round": int(t["round"]),
                    "completions": int(t.get("completions", 0)),
                    "prompts": {p: (int(pulls[p]), int(ns.get(p, 0))) for p in pulls},
                    "alive_min": alive[0] if alive else None,
                    "alive_median": alive[len(alive) // 2] if alive else None,
                    "alive_max": alive[-1] if alive else None,
                }
            )
        return rows

    # -- the budget account -----------------------------------------------------------------------
    def budget_rows(self) -> list[Row]:
        """Per prompt: pulls, completions, drawn new, from the bank, cost, share of completions."""
        acc = self.result["account"]
        by = acc.get("by_prompt", {})
        total = max(int(acc.get("completions", 0)), 1)
        rows = []
        for p in self.prompts_used():
            b = by.get(p)
            if b is None:
                continue
            comp, drawn = int(b.get("completions", 0)), int(b.get("drawn", 0))
            rows.append(
                {
                    "prompt": p,
                    "pulls": int(b.get("pulls", 0)),
                    "completions": comp,
                    "drawn": drawn,
                    "cache_hits": comp - drawn,
                    "cost": float(b.get("cost", 0.0)),
                    "prompt_tokens": b.get("prompt_tokens"),
                    "completion_tokens": b.get("completion_tokens"),
                    "share": comp / total,
                }
            )
        return rows

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
                q = _f(e.get("q"))
                if math.isfinite(q):
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
            q = _f(e.get("q"))
            if not math.isfinite(q):
                continue
            p = e["prompt"]
            best[p] = max(best.get(p, -math.inf), q)
            if int(e["n"]) == 1:
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

    # -- the policy map grid ----------------------------------------------------------------------
    def policy_grid(self) -> tuple[list[str], list[float], dict[tuple[int, int], str]]:
        """Rows: the distinct objective-weight vectors (in context order); columns: the distinct
        cost weights (ascending); cells: the context at (row, column)."""
        rows: list[tuple[tuple[str, float], ...]] = []
        cols: list[float] = []
        for c in self.contexts:
            key = tuple((str(k), float(v)) for k, v in c["weights"].items())
            if key not in rows:
                rows.append(key)
            cw = float(c["cost_weight"])
            if cw not in cols:
                cols.append(cw)
        cols.sort()
        cells: dict[tuple[int, int], str] = {}
        for c in self.contexts:
            key = tuple((str(k), float(v)) for k, v in c["weights"].items())
            if c["name"] in self.result["policy"]:
                cells[(rows.index(key), cols.index(float(c["cost_weight"])))] = c["name"]
        labels = [", ".join(f"{k}={fmt_weight(v)}" for k, v in key) or "(none)" for key in rows]
        return labels, cols, cells


def _ranks(values: Mapping[str, float | None]) -> dict[str, int]:
    """1 = largest; ties keep the given order; missing values get no rank."""
    present = [(p, v) for p, v in values.items() if v is not None]
    order = sorted(present, key=lambda pv: -pv[1])
    return {p: i + 1 for i, (p, _) in enumerate(order)}


def distinct(items: Sequence[str]) -> list[str]:
    out: list[str] = []
    for x in items:
        if x not in out:
            out.append(x)
    return out
