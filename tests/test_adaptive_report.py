"""The report of a run with adaptive arms (issue #15): the policy table names the chosen arm's
rule and expected samples, the CSVs carry them, the Pareto figure (Q against expected samples)
draws fixed arms as a line per prompt and adaptive arms as points with the chosen arm starred,
and the page works in headless Chromium. The result is a real run's result.json with adaptive
arms written in by hand (the keys the run writes: ``adaptive``, ``expected_samples``)."""

from __future__ import annotations

import copy
import csv
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Done

pytest.importorskip("matplotlib")
pytest.importorskip("jinja2")
from test_report import CSVS, FIGURES, DevTools, _chromium, _PolicyTable

from iapo.report import write_report
from iapo.report._data import Report

RULES = {"decided/b2": 0.55, "beta:0.9/b1": 0.4}  # rule → expected samples as a share of N_max
N_MAXES = (5, 10)


def _with_adaptive(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with adaptive estimates for every prompt, rule and N_max, the first context's
    choice an adaptive arm, the second's runner-up one."""
    res = copy.deepcopy(result)
    for rows in res["estimates"].values():
        fixed = {(e["prompt"], int(e["n"])): e for e in rows}
        for (_, n), e in list(fixed.items()):
            if n not in N_MAXES:
                continue
            for i, (rule, share) in enumerate(RULES.items()):
                rows.append(
                    {
                        **e,
                        "q": e["q"] + 0.01 * (i + 1),
                        "adaptive": rule,
                        "expected_samples": round(share * n, 3),
                    }
                )
    first, second = list(res["policy"])[:2]
    ch = res["policy"][first]
    est = next(
        e
        for e in res["estimates"][first]
        if e["prompt"] == ch["prompt"] and e["n"] == 10 and e.get("adaptive") == "decided/b2"
    )
    ch.update(n=10, q=est["q"], adaptive="decided/b2", expected_samples=est["expected_samples"])
    ru = res["policy"][second]["runner_up"]
    ru.update(n=5, adaptive="beta:0.9/b1")
    res["evaluation"]["contexts"][second]["oracle"].update(n=6, adaptive="window:3/b1")
    return res


@pytest.fixture(scope="module")
def adaptive(finished_mcqa: Done, tmp_path_factory: pytest.TempPathFactory) -> Done:
    res = _with_adaptive(finished_mcqa.result)
    out = tmp_path_factory.mktemp("adaptive-report")
    (out / "result.json").write_text(json.dumps(res))
    page = write_report(res, out / "report")
    return Done(out, out, "", res, page)


def test_tables_carry_the_rule_and_expected_samples(adaptive: Done, finished_mcqa: Done) -> None:
    rep, before = Report(adaptive.result), Report(finished_mcqa.result)
    assert rep.has_adaptive and not before.has_adaptive
    first, second, *rest = rep.context_names
    rows = {r["context"]: r for r in rep.policy_rows()}
    assert rows[first]["adaptive"] == "decided/b2" and rows[first]["n"] == 10
    assert rows[first]["expected_samples"] == adaptive.result["policy"][first]["expected_samples"]
    assert rows[second]["adaptive"] is None and rows[second]["expected_samples"] is None
    assert rows[second]["runner_up_adaptive"] == "beta:0.9/b1"
    for ctx in rep.context_names:
        est = [r for r in rep.estimate_rows() if r["context"] == ctx]
        assert sum(r["chosen"] for r in est) == 1
        # the fixed curves and the rankings are those of the fixed arms alone, as before
        key = [(r["prompt"], r["n"], r["q"]) for rows in rep.curves(ctx).values() for r in rows]
        old = [(r["prompt"], r["n"], r["q"]) for rows in before.curves(ctx).values() for r in rows]
        assert key == old
        pts = rep.adaptive_points(ctx)
        assert len(pts) == len(before.prompts) * len(RULES) * len(N_MAXES)
        assert all(r["q_true"] is None for r in pts)
    chosen = next(r for r in rep.estimate_rows() if r["context"] == first and r["chosen"])
    assert chosen["adaptive"] == "decided/b2" and chosen["n"] == 10
    same = [r for r in rep.ranking_rows() if r["context"] in rest]
    assert same == [r for r in before.ranking_rows() if r["context"] in rest]


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        r = csv.DictReader(fh)
        return list(r.fieldnames or []), list(r)


def test_csvs_gain_the_adaptive_columns_only_with_adaptive_arms(
    adaptive: Done, finished_mcqa: Done
) -> None:
    out, plain = adaptive.page.parent, finished_mcqa.page.parent
    for name in CSVS:
        cols, _ = _read_csv(out / f"{name}.csv")
        old, _ = _read_csv(plain / f"{name}.csv")
        extra = {"policy": ["adaptive", "expected_samples", "runner_up_adaptive"]}
        extra["policy"].append("oracle_adaptive")
        extra["estimates"] = ["adaptive", "expected_samples"]
        assert cols == old + extra.get(name, []), name
        assert "adaptive" not in old
    _, rows = _read_csv(out / "policy.csv")
    first = adaptive.result["policy"][rows[0]["context"]]
    assert rows[0]["adaptive"] == "decided/b2"
    assert float(rows[0]["expected_samples"]) == first["expected_samples"]
    assert rows[1]["adaptive"] == "" and rows[1]["runner_up_adaptive"] == "beta:0.9/b1"
    _, est = _read_csv(out / "estimates.csv")
    fixed = [r for r in est if not r["adaptive"]]
    assert all(float(r["expected_samples"]) == int(r["n"]) for r in fixed)


def _assert_adaptive_policy_rows(rows: list[dict[str, Any]], result: dict[str, Any]) -> None:
    policy = result["policy"]
    assert [r["data-context"] for r in rows] == list(policy)
    for r in rows:
        ch = policy[r["data-context"]]
        cells = r["cells"]
        assert cells[:3] == [r["data-context"], ch["prompt"], str(ch["n"])]
        if ch.get("adaptive"):
            assert r["data-adaptive"] == cells[3] == ch["adaptive"]
            assert cells[4] == f"{ch['expected_samples']:.4f}"
            assert float(r["data-expected-samples"]) == ch["expected_samples"]
        else:
            assert r["data-adaptive"] == "" and cells[3] == "fixed" and cells[4] == str(ch["n"])
        assert cells[5] == f"{ch['q']:.4f}"
        ru = ch["runner_up"]
        want = f"N≤{ru['n']} {ru['adaptive']}" if ru.get("adaptive") else f"N={ru['n']}"
        assert cells[8] == f"{ru['prompt']} @ {want} ({ru['q']:.4f})"
        oracle = result["evaluation"]["contexts"][r["data-context"]]["oracle"]
        on = (
            f"N≤{oracle['n']} {oracle['adaptive']}"
            if oracle.get("adaptive")
            else f"N={oracle['n']}"
        )
        assert cells[10] == f"{oracle['prompt']} @ {on}"


def test_page_shows_the_rule_the_expected_samples_and_the_pareto_figure(adaptive: Done) -> None:
    parser = _PolicyTable()
    html = adaptive.page.read_text()
    parser.feed(html)
    _assert_adaptive_policy_rows(parser.rows, adaptive.result)
    figures = [i.get("data-figure") for i in parser.images]
    assert figures == [FIGURES[0], "pareto", *FIGURES[1:]]
    assert (adaptive.page.parent / "pareto.png").stat().st_size > 0
    assert 'href="#pareto"' in html


def test_pareto_figure_draws_lines_points_and_the_chosen_star(adaptive: Done) -> None:
    from iapo.report import _figures

    rep = Report(adaptive.result)
    fig = _figures.render(rep, "pareto")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == len(rep.representative_contexts())
    first = rep.context_names[0]
    for ax, ctx in zip(axes, rep.representative_contexts(), strict=True):
        lines = ax.get_lines()
        curves = [ln for ln in lines if len(ln.get_xdata()) > 1]
        assert len(curves) == len(rep.curves(ctx))  # one line per prompt
        points = [ln for ln in lines if len(ln.get_xdata()) == 1 and ln.get_marker() != "*"]
        want = {(r["expected_samples"], r["q"]) for r in rep.adaptive_points(ctx)}
        assert {(float(p.get_xdata()[0]), float(p.get_ydata()[0])) for p in points} == want
        (star,) = [ln for ln in lines if ln.get_marker() == "*"]
        ch = adaptive.result["policy"][ctx]
        x = ch["expected_samples"] if ctx == first else ch["n"]
        assert (float(star.get_xdata()[0]), float(star.get_ydata()[0])) == (x, ch["q"])
        assert ax.get_xlabel() == "expected samples per query" and ax.get_ylabel()
        assert ("decided/b2" in ax.get_title(loc="left")) == (ctx == first)
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert {f"adaptive: {r}" for r in RULES} <= set(labels)
    assert "chosen arm" in labels and set(rep.prompts) <= set(labels)


def test_pareto_figure_is_legible(adaptive: Done, monkeypatch: pytest.MonkeyPatch) -> None:
    """As test_report's figures: every text drawn at least the floor and inside the figure, the
    legend outside the panels."""
    from matplotlib.backends.backend_agg import RendererAgg

    from iapo.report import _figures

    fig = _figures.render(Report(adaptive.result), "pareto")
    drawn: list[tuple[str, float, Any]] = []
    draw_text: Any = RendererAgg.draw_text

    def record(self: Any, gc: Any, x: Any, y: Any, s: str, prop: Any, *a: Any, **k: Any) -> Any:
        drawn.append((s, prop.get_size_in_points(), k.get("mtext", a[2] if len(a) > 2 else None)))
        return draw_text(self, gc, x, y, s, prop, *a, **k)

    monkeypatch.setattr(RendererAgg, "draw_text", record)
    fig.canvas.draw()
    monkeypatch.undo()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    assert len(drawn) > 10
    for text, size, artist in drawn:
        assert size >= _figures.MIN_FONT_PT, (text, size)
        if artist is not None:
            box = artist.get_window_extent(renderer)
            assert box.x0 >= fig.bbox.x0 - 2 and box.x1 <= fig.bbox.x1 + 2, text
            assert box.y0 >= fig.bbox.y0 - 2 and box.y1 <= fig.bbox.y1 + 2, text
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert fig.legends and all(ax.get_legend() is None for ax in axes)
    for leg in fig.legends:
        for ax in axes:
            assert not leg.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


def test_a_policy_map_cell_of_an_adaptive_arm_says_up_to_n(adaptive: Done) -> None:
    from iapo.report import _figures

    fig = _figures.render(Report(adaptive.result), "policy_map")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert sum("N≤10" in t for t in texts) == 1
    assert sum("N=" in t for t in texts) == len(adaptive.result["policy"]) - 1


@pytest.fixture
def chrome(tmp_path: Path) -> Iterator[DevTools]:
    binary = _chromium()
    if binary is None and os.environ.get("CI"):
        pytest.fail("CI installs chromium (.ci/run): it must be there")
    if binary is None:
        pytest.skip("headless Chromium not found (Debian: apt-get install chromium)")
    tools = DevTools(binary, Path(tempfile.mkdtemp(dir=tmp_path)))
    try:
        yield tools
    finally:
        tools.close()


_FACTS = """
(async () => {
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  return {
    images: imgs.map(i => ({figure: i.dataset.figure, w: i.naturalWidth,
                           shown: i.getBoundingClientRect().width})),
    rows: [...document.querySelectorAll('#policy-table tbody tr')].map(tr => ({
      'data-context': tr.dataset.context, 'data-adaptive': tr.dataset.adaptive,
      'data-expected-samples': tr.dataset.expectedSamples,
      cells: [...tr.cells].map(td => td.textContent.trim())})),
    overflow: document.documentElement.scrollWidth > window.innerWidth + 1,
  };
})()
"""


@pytest.mark.slow
def test_adaptive_page_in_headless_chromium(adaptive: Done, chrome: DevTools) -> None:
    chrome.open(adaptive.page.resolve().as_uri())
    facts = chrome.evaluate(_FACTS)
    assert chrome.problems() == []
    assert [i["figure"] for i in facts["images"]] == [FIGURES[0], "pareto", *FIGURES[1:]]
    for img in facts["images"]:
        assert img["w"] > 0 and img["shown"] > 300, img
    _assert_adaptive_policy_rows(facts["rows"], adaptive.result)
    assert not facts["overflow"], "the page scrolls sideways at 1280 px"


def test_q_vs_n_stars_an_adaptive_choice_at_its_expected_samples(adaptive: Done) -> None:
    from iapo.report import _figures

    rep = Report(adaptive.result)
    fig = _figures.render(rep, "q_vs_n")
    first = rep.context_names[0]
    ch = adaptive.result["policy"][first]
    ax = next(a for a in fig.axes if a.get_title(loc="left").startswith("accuracy=1, cost=0\n"))
    assert ax.get_title(loc="left").endswith(f"chosen: {ch['prompt']} @ N≤10 decided/b2")
    (star,) = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert (float(star.get_xdata()[0]), float(star.get_ydata()[0])) == (
        ch["expected_samples"],
        ch["q"],
    )
    # the prompt curves are of fixed arms only: N = 1..n_max, one point each
    curves = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 1]
    assert all(list(ln.get_xdata()) == list(range(1, rep.n_max + 1)) for ln in curves)
