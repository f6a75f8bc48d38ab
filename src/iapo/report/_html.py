"""Write a run's report: CSV tables, PNG figures and one self-contained HTML page."""

from __future__ import annotations

import base64
import csv
import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from iapo.errors import InputError
from iapo.fmt import amount, num
from iapo.fmt import weight as fmt_weight
from iapo.report._data import Report
from iapo.result import as_result_dict

__all__ = ["ADAPTIVE_COLUMNS", "CSV_COLUMNS", "write_csvs", "write_report"]

#: CSV file stem → its columns (keys of the rows :class:`Report` derives).
CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "policy": (
        "context",
        "prompt",
        "n",
        "q",
        "ci_low",
        "ci_high",
        "observations",
        "runner_up_prompt",
        "runner_up_n",
        "runner_up_q",
        "q_test",
        "oracle_prompt",
        "oracle_n",
        "oracle_q_test",
    ),
    "estimates": (
        "context",
        "prompt",
        "n",
        "q",
        "sem",
        "ci_low",
        "ci_high",
        "observations",
        "chosen",
        "q_true",
    ),
    "trace": ("round", "prompt", "pulls", "n", "completions"),
    "alive": ("round", "context", "alive"),
    "rankings": (
        "context",
        "chosen_prompt",
        "chosen_n",
        "prompt",
        "q_n1",
        "rank_n1",
        "q_chosen_n",
        "rank_chosen_n",
        "q_true_n1",
        "q_true_chosen_n",
    ),
    "budget": (
        "prompt",
        "pulls",
        "completions",
        "drawn",
        "cache_hits",
        "cost",
        "prompt_tokens",
        "completion_tokens",
        "share",
    ),
}


#: Columns a table gains when the run has adaptive arms (issue #15); fixed-only runs' CSVs are
#: as before.
ADAPTIVE_COLUMNS: dict[str, tuple[str, ...]] = {
    "policy": ("adaptive", "expected_samples", "runner_up_adaptive", "oracle_adaptive"),
    "estimates": ("adaptive", "expected_samples"),
}

#: A text cell starting with one of these is a formula to a spreadsheet (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(x: Any) -> Any:
    """A CSV cell: empty for None/NaN/inf; text that a spreadsheet would run as a formula
    (starting with = + - @, a tab or a carriage return) gets a leading ``'`` so it stays text."""
    if x is None:
        return ""
    if isinstance(x, float) and not math.isfinite(x):
        return ""
    if isinstance(x, str) and x.startswith(_FORMULA_START):
        return "'" + x
    return x


def _rows(rep: Report, name: str) -> list[dict[str, Any]]:
    return {
        "policy": rep.policy_rows,
        "estimates": rep.estimate_rows,
        "trace": rep.trace_rows,
        "alive": rep.alive_rows,
        "rankings": rep.ranking_rows,
        "budget": rep.budget_rows,
    }[name]()


def write_csvs(rep: Report, out_dir: Path) -> dict[str, Path]:
    """One CSV per table (:data:`CSV_COLUMNS`, plus :data:`ADAPTIVE_COLUMNS` when the run has
    adaptive arms); empty cells for missing values."""
    out = {}
    for name, cols in CSV_COLUMNS.items():
        if rep.has_adaptive:
            cols = cols + ADAPTIVE_COLUMNS.get(name, ())
        path = out_dir / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            for row in _rows(rep, name):
                w.writerow([_cell(row.get(c)) for c in cols])
        out[name] = path
    return out


# -- HTML -----------------------------------------------------------------------------------------
def _amount(x: Any) -> str:
    return amount(x, sig=4)


def _pct(x: Any) -> str:
    return "—" if x is None else f"{float(x):.0%}"


