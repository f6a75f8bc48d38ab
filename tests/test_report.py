"""The report: CSV tables, legible figures, the HTML page in headless Chromium, and the ``report``,
``runs`` and ``show`` commands."""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import math
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Done

from iapo import RunResult
from iapo.bank import open_bank
from iapo.cli import main
from iapo.errors import InputError
from iapo.report import write_report
from iapo.report._data import Report

pytest.importorskip("matplotlib")
pytest.importorskip("jinja2")
from PIL import Image  # (pillow comes with matplotlib)

REPO = Path(__file__).resolve().parents[1]
FIGURES = ("q_vs_n", "policy_map", "psst_trace", "rankings", "budget")
CSVS = ("policy", "estimates", "trace", "alive", "rankings", "budget")


@pytest.fixture(scope="module")
def mcqa(finished_mcqa: Done) -> Done:
    return finished_mcqa


@pytest.fixture(scope="module")
def grid(finished_grid: Done) -> Done:
    return finished_grid


@pytest.fixture
def one_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Draw only the (cheap) policy map: these tests are about plumbing, not figures."""
    from iapo.report import _figures

    monkeypatch.setattr(_figures, "FIGURES", {"policy_map": _figures.FIGURES["policy_map"]})


def _crowded_result() -> dict[str, Any]:
    """A made-up result with 32 prompts, N ≤ 16 and 4 contexts (nothing is run)."""
    rng = np.random.default_rng(3)
    prompts = [f"prompt_{i:02d}" for i in range(32)]
    n_max = 16
    ns = np.arange(1, n_max + 1)
    contexts: list[dict[str, Any]] = []
    policy: dict[str, Any] = {}
    estimates: dict[str, Any] = {}
    for c, cw in enumerate([0.0, 0.01, 0.02, 0.05]):
        name = f"ctx{c},cost={cw}"
        contexts.append({"name": name, "weights": {"helpful": 1.0}, "cost_weight": cw})
        rows, arms = [], []
        for p in prompts:
            a, b = rng.uniform(0.3, 0.7), rng.uniform(0.0, 0.08)
            qs = a + b * np.log(ns) - cw * rng.uniform(0.5, 2.0) * ns
            for n, q in zip(ns, qs, strict=True):
                rows.append(
                    {"prompt": p, "n": int(n), "q": float(q), "sem": 0.01, "observations": 40}
                )
                arms.append((float(q), p, int(n)))
        arms.sort(reverse=True)
        (q1, p1, n1), (q2, p2, n2) = arms[0], arms[1]
        policy[name] = {
            "prompt": p1,
            "n": n1,
            "q": q1,
            "ci95": [q1 - 0.02, q1 + 0.02],
            "observations": 40,
            "runner_up": {"prompt": p2, "n": n2, "q": q2, "ci95": [q2 - 0.02, q2 + 0.02]},
        }
        estimates[name] = rows
    trace: list[dict[str, Any]] = [
        {
            "round": r + 1,
            "pulls": {p: 10 for p in prompts[: 32 >> r]},
            "n": {p: n_max for p in prompts[: 32 >> r]},
            "completions": 10 * n_max * (32 >> r),
            "alive": {c["name"]: 512 >> (r + 1) for c in contexts},
        }
        for r in range(5)
    ]
    by_prompt = {
        p: {
            "completions": sum(t["pulls"].get(p, 0) * n_max for t in trace),
            "drawn": sum(t["pulls"].get(p, 0) * n_max for t in trace),
            "cost": 1.5,
            "pulls": sum(t["pulls"].get(p, 0) for t in trace),
        }
        for p in prompts
    }
    total = sum(b["completions"] for b in by_prompt.values())
    return {
        "run_id": "crowded",
        "name": "crowded",
        "policy": policy,
        "estimates": estimates,
        "account": {"budget": total, "completions": total, "drawn": total, "by_prompt": by_prompt},
        "trace": trace,
        "contexts": contexts,
        "prompts": prompts,
        "n_max": n_max,
    }


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Done:
    root = tmp_path_factory.mktemp("crowded")
    return Done(root, root, "", _crowded_result(), root / "report.html")


# -- files ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["mcqa", "grid"])
def test_report_writes_figures_csvs_and_one_self_contained_page(
    which: str, request: pytest.FixtureRequest
) -> None:
    done: Done = request.getfixturevalue(which)
    out = done.page.parent
    assert done.page.name == "report.html"
    html = done.page.read_text()
    for name in FIGURES:
        png = out / f"{name}.png"
        img = Image.open(png)
        img.load()
        w, h = img.size
        assert w >= 900 and h >= 300, (name, img.size)
        grey = np.asarray(img.convert("L"), dtype=float)
        assert grey.std() > 10, f"{name}.png is (nearly) blank"
        assert (grey < 100).mean() > 0.002, f"{name}.png has almost no dark ink"
        # embedded byte for byte: the page needs no other file
        assert f'src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}"' in html
    for name in CSVS:
        assert (out / f"{name}.csv").stat().st_size > 0
    assert "<script" not in html  # nothing to go wrong in a browser
    assert 'src="http' not in html and 'href="http' not in html


def _csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        r = csv.DictReader(fh)
        return list(r.fieldnames or []), list(r)


def _num(s: str) -> float | None:
    return None if s == "" else float(s)


def test_csv_tables_equal_the_result(mcqa: Done) -> None:
    out, res = mcqa.page.parent, mcqa.result
    cols, rows = _csv(out / "policy.csv")
    assert cols[:7] == ["context", "prompt", "n", "q", "ci_low", "ci_high", "observations"]
    assert {"q_test", "oracle_prompt", "oracle_n"} <= set(cols)
    assert [r["context"] for r in rows] == list(res["policy"])
    for r in rows:
        ch = res["policy"][r["context"]]
        assert (r["prompt"], int(r["n"]), _num(r["q"])) == (ch["prompt"], ch["n"], ch["q"])
        assert [_num(r["ci_low"]), _num(r["ci_high"])] == ch["ci95"]
        assert int(r["observations"]) == ch["observations"]
        assert r["runner_up_prompt"] == ch["runner_up"]["prompt"]
        ev = res["evaluation"]["contexts"][r["context"]]
        assert _num(r["q_test"]) == ev["q_test"]
        assert r["oracle_prompt"] == ev["oracle"]["prompt"]

    cols, rows = _csv(out / "estimates.csv")
    assert cols == [
        *("context", "prompt", "n", "q", "sem", "ci_low", "ci_high", "observations"),
        *("chosen", "q_true"),
    ]
    assert len(rows) == sum(len(v) for v in res["estimates"].values())
    for r in rows:
        q, sem = float(r["q"]), float(r["sem"])
        assert math.isclose(float(r["ci_low"]), q - 1.96 * sem)
        assert math.isclose(float(r["ci_high"]), q + 1.96 * sem)
        truth = res["evaluation"]["ground_truth"]["q"][r["context"]][r["prompt"]]
        assert float(r["q_true"]) == truth[int(r["n"]) - 1]
    chosen = [r for r in rows if r["chosen"] == "True"]
    assert {(r["context"], r["prompt"], int(r["n"])) for r in chosen} == {
        (c, ch["prompt"], ch["n"]) for c, ch in res["policy"].items()
    }

    cols, rows = _csv(out / "trace.csv")
    assert cols == ["round", "prompt", "pulls", "n", "completions"]
    for t in res["trace"]:
        mine = [r for r in rows if int(r["round"]) == t["round"]]
        assert {r["prompt"]: int(r["pulls"]) for r in mine} == t["pulls"]
        assert sum(int(r["completions"]) for r in mine) == t["completions"]

    cols, rows = _csv(out / "alive.csv")
    n_ctx, arms = len(res["contexts"]), len(res["prompts"]) * res["n_max"]
    assert len(rows) == n_ctx * (len(res["trace"]) + 1)
    assert all(int(r["alive"]) == arms for r in rows if r["round"] == "0")

    cols, rows = _csv(out / "budget.csv")
    assert cols[:6] == ["prompt", "pulls", "completions", "drawn", "cache_hits", "cost"]
    by = res["account"]["by_prompt"]
    assert {r["prompt"] for r in rows} == set(by)
    for r in rows:
        assert int(r["completions"]) == by[r["prompt"]]["completions"]
        assert int(r["pulls"]) == by[r["prompt"]]["pulls"]
        assert math.isclose(float(r["cost"]), by[r["prompt"]]["cost"])
    assert sum(int(r["completions"]) for r in rows) == res["account"]["completions"]

    cols, rows = _csv(out / "rankings.csv")
    assert len(rows) == n_ctx * len(res["prompts"])
    for ctx in res["policy"]:
        mine = [r for r in rows if r["context"] == ctx]
        assert sorted(int(r["rank_n1"]) for r in mine) == list(range(1, len(mine) + 1))
        best = max(mine, key=lambda r: float(r["q_chosen_n"]))
        assert best["rank_chosen_n"] == "1"


# -- the page, parsed -----------------------------------------------------------------------------
class _PolicyTable(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.images: list[dict[str, str | None]] = []
        self._in_table = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._in_table = a.get("id") == "policy-table"
        elif tag == "img":
            self.images.append(a)
        elif self._in_table and tag == "tr" and "data-context" in a:
            self.rows.append({**a, "cells": []})
        elif self._in_table and tag == "td" and self.rows:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1]["cells"].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _assert_policy_rows(rows: list[dict[str, Any]], result: dict[str, Any]) -> None:
    """``rows``: the page's policy rows, each its data attributes and its cells' text."""
    policy = result["policy"]
    assert [r["data-context"] for r in rows] == list(policy)
    for r in rows:
        ch = policy[r["data-context"]]
        assert r["data-prompt"] == ch["prompt"]
        assert int(r["data-n"]) == ch["n"]
        assert float(r["data-q"]) == ch["q"]  # the exact value
        cells = r["cells"]
        assert cells[:4] == [r["data-context"], ch["prompt"], str(ch["n"]), f"{ch['q']:.4f}"]
        lo, hi = ch["ci95"]
        assert cells[4] == f"[{lo:.4f}, {hi:.4f}]"
        assert cells[5] == str(ch["observations"])
        ru = ch["runner_up"]
        assert cells[6] == f"{ru['prompt']} @ N={ru['n']} ({ru['q']:.4f})"
        if result.get("evaluation"):
            ev = result["evaluation"]["contexts"][r["data-context"]]
            assert cells[7] == f"{ev['q_test']:.4f}"
            assert cells[8] == f"{ev['oracle']['prompt']} @ N={ev['oracle']['n']}"


@pytest.mark.parametrize("which", ["mcqa", "grid"])
def test_page_policy_table_equals_result_json(which: str, request: pytest.FixtureRequest) -> None:
    done: Done = request.getfixturevalue(which)
    parser = _PolicyTable()
    parser.feed(done.page.read_text())
    _assert_policy_rows(parser.rows, done.result)
    assert [i.get("data-figure") for i in parser.images] == list(FIGURES)
    assert all((i.get("alt") or "").strip() for i in parser.images)


@pytest.mark.usefixtures("one_figure")
def test_write_report_takes_a_run_result_and_rejects_other_json(mcqa: Done, tmp_path: Path) -> None:
    page = write_report(RunResult.from_dict(mcqa.result), tmp_path / "again")
    assert page == tmp_path / "again" / "report.html"
    assert (tmp_path / "again" / "policy_map.png").exists()
    with pytest.raises(InputError, match="missing policy"):
        write_report({"name": "x"}, tmp_path / "bad")


# -- in a real browser ----------------------------------------------------------------------------
def _chromium() -> str | None:
    env = os.environ.get("IAPO_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class DevTools:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
    commands on fd 3, replies on fd 4, NUL-separated JSON), so no websocket client is needed."""

    def __init__(self, binary: str, profile: Path) -> None:
        import fcntl

        cmd_r, self._w = os.pipe()
        self._r, res_w = os.pipe()

        def child_fds() -> None:
            # dup above 10 first so 3 and 4 can't clobber each other; dup2 clears CLOEXEC
            a = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(res_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            close_fds=False,
            preexec_fn=child_fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(cmd_r)
        os.close(res_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def _read(self, timeout: float) -> list[dict[str, Any]]:
        ready, _, _ = select.select([self._r], [], [], timeout)
        if not ready:
            return []
        chunk = os.read(self._r, 1 << 20)
        if not chunk:
            raise RuntimeError("chromium closed the DevTools pipe")
        self._buf += chunk
        out = []
        while b"\0" in self._buf:
            msg, self._buf = self._buf.split(b"\0", 1)
            out.append(json.loads(msg))
        return out

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        for m in self.events:
            if pred(m):
                self.events.remove(m)
                return m
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for m in self._read(0.25):
                if pred(m):
                    return m
                self.events.append(m)
        raise TimeoutError("chromium did not answer in time")

    def send(self, method: str, params: dict[str, Any] | None = None, *, page: bool = True) -> Any:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if page and self.session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        mid = self._id
        reply = self.wait(lambda m: m.get("id") == mid)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, page=False)["targetId"]
        self.session = self.send(
            "Target.attachToTarget", {"targetId": target, "flatten": True}, page=False
        )["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.send(domain)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )
        self.send("Page.navigate", {"url": url})
        self.wait(lambda m: m.get("method") == "Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        res = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in res:
            raise RuntimeError(res["exceptionDetails"])
        return res["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, failed loads: anything a reader's
        browser console would show in red or yellow."""
        for m in self._read(0.3):
            self.events.append(m)
        out = []
        for m in self.events:
            method, p = m.get("method"), m.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in (
                "error",
                "warning",
                "assert",
            ):
                out.append(f"console.{p['type']}: {p.get('args')}")
            elif method == "Runtime.exceptionThrown":
                out.append(f"exception: {p.get('exceptionDetails')}")
            elif method == "Log.entryAdded" and p["entry"].get("level") in ("error", "warning"):
                e = p["entry"]
                out.append(f"{e.get('source')}: {e.get('text')} {e.get('url', '')}")
        return out

    def screenshot(self, path: Path) -> None:
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": 1280, "height": size["height"], "scale": 1},
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close", page=False)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    binary = _chromium()
    if binary is None and os.environ.get("CI"):
        pytest.fail("CI installs chromium (.ci/run): it must be there")
    if binary is None:
        pytest.skip(
            "headless Chromium not found (Debian: apt-get install chromium; or set IAPO_CHROMIUM)"
        )
    tools = DevTools(binary, Path(tempfile.mkdtemp(dir=tmp_path)))
    try:
        yield tools
    finally:
        tools.close()


_PAGE_FACTS = """
(async () => {
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  return {
    images: imgs.map(i => ({figure: i.dataset.figure, w: i.naturalWidth, h: i.naturalHeight,
                           shown: i.getBoundingClientRect().width})),
    rows: [...document.querySelectorAll('#policy-table tbody tr')].map(tr => ({
      'data-context': tr.dataset.context, 'data-prompt': tr.dataset.prompt,
      'data-n': tr.dataset.n, 'data-q': tr.dataset.q,
      cells: [...tr.cells].map(td => td.textContent.trim())})),
    title: document.title,
    overflow: document.documentElement.scrollWidth > window.innerWidth + 1,
  };
})()
"""


@pytest.mark.slow
@pytest.mark.parametrize("which", ["mcqa", "grid"])
def test_page_in_headless_chromium(
    which: str, request: pytest.FixtureRequest, browser: DevTools
) -> None:
    done: Done = request.getfixturevalue(which)
    browser.open(done.page.resolve().as_uri())
    facts = browser.evaluate(_PAGE_FACTS)
    assert browser.problems() == []
    assert [i["figure"] for i in facts["images"]] == list(FIGURES)
    for img in facts["images"]:
        assert img["w"] > 0 and img["h"] > 0, f"{img['figure']} did not decode"
        assert img["shown"] > 300, f"{img['figure']} is drawn too small"
    _assert_policy_rows(facts["rows"], done.result)
    assert facts["title"] == f"iapo report: {done.result['name']}"
    assert not facts["overflow"], "the page scrolls sideways at 1280 px"
    shot = done.page.parent / "screenshot.png"
    browser.screenshot(shot)
    img = Image.open(shot)
    assert img.size[0] == 1280 and img.size[1] > 2000
    keep = os.environ.get("IAPO_REPORT_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / f"{which}-screenshot.png")


# -- figures: legible at a glance -----------------------------------------------------------------
@pytest.mark.parametrize("which", ["mcqa", "grid", "crowded"])
@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_legible(
    which: str, name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.backends.backend_agg import RendererAgg

    from iapo.report import _figures

    done: Done = request.getfixturevalue(which)
    fig = _figures.render(Report(done.result), name)
    drawn: list[tuple[str, float, Any]] = []  # every text actually drawn: string, size, artist
    draw_text: Any = RendererAgg.draw_text

    def record(self: Any, gc: Any, x: Any, y: Any, s: str, prop: Any, *a: Any, **k: Any) -> Any:
        drawn.append((s, prop.get_size_in_points(), k.get("mtext", a[2] if len(a) > 2 else None)))
        return draw_text(self, gc, x, y, s, prop, *a, **k)

    monkeypatch.setattr(RendererAgg, "draw_text", record)
    fig.canvas.draw()
    monkeypatch.undo()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    page = fig.bbox
    assert len(drawn) > 10
    for s, size, artist in drawn:
        assert size >= _figures.MIN_FONT_PT, (s, size)
        if artist is None:
            continue
        box = artist.get_window_extent(renderer)
        assert box.x0 >= page.x0 - 2 and box.x1 <= page.x1 + 2, f"cut off: {s!r}"
        assert box.y0 >= page.y0 - 2 and box.y1 <= page.y1 + 2, f"cut off: {s!r}"
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert axes
    for ax in axes:
        assert ax.get_xlabel() or name == "rankings", f"{name}: an axis without an x label"
        shared = ax.get_shared_y_axes().get_siblings(ax)
        assert any(a.get_ylabel() for a in shared), f"{name}: an axis without a y label"
        assert ax.get_legend() is None, "legends go outside the plots"
    assert fig.legends, f"{name} has no legend"
    for leg in fig.legends:
        lb = leg.get_window_extent(renderer)
        for ax in axes:
            assert not lb.overlaps(ax.get_window_extent(renderer)), f"{name}: legend hides data"
    w, h = fig.get_size_inches() * _figures.DPI
    assert 800 <= w <= 2400 and 300 <= h <= 3000, (w, h)


def test_policy_map_shows_every_context_with_its_n(grid: Done) -> None:
    from iapo.report import _figures

    fig = _figures.render(Report(grid.result), "policy_map")
    (ax,) = fig.axes
    cells = [t.get_text() for t in ax.texts]
    policy = grid.result["policy"]
    assert len(cells) == len(policy) == 27
    assert sorted(cells) == sorted(f"{ch['prompt']}\nN={ch['n']}" for ch in policy.values())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.01", "0.05"]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert rows[0] == "helpful=0.1, harmless=0.9" and len(rows) == 9
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert sorted(legend) == sorted({ch["prompt"] for ch in policy.values()})


def test_representative_contexts_cover_every_chosen_prompt(grid: Done, mcqa: Done) -> None:
    rep = Report(grid.result)
    picked = rep.representative_contexts()
    assert len(picked) == 6 and len(set(picked)) == 6
    chosen = {ch["prompt"] for ch in grid.result["policy"].values()}
    assert {grid.result["policy"][c]["prompt"] for c in picked} == chosen
    assert Report(mcqa.result).representative_contexts() == list(mcqa.result["policy"])


def _toy_result() -> dict[str, Any]:
    est = [
        {"prompt": "a", "n": 1, "q": 0.7, "sem": 0.01, "observations": 10},
        {"prompt": "b", "n": 1, "q": 0.6, "sem": 0.01, "observations": 10},
        {"prompt": "a", "n": 3, "q": 0.72, "sem": 0.01, "observations": 10},
        {"prompt": "b", "n": 3, "q": 0.8, "sem": 0.01, "observations": 10},
        {"prompt": "c", "n": 1, "q": 0.1, "sem": 0.01, "observations": 10},
    ]
    ch = {"prompt": "b", "n": 3, "q": 0.8, "ci95": [0.78, 0.82], "observations": 10}
    return {
        "policy": {"x": {**ch, "runner_up": None}},
        "estimates": {"x": est},
        "account": {"budget": 10, "completions": 0, "by_prompt": {}},
        "trace": [],
        "contexts": [{"name": "x", "weights": {"accuracy": 1.0}, "cost_weight": 0.0}],
        "prompts": ["a", "b", "c"],
        "n_max": 3,
    }


def test_rankings_flag_the_n1_leader_that_was_dropped() -> None:
    (r,) = Report(_toy_result()).rankings()
    assert r["leader_n1"] == "a" and r["deceived"]
    assert [p for p, _ in r["n1"]] == ["a", "b", "c"]
    assert [p for p, _ in r["chosen_n_ranking"]] == ["b", "a"]
    assert r["missing"] == ["c"]  # never estimated at N=3


def test_toy_result_renders_without_evaluation(tmp_path: Path) -> None:
    page = write_report(_toy_result(), tmp_path)
    parser = _PolicyTable()
    parser.feed(page.read_text())
    assert [r["data-prompt"] for r in parser.rows] == ["b"]
    assert len(parser.images) == len(FIGURES)


@pytest.mark.parametrize("which", ["mcqa", "grid"])
def test_q_vs_n_stars_the_chosen_arm_on_its_prompts_curve(
    which: str, request: pytest.FixtureRequest
) -> None:
    """What the README figure's caption promises: per context panel, the estimated Q-vs-N curve of
    every prompt and one star, in the chosen prompt's colour, at the chosen arm."""
    from matplotlib.colors import to_hex

    from iapo.report import _figures
    from iapo.report._style import palette

    done: Done = request.getfixturevalue(which)
    rep = Report(done.result)
    pal = palette(rep.prompts)
    fig = _figures.render(rep, "q_vs_n")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == len(rep.representative_contexts())
    for ax, ctx in zip(panels, rep.representative_contexts(), strict=True):
        ch = done.result["policy"][ctx]
        assert ax.get_title(loc="left").endswith(f"chosen: {ch['prompt']} @ N={ch['n']}")
        (star,) = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
        assert list(star.get_xdata()) == [ch["n"]] and list(star.get_ydata()) == [ch["q"]]
        assert to_hex(star.get_markerfacecolor()) == to_hex(pal[ch["prompt"]]["color"])
        chosen_curve = [
            ln
            for ln in ax.get_lines()
            if ln.get_marker() == pal[ch["prompt"]]["marker"]
            and to_hex(ln.get_color()) == to_hex(pal[ch["prompt"]]["color"])
        ]
        estimates = {
            r["n"]: r["q"] for r in done.result["estimates"][ctx] if r["prompt"] == ch["prompt"]
        }
        assert any(
            dict(zip(ln.get_xdata(), ln.get_ydata(), strict=True)) == estimates
            for ln in chosen_curve
        )


# -- light import ---------------------------------------------------------------------------------
def test_importing_iapo_and_the_report_package_loads_no_plotting(tmp_path: Path) -> None:
    code = (
        "import sys, iapo, iapo.report, iapo.progress, iapo.cli\n"
        "iapo.cli.build_parser()\n"
        "heavy = [m for m in ('matplotlib', 'jinja2', 'rich.progress') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "MPLCONFIGDIR": str(tmp_path / "mpl")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert list(tmp_path.iterdir()) == []


# -- commands -------------------------------------------------------------------------------------
@pytest.mark.usefixtures("one_figure")
def test_report_command_writes_the_page(
    mcqa: Done, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rep"
    assert main(["report", str(mcqa.run_dir), "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["html"] == str(out / "report.html") and info["run_id"] == mcqa.result["run_id"]
    assert set(info["files"]) == {"policy_map.png"} | {f"{n}.csv" for n in CSVS}
    assert (out / "report.html").stat().st_size > 20_000


@pytest.mark.usefixtures("one_figure")
def test_report_command_defaults_to_the_run_folder(
    mcqa: Done, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(mcqa.root)
    assert main(["report", "runs/mcqa/result.json"]) == 0
    assert capsys.readouterr().out.strip() == "wrote runs/mcqa/report/report.html"


def test_report_command_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report", "nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("iapo: error: no run 'nowhere'") and "\n" not in err
    (tmp_path / "empty").mkdir()
    assert main(["report", "empty"]) == 2
    assert "no result.json" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["report", "bad.json"]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def _interrupted_bank(path: Path) -> str:
    url = f"sqlite:///{path}"
    with open_bank(url) as bank:
        bank.start_run("feedfacecafe", "halfway", 500, {"name": "halfway"})
        bank.update_run("feedfacecafe", status="interrupted", spent=120)
    return url


def test_runs_lists_status_budget_and_best_arms(
    mcqa: Done, grid: Done, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "--storage", mcqa.storage]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "name", "status", "updated", "budget", "used", "best", "arms"]
    (row,) = [ln for ln in lines if ln.startswith(mcqa.result["run_id"])]
    acc = mcqa.result["account"]
    assert " mcqa " in row and " done " in row
    assert f"{acc['completions']:,}/{acc['budget']:,}" in row
    for ch in mcqa.result["policy"].values():
        assert f"{ch['prompt']}@{ch['n']}" in row

    # no --storage: every runs/*/bank.sqlite under the current folder
    monkeypatch.chdir(grid.root)
    assert main(["runs", "--json"]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["id"] == grid.result["run_id"] and rec["status"] == "done"
    assert rec["spent"] == grid.result["account"]["completions"]
    assert rec["best_arms"] == {
        c: {"prompt": ch["prompt"], "n": ch["n"]} for c, ch in grid.result["policy"].items()
    }


def test_runs_shows_unfinished_runs_and_never_creates_a_bank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _interrupted_bank(tmp_path / "bank.sqlite")
    assert main(["runs", "--storage", url]) == 0
    row = capsys.readouterr().out.splitlines()[2]
    assert row.split()[:3] == ["feedfacecafe", "halfway", "interrupted"]
    assert "120/500 (24%)" in row and row.rstrip().endswith("—")
    missing = tmp_path / "none" / "bank.sqlite"
    assert main(["runs", "--storage", f"sqlite:///{missing}"]) == 2
    assert "no sample bank at" in capsys.readouterr().err
    assert not missing.parent.exists()
    monkeypatch.chdir(tmp_path)
    assert main(["runs"]) == 0
    assert capsys.readouterr().out.startswith("no runs in runs/*/bank.sqlite")


def _show_rows(text: str) -> dict[str, str]:
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("context "))
    out = {}
    for ln in lines[start + 2 :]:
        if not ln.strip():
            break
        out[ln.split()[0]] = ln
    return out


@pytest.mark.parametrize("how", ["id", "prefix", "name", "folder"])
def test_show_prints_the_policy_table(
    how: str, mcqa: Done, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(mcqa.root)
    rid = mcqa.result["run_id"]
    ref = {"id": rid, "prefix": rid[:6], "name": "mcqa", "folder": "runs/mcqa"}[how]
    assert main(["show", ref]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"run {rid} (mcqa): done")
    rows = _show_rows(text)
    assert list(rows) == list(mcqa.result["policy"])
    for ctx, ch in mcqa.result["policy"].items():
        cells = rows[ctx].split("  ")
        assert f"{ch['prompt']} @ N={ch['n']}" in cells
        assert f"{ch['q']:.4f}" in cells
        lo, hi = ch["ci95"]
        assert f"[{lo:.4f}, {hi:.4f}]" in rows[ctx]
    ev = mcqa.result["evaluation"]
    assert f"held-out ACR {ev['acr_test']:.4f} (oracle {ev['oracle_acr_test']:.4f})" in text


def test_show_json_and_errors(
    mcqa: Done, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", mcqa.result["run_id"], "--storage", mcqa.storage, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy"] == mcqa.result["policy"] and out["status"] == "done"
    assert out["spent"] == mcqa.result["account"]["completions"]
    assert main(["show", "zzz", "--storage", mcqa.storage]) == 2
    err = capsys.readouterr().err
    assert "no run 'zzz'" in err and err.count("\n") == 1
    url = _interrupted_bank(tmp_path / "bank.sqlite")
    assert main(["show", "halfway", "--storage", url]) == 2
    assert "is interrupted and has no result yet" in capsys.readouterr().err
