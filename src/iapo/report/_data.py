"""The tables behind the report, derived from a run's result (plain Python, no plotting)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from iapo.fmt import weight as fmt_weight
from iapo.report._rankings import RankingTables
from iapo.report._view import Row, adaptive_of, as_float

__all__ = [
    "Report",
]


@dataclass(frozen=True)
class Report(RankingTables):
    """A run's result, with the derived tables every figure, CSV and HTML section uses (the
    rankings and the choice of panels come from :class:`RankingTables`)."""

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
                # adaptive arms (issue #15): the rule and batch, and the expected samples drawn
                "adaptive": adaptive_of(ch),
                "expected_samples": ch.get("expected_samples"),
                "runner_up_adaptive": adaptive_of(ru) if ru else None,
            }
            if ev_ctx:
                e = ev_ctx.get(name) or {}
                oracle = e.get("oracle") or {}
                row.update(
                    {
                        "q_test": e.get("q_test"),
                        "oracle_prompt": oracle.get("prompt"),
                        "oracle_n": oracle.get("n"),
                        "oracle_adaptive": adaptive_of(oracle),
                        "oracle_q_test": oracle.get("q_test"),
                    }
                )
            rows.append(row)
        return rows

    # -- the estimates ----------------------------------------------------------------------------
    def estimate_rows(self) -> list[Row]:
        """Every estimated arm per context, with its 95 % interval (q ± 1.96·SEM)."""
        truth = self.truth or {}
        rows = []
        for ctx in self._policy_order():
            chosen = self.result["policy"][ctx]
            for e in self.result["estimates"].get(ctx, []):
                q, sem = as_float(e.get("q")), as_float(e.get("sem"))
                half = 1.96 * sem
                t = truth.get(ctx, {}).get(e["prompt"])
                n = int(e["n"])
                ad = adaptive_of(e)
                if ad is not None:  # the exact held-out curve is of fixed arms
                    t = None
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
                        "chosen": e["prompt"] == chosen["prompt"]
                        and n == int(chosen["n"])
                        and ad == adaptive_of(chosen),
                        "q_true": t[n - 1] if t is not None and n <= len(t) else None,
                        "adaptive": ad,
                        # a fixed arm draws N; an adaptive one its expected samples, if known
                        "expected_samples": float(n) if ad is None else e.get("expected_samples"),
                    }
                )
        return rows

    def curves(self, ctx: str) -> dict[str, list[Row]]:
        """Per prompt, the context's estimates of fixed arms ordered by N."""
        out: dict[str, list[Row]] = {}
        for r in self.estimate_rows():
            if r["context"] == ctx and r["adaptive"] is None:
                out.setdefault(r["prompt"], []).append(r)
        for rows in out.values():
            rows.sort(key=lambda r: r["n"])
        return out

    def adaptive_points(self, ctx: str) -> list[Row]:
        """The context's estimates of adaptive arms (issue #15), by prompt, rule and N_max."""
        rows = [r for r in self.estimate_rows() if r["context"] == ctx and r["adaptive"]]
        return sorted(rows, key=lambda r: (r["prompt"], r["adaptive"], r["n"]))

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