def _template() -> str:
    return (
        resources.files("iapo.report")
        .joinpath("templates/report.html.j2")
        .read_text(encoding="utf-8")
    )


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header (IHDR)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def render_html(
    rep: Report,
    figures: Mapping[str, tuple[bytes, str, str]],
    files: Sequence[str],
    *,
    dpi: float = 150.0,
) -> str:
    """The page: ``figures`` maps a figure's name to (PNG bytes, title, caption)."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = num
    env.filters["amount"] = _amount
    env.filters["pct"] = _pct
    env.filters["weight"] = fmt_weight
    r = rep.result
    acc = {
        "budget": 0,
        "completions": 0,
        "drawn": 0,
        "cache_hits": 0,
        "cost": 0.0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        **r["account"],
    }
    figs = {}
    for name, (png, title, caption) in figures.items():
        w, h = _png_size(png)
        figs[name] = {
            "src": "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
            "title": title,
            "caption": caption,
            "file": f"{name}.png",
            # shown at the figure's size in inches (96 CSS px per inch), so fonts match across
            # figures; the stylesheet shrinks wide ones to the page
            "width": round(w * 96 / dpi),
            "height": round(h * 96 / dpi),
        }
    rankings = rep.rankings()
    budget = rep.budget_rows()
    show_tokens = any(b["prompt_tokens"] is not None for b in budget)
    return env.from_string(_template()).render(
        r=r,
        rep=rep,
        acc=acc,
        ev=rep.evaluation,
        policy=rep.policy_rows(),
        figs=figs,
        rounds=rep.round_summary(),
        trace_prompts=[p for p in rep.prompts_used() if any(p in t["pulls"] for t in r["trace"])],
        rankings=rankings,
        dropped=sum(1 for x in rankings if x["deceived"]),
        truth_deceiving=rep.deceiving_truth(),
        budget=budget,
        show_tokens=show_tokens,
        cost_unit=rep.cost_unit,
        files=files,
        config_json=json.dumps(r.get("config", {}), indent=2, sort_keys=False),
        n_contexts=len(rep.context_names),
        adaptive=rep.has_adaptive,
    )


def write_report(result: Any, out_dir: str | Path) -> Path:
    """Write ``report.html`` (self-contained: figures embedded), the PNG figures and the CSV
    tables of a run's result (a :class:`~iapo.RunResult` or its dict) into ``out_dir``.

    Returns the HTML file's path.
    """
    import iapo.report._figures as _figures

    rep = Report(as_result_dict(result))
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        csvs = write_csvs(rep, out)
        figures: dict[str, tuple[bytes, str, str]] = {}
        for name, (_builder, title) in _figures.figures_for(rep).items():
            fig = _figures.render(rep, name)
            path = _figures.save(fig, out / f"{name}.png")
            figures[name] = (path.read_bytes(), title, _CAPTIONS[name])
        html = render_html(
            rep,
            figures,
            [p.name for p in csvs.values()] + [f"{n}.png" for n in figures],
            dpi=_figures.DPI,
        )
        page = out / "report.html"
        page.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise InputError(
            f"cannot write the report ({exc.strerror}): choose a writable folder",
            source=str(out),
        ) from None
    return page


_CAPTIONS = {
    "q_vs_n": (
        "Estimated utility Q of each prompt as N grows, with 95 % intervals (estimate ± 1.96 "
        "SEM); the star is the arm chosen for the context. Dashed: the exact Q on the held-out "
        "queries, when the run replayed a pool. Where curves cross, the best prompt depends on N."
    ),
    "pareto": (
        "Estimated utility Q against the expected number of samples drawn per query: fixed arms "
        "as a line per prompt (N samples at N), adaptive arms (sampling in batches until their "
        "stopping rule says stop, at most N) as points, one marker per rule, in the prompt's "
        "colour; the star is the arm chosen for the context. Points up and to the left of a "
        "line answer as well for fewer samples."
    ),
    "policy_map": (
        "Each cell is a context (objective weights × cost weight), coloured by the chosen "
        "prompt and labelled with its N."
    ),
    "psst_trace": (
        "Left: arms still alive per context after each round of sequential halving. Middle and "
        "right: pulls (queries sampled) and completions (pulls × N) spent per prompt per round."
    ),
    "rankings": (
        "Each prompt's rank by estimated Q at N=1 and at the context's chosen N. A prompt that "
        "leads at N=1 but is not chosen was dropped because another prompt scales better with N "
        "(or costs less)."
    ),
    "budget": (
        "Completions (drawn new, or found in the sample bank) and cost per prompt over the whole "
        "run."
    ),
}
