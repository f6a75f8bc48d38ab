"""Pool file format (load/dump/validation), importers of the real pools, and the bundled pools."""

from __future__ import annotations

import importlib.util
import json
import math
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iapo.errors import InputError, PoolError
from iapo.pools import (
    POOL_SCHEMA,
    Cell,
    Pool,
    dump_pool,
    import_renze,
    import_tot_game24,
    import_tot_text,
    load_pool,
)
from iapo.types import Sample

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "src" / "iapo" / "data"
_SHARED_CANDIDATES = (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared"))
SHARED = next((p for p in _SHARED_CANDIDATES if (p / "data" / "pools").is_dir()), None)
POOLS = SHARED / "data" / "pools" if SHARED is not None else Path("/nonexistent")
needs_shared = pytest.mark.skipif(
    SHARED is None,
    reason="real pools not found: expected ../shared/data/pools beside the repository "
    f"(looked in {', '.join(str(p) for p in _SHARED_CANDIDATES)})",
)
TEMPERATURE_POOL = POOLS / "renze-mcqa" / "temperature_pool.jsonl"
CONCISE_POOL = POOLS / "renze-mcqa" / "concise_cot_pool.jsonl"


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def write(tmp_path: Path, lines: list[Any] | str, name: str = "pool.jsonl") -> Path:
    """Write JSON objects (or raw strings) one per line."""
    path = tmp_path / name
    if isinstance(lines, str):
        path.write_text(lines, encoding="utf-8")
    else:
        text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
        path.write_text(text + "\n", encoding="utf-8")
    return path


def load_error(path: Path, **kwargs: Any) -> str:
    """The message of the PoolError that loading ``path`` raises; checks it is one line."""
    with pytest.raises(PoolError) as info:
        load_pool(path, **kwargs)
    message = str(info.value)
    assert isinstance(info.value, InputError)
    assert "\n" not in message, message
    assert path.name in message, message
    return message


def distribution(cell: Cell) -> Counter[Any]:
    """The cell as a distribution: outcome → total weight (order- and split-independent)."""
    out: Counter[Any] = Counter()
    for o, w in zip(cell.outcomes, cell.weights, strict=True):
        key = (
            o.answer,
            tuple(sorted(o.scores.items())),
            o.cost,
            o.text,
            tuple(sorted(o.usage.items())),
        )
        out[key] += float(w)
    return out


def assert_same_pool(a: Pool, b: Pool, *, exact: bool = True) -> None:
    """Same grid, metadata and cells; ``exact``: also the same outcome order and weights."""
    assert a.objectives == b.objectives
    assert a.prompts == b.prompts
    assert a.queries == b.queries
    assert a.cost_unit == b.cost_unit
    assert dict(a.meta) == dict(b.meta)
    assert set(a.cells) == set(b.cells)
    for key, ca in a.cells.items():
        cb = b.cells[key]
        assert (ca.prompt, ca.query, ca.gold) == (cb.prompt, cb.query, cb.gold)
        if exact:
            assert ca.outcomes == cb.outcomes, key
            assert ca.weights.tolist() == cb.weights.tolist(), key
        else:
            assert distribution(ca) == distribution(cb), key


def p_correct(cell: Cell) -> float:
    return float(
        sum(p for o, p in zip(cell.outcomes, cell.probs, strict=True) if o.answer == cell.gold)
    )


def mean_score(cell: Cell, objective: str) -> float:
    return float(np.dot(cell.probs, [o.scores[objective] for o in cell.outcomes]))


def full(
    prompt: str, query: str, samples: list[dict[str, Any]], gold: str | None = None
) -> dict[str, Any]:
    return {"prompt": prompt, "query": query, "gold": gold, "samples": samples}


def compact(prompt: str, query: str, counts: dict[str, int], **extra: Any) -> dict[str, Any]:
    return {"prompt": prompt, "query": query, "answer_counts": counts, **extra}


# ------------------------------------------------------------------------------------------------
# loading both forms
# ------------------------------------------------------------------------------------------------


def test_compact_form_loads(tmp_path: Path) -> None:
    header = {
        "iapo_pool": POOL_SCHEMA,
        "cost_unit": "output_tokens",
        "meta": {"source": "unit test", "license": "CC0"},
    }
    path = write(
        tmp_path,
        [
            header,
            compact("zeta", "q2", {"2": 97, "3": 31}, gold="2", abstain=5, cost=0.0071),
            compact("zeta", "q1", {"7": 1}, gold="7", cost=3),
            compact("alpha", "q1", {"7": 2, "1": 1}, gold="7"),
            compact("alpha", "q2", {}, gold="2", abstain=4, cost=1.5),
        ],
    )
    pool = load_pool(path, require_gold=True)
    assert pool.prompts == ("zeta", "alpha")  # first-appearance order, not sorted
    assert pool.queries == ("q2", "q1")
    assert pool.objectives == ("accuracy",)
    assert pool.cost_unit == "output_tokens"
    assert dict(pool.meta) == {"source": "unit test", "license": "CC0"}
    assert pool.gold("q2") == "2"

    cell = pool.cell("zeta", "q2")
    assert cell.outcomes == (
        Sample("2", {}, 0.0071),
        Sample("3", {}, 0.0071),
        Sample(None, {}, 0.0071),  # abstentions come last
    )
    assert cell.weights.tolist() == [97.0, 31.0, 5.0]
    assert cell.size == 133
    assert cell.mean_cost() == pytest.approx(0.0071)
    assert pool.cell("zeta", "q1").outcomes == (Sample("7", {}, 3.0),)
    assert pool.cell("alpha", "q1").outcomes[0].cost == 0.0  # cost defaults to 0
    only_abstain = pool.cell("alpha", "q2")
    assert only_abstain.outcomes == (Sample(None, {}, 1.5),)
    assert only_abstain.weights.tolist() == [4.0]


def test_full_form_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            full(
                "cot",
                "aqua-155",
                [
                    {
                        "answer": "C",
                        "scores": {"helpful": 0.71, "safe": 1},
                        "cost": 153,
                        "text": "…C",
                    },
                    {"answer": None, "scores": {"helpful": 0.2, "safe": 0.5}},
                    {"scores": {"helpful": 0.5, "safe": 0.0}, "usage": {"output_tokens": 12}},
                ],
                gold="C",
            ),
            "",  # blank lines are ignored
            full("cot", "aqua-7", [{"answer": "A", "scores": {"helpful": 1, "safe": 1}}], gold="B"),
        ],
    )
    pool = load_pool(path)
    assert pool.objectives == ("helpful", "safe")  # sorted union of the score names
    assert pool.cost_unit == "unit"  # no header
    assert dict(pool.meta) == {  # no header: what was inferred is said
        "description": "no header line: inferred objectives ['helpful', 'safe'], cost unit "
        "'unit', full form"
    }
    cell = pool.cell("cot", "aqua-155")
    assert cell.gold == "C"
    assert cell.outcomes == (
        Sample("C", {"helpful": 0.71, "safe": 1.0}, 153.0, "…C"),
        Sample(None, {"helpful": 0.2, "safe": 0.5}, 0.0),
        Sample(None, {"helpful": 0.5, "safe": 0.0}, 0.0, None, {"output_tokens": 12}),
    )
    assert cell.weights.tolist() == [1.0, 1.0, 1.0]
    assert isinstance(cell.outcomes[0].cost, float)
    assert isinstance(cell.outcomes[0].scores["safe"], float)


def test_mixed_forms_gold_and_objectives(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            compact("p", "q", {"A": 3}, cost=2),
            full("p", "r", [{"answer": "B", "cost": 1}]),
        ],
    )
    pool = load_pool(path, objectives=["accuracy"])  # accuracy comes from answers: no scores needed
    assert pool.objectives == ("accuracy",)
    assert pool.gold("q") is None and pool.gold("r") is None

    header = {"iapo_pool": 1, "objectives": ["b", "a"]}
    path = write(tmp_path, [header, full("p", "q", [{"scores": {"a": 1, "b": 2, "c": 3}}])])
    assert load_pool(path).objectives == ("b", "a")  # the header's objectives, in its order


# ------------------------------------------------------------------------------------------------
# dump and round trip
# ------------------------------------------------------------------------------------------------


def test_round_trip_file_pool_file(tmp_path: Path) -> None:
    header = {
        "iapo_pool": 1,
        "objectives": ["helpful"],
        "cost_unit": "usd",
        "meta": {"source": "x", "nested": {"a": [1, 2.5, None]}},
    }
    src = write(
        tmp_path,
        [
            header,
            full(
                "b",
                "q1",
                [{"answer": "x", "scores": {"helpful": 0.25}, "cost": 0.1, "text": "é\u2028ü"}],
            ),
            full(
                "b",
                "q2",
                [{"scores": {"helpful": 1e-300}, "usage": {"in": 3}}, {"scores": {"helpful": -2}}],
            ),
            full("a", "q1", [{"answer": None, "scores": {"helpful": 0.3}, "cost": 7}]),
            full("a", "q2", [{"answer": "y", "scores": {"helpful": 0.3}, "cost": 7}] * 3),
        ],
        name="src.jsonl",
    )
    pool = load_pool(src)
    dump_pool(pool, tmp_path / "out.jsonl")
    again = load_pool(tmp_path / "out.jsonl")
    assert_same_pool(pool, again)
    dump_pool(again, tmp_path / "out2.jsonl")
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "out2.jsonl").read_bytes()
    # the text with U+2028 (a line separator for str.splitlines) survives
    assert again.cell("b", "q1").outcomes[0].text == "é\u2028ü"


def test_dump_chooses_forms(tmp_path: Path) -> None:
    cells = {
        # compact: answers only, one cost; two outcomes share an answer, abstain not last
        ("p", "q"): Cell(
            "p",
            "q",
            "A",
            (
                Sample("A", {}, 2.0),
                Sample(None, {}, 2.0),
                Sample("B", {}, 2.0),
                Sample("A", {}, 2.0),
            ),
            np.array([3.0, 1.0, 2.0, 4.0]),
        ),
        # full: costs differ; weight 2 → the sample is written twice
        ("p", "r"): Cell(
            "p", "r", None, (Sample("A", {}, 1.0), Sample("B", {}, 2.0)), np.array([2.0, 1.0])
        ),
    }
    pool = Pool(("accuracy",), ("p",), ("q", "r"), cells, "tokens", {"license": "MIT"})
    path = tmp_path / "pool.jsonl"
    dump_pool(pool, path)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0] == {
        "iapo_pool": POOL_SCHEMA,
        "objectives": ["accuracy"],
        "cost_unit": "tokens",
        "meta": {"license": "MIT"},
    }
    assert lines[1] == {
        "prompt": "p",
        "query": "q",
        "gold": "A",
        "answer_counts": {"A": 7, "B": 2},
        "abstain": 1,
        "cost": 2,
    }
    assert lines[2]["samples"] == [
        {"answer": "A", "cost": 1},
        {"answer": "A", "cost": 1},
        {"answer": "B", "cost": 2},
    ]
    assert_same_pool(pool, load_pool(path), exact=False)


def test_dump_rejects_what_a_file_cannot_hold(tmp_path: Path) -> None:
    half = Cell("p", "q", None, (Sample("A", {}, 1.0),), np.array([0.5]))
    with pytest.raises(PoolError, match="integer counts"):
        dump_pool(Pool(("accuracy",), ("p",), ("q",), {("p", "q"): half}), tmp_path / "x.jsonl")
    nan = Cell("p", "q", None, (Sample("A", {"s": math.nan}, 1.0),), np.array([1.0]))
    with pytest.raises(PoolError, match="non-finite score"):
        dump_pool(Pool(("s",), ("p",), ("q",), {("p", "q"): nan}), tmp_path / "x.jsonl")
    ok = Cell("p", "q", None, (Sample("A", {}, 1.0),), np.array([1.0]))
    with pytest.raises(PoolError, match="meta"):
        dump_pool(
            Pool(("accuracy",), ("p",), ("q",), {("p", "q"): ok}, meta={"x": object()}),
            tmp_path / "x.jsonl",
        )


_answers = st.one_of(st.none(), st.text(max_size=3))
_floats = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def pools(draw: st.DrawFn) -> Pool:
    prompts = draw(st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=3, unique=True))
    queries = draw(st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=3, unique=True))
    scored = draw(st.booleans())
    cells = {}
    for q in queries:
        gold = draw(st.one_of(st.none(), st.text(max_size=2)))
        for p in prompts:
            n = draw(st.integers(1, 4))
            if scored or draw(st.booleans()):
                outcomes = tuple(
                    Sample(
                        draw(_answers),
                        {"s": draw(st.floats(-1e3, 1e3))} if scored else {},
                        draw(_floats),
                        draw(st.one_of(st.none(), st.text(max_size=5))),
                    )
                    for _ in range(n)
                )
            else:  # answers only, one cost
                cost = draw(_floats)
                answers = draw(st.lists(st.text(max_size=3), min_size=n, max_size=n, unique=True))
                outcomes = tuple(Sample(a, {}, cost) for a in answers)
            weights = np.array([float(draw(st.integers(1, 5))) for _ in outcomes])
            cells[(p, q)] = Cell(p, q, gold, outcomes, weights)
    objectives = ("s",) if scored else ("accuracy",)
    return Pool(objectives, tuple(prompts), tuple(queries), cells, "u", {"k": [1, "v"]})


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("round_trip") / "pool.jsonl"


@settings(max_examples=40, deadline=None)
@given(pool=pools())
def test_round_trip_property(scratch: Path, pool: Pool) -> None:
    dump_pool(pool, scratch)
    assert_same_pool(pool, load_pool(scratch), exact=False)


def test_a_large_mixed_pool_loads_every_cell(tmp_path: Path) -> None:
    """6,000 lines of both forms: every cell comes back with its own counts, scores and costs.
    (Load speed is measured by the benchmark scripts, not asserted here.)"""
    path = tmp_path / "big.jsonl"
    lines = [json.dumps({"iapo_pool": 1, "cost_unit": "tok"})]
    for p in range(30):
        for q in range(200):
            if p % 2:
                cell = compact(
                    f"p{p}", f"q{q}", {"A": q % 7 + 1, "B": 3}, gold="A", abstain=1, cost=9.5
                )
            else:
                samples = [{"answer": "A", "scores": {"h": p / 100}, "cost": 12 + q}] * 5
                cell = full(f"p{p}", f"q{q}", samples, gold="A")
            lines.append(json.dumps(cell))
    path.write_text("\n".join(lines) + "\n")
    pool = load_pool(path)
    assert len(pool.cells) == 6_000
    assert pool.prompts == tuple(f"p{p}" for p in range(30))
    assert pool.queries == tuple(f"q{q}" for q in range(200))
    for (prompt, query), cell in pool.cells.items():
        p, q = int(prompt[1:]), int(query[1:])
        assert cell.gold == "A"
        if p % 2:
            assert distribution(cell) == {
                ("A", (), 9.5, None, ()): q % 7 + 1,
                ("B", (), 9.5, None, ()): 3,
                (None, (), 9.5, None, ()): 1,
            }
        else:
            assert distribution(cell) == {("A", (("h", p / 100),), 12.0 + q, None, ()): 5}


# ------------------------------------------------------------------------------------------------
# validation: one PoolError line naming file, line, field and fix
# ------------------------------------------------------------------------------------------------

OK = full("p", "q", [{"answer": "A"}])

BAD_LINES: dict[str, tuple[list[Any], list[str]]] = {
    "json syntax": (
        [OK, '{"prompt": "p", "query": "r",'],
        ["pool.jsonl:2:", "invalid JSON", "one JSON object per line"],
    ),
    "not an object": ([OK, "[1, 2]"], ["pool.jsonl:2:", "must be a JSON object"]),
    "negative sample cost": (
        [full("p", "q", [{"cost": 1}, {"cost": 2}, {"cost": 3}, {"cost": -1}])],
        ["pool.jsonl:1: samples[3].cost: must be a number ≥ 0 (got -1)"],
    ),
    "negative compact cost": (
        [compact("p", "q", {"A": 1}, cost=-0.5)],
        ["pool.jsonl:1: cost: must be a number ≥ 0 (got -0.5)"],
    ),
    "infinite cost": (
        ['{"prompt": "p", "query": "q", "samples": [{"cost": Infinity}]}'],
        ["samples[0].cost", "(got Infinity)"],
    ),
    "nan cost": (
        ['{"prompt": "p", "query": "q", "answer_counts": {"A": 1}, "cost": NaN}'],
        [":1: cost:", "(got NaN)"],
    ),
    "string cost": (
        [full("p", "q", [{"cost": "12"}])],
        ['samples[0].cost: must be a number ≥ 0 (got "12")'],
    ),
    "nan score": (
        ['{"prompt": "p", "query": "q", "samples": [{"scores": {"h": NaN}}]}'],
        ['pool.jsonl:1: samples[0].scores["h"]: must be a finite number (got NaN)'],
    ),
    "inf score": (
        [OK, '{"prompt": "p", "query": "r", "samples": [{"scores": {"h": -Infinity}}]}'],
        [':2: samples[0].scores["h"]', "finite", "-Infinity"],
    ),
    "bool score": (
        [full("p", "q", [{"scores": {"h": True}}])],
        ['scores["h"]: must be a finite number (got true)'],
    ),
    "empty samples": ([full("p", "q", [])], [":1: samples: is empty", "non-empty list"]),
    "zero count": (
        [compact("p", "q", {"2": 0})],
        ['answer_counts["2"]: must be an integer count ≥ 1', "(got 0)"],
    ),
    "negative count": ([compact("p", "q", {"2": 3, "x": -2})], ['answer_counts["x"]', "(got -2)"]),
    "fractional count": (
        [compact("p", "q", {"2": 1.5})],
        ['answer_counts["2"]', "integer", "(got 1.5)"],
    ),
    "negative abstain": (
        [compact("p", "q", {"2": 1}, abstain=-1)],
        ["abstain: must be an integer ≥ 0"],
    ),
    "no samples in compact": ([compact("p", "q", {})], ["answer_counts: holds no samples"]),
    "typo in sample": (
        [full("p", "q", [{"answr": "A"}])],
        ['samples[0].answr: unknown field (a typo of "answer"?)'],
    ),
    "typo in cell": (
        [{"prompt": "p", "qurey": "q", "samples": [{}]}],
        ['qurey: unknown field (a typo of "query"?)', "allowed here are: prompt, query"],
    ),
    "missing prompt": (
        [{"query": "q", "samples": [{}]}],
        ["prompt: required field is missing; add it"],
    ),
    "prompt not a string": (
        [full(5, "q", [{}])],
        ["prompt: must be a non-empty string (the prompt id) (got 5)"],
    ),
    "empty query": (
        [full("p", "", [{}])],
        ['query: must be a non-empty string (the query id) (got "")'],
    ),
    "answer not a string": (
        [full("p", "q", [{"answer": 3}])],
        ["samples[0].answer: must be a string or null"],
    ),
    "no form": (
        [{"prompt": "p", "query": "q"}],
        ['samples: required field is missing: give "samples"', '"answer_counts"'],
    ),
    "both forms": ([{**OK, "answer_counts": {"A": 1}}], ["answer_counts:", "not both"]),
    "cell cost in full form": ([{**OK, "cost": 3}], [":1: cost:", 'put "cost" on each sample']),
    "duplicate cell": (
        [OK, full("p", "r", [{}]), OK],
        ["pool.jsonl:3: query: duplicate cell", "line 1"],
    ),
    "incomplete grid": (
        [OK, full("p", "r", [{}]), full("b", "q", [{}])],
        [
            "pool.jsonl: query: incomplete grid: prompt 'b' has no cell for query 'r'",
            "1 of 4 cells missing",
        ],
    ),
    "inconsistent gold": (
        [full("p", "q", [{}], gold="A"), full("b", "q", [{}], gold="B")],
        ['pool.jsonl:2: gold: gold "B" differs from gold "A"', "prompt 'p' on line 1"],
    ),
    "gold null vs value": (
        [full("p", "q", [{}], gold="A"), full("b", "q", [{}])],
        [":2: gold:", "null"],
    ),
    "header not first": (
        [OK, {"iapo_pool": 1}],
        [":2: iapo_pool:", "only allowed as the first line"],
    ),
    "header typo": (
        [{"iapo_pool": 1, "objective": ["x"]}, OK],
        [':1: objective: unknown field (a typo of "objectives"?)'],
    ),
    "header bad version type": (
        [{"iapo_pool": "1"}, OK],
        [':1: iapo_pool: must be the integer schema version 1 (got "1")'],
    ),
    "header objective twice": (
        [{"iapo_pool": 1, "objectives": ["a", "a"]}, OK],
        ["objectives[1]", "listed twice"],
    ),
    "header objective missing": (
        [
            {"iapo_pool": 1, "objectives": ["helpful"]},
            full("p", "q", [{"scores": {"helpful": 1}}, {"scores": {"x": 1}}]),
        ],
        [
            "pool.jsonl:2: samples[1].scores: no score for objective 'helpful'",
            "the header's objectives",
        ],
    ),
    "header objectives, compact cell": (
        [{"iapo_pool": 1, "objectives": ["accuracy", "helpful"]}, compact("p", "q", {"A": 1})],
        [":2: answer_counts: a compact cell has no scores", "full form"],
    ),
    "empty file": ([], ["pool.jsonl: no cells: the file is empty"]),
    "blank lines only": (["", "  ", ""], ["no cells"]),
    "header only": ([{"iapo_pool": 1}], ["no cells: the file holds only a header"]),
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_validation_errors(tmp_path: Path, case: str) -> None:
    lines, expected = BAD_LINES[case]
    message = load_error(write(tmp_path, lines) if lines else write(tmp_path, ""))
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_schema_version_mismatch(tmp_path: Path) -> None:
    path = write(tmp_path, [{"iapo_pool": 2, "new_field": True}, OK])
    message = load_error(path)
    assert "pool.jsonl:1: iapo_pool:" in message
    assert "schema version 2" in message and f"reads version {POOL_SCHEMA}" in message


def test_require_gold(tmp_path: Path) -> None:
    path = write(tmp_path, [full("p", "q", [{}], gold="A"), full("p", "r", [{}])])
    assert load_pool(path).gold("r") is None
    message = load_error(path, require_gold=True)
    assert "pool.jsonl:2: gold: query 'r' has no gold answer" in message


def test_objectives_argument(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [full("p", "q", [{"scores": {"helpful": 1, "safe": 1}}, {"scores": {"helpful": 0}}])],
    )
    assert load_pool(path, objectives=["helpful"]).objectives == ("helpful", "safe")
    message = load_error(path, objectives=["helpful", "safe"])
    assert "pool.jsonl:1: samples[1].scores: no score for objective 'safe'" in message
    assert "objectives=['helpful', 'safe']" in message
    message = load_error(write(tmp_path, [compact("p", "q", {"A": 1})]), objectives=["helpful"])
    assert "answer_counts: a compact cell has no scores" in message


def test_file_problems(tmp_path: Path) -> None:
    message = load_error(tmp_path / "missing.jsonl")
    assert "no such file" in message
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(OK).encode() + b"\n" + b'{"prompt": "\xe9"}\n')
    assert "latin1.jsonl:2: is not UTF-8" in load_error(path)


def test_more_errors_on_one_line_are_counted(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, [full("p", "q", [{"cost": -1}, {"cost": -2}])]))
    assert "samples[0].cost" in message and "(and 1 more problem on this line)" in message


# ------------------------------------------------------------------------------------------------
# importers: synthetic inputs (always run)
# ------------------------------------------------------------------------------------------------


def renze_row(prompt: str, pid: int, answers: list[str], **kw: Any) -> dict[str, Any]:
    row = {
        "study": "temperature",
        "model": "m",
        "prompt": prompt,
        "exam": "ex",
        "temperature": 0.7,
        "problem_id": pid,
        "answers": answers,
        "gold": "A",
        "output_tokens": 10 * len(answers),
        "majority": "A",
        "score": 1,
        "error": "",
    }
    row.update(kw)
    return row


def test_import_renze_synthetic(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            renze_row("a", 1, ["A", "B", "", "A"], output_tokens=30),
            renze_row("a", 2, ["C"] * 10),
            renze_row("b", 1, ["A"] * 10, temperature=0.1),
            renze_row("b", 2, ["B"] * 10, temperature=0.1),
            renze_row("b", 1, ["A"] * 10),
            renze_row("c", 3, ["A"] * 10),  # only prompt c has question 3
            renze_row("c", 1, ["A"] * 10),
            renze_row("c", 2, ["A"] * 10),
        ],
        name="renze.jsonl",
    )
    pool = import_renze(path, model="m", exam="ex", temperature=0.7, prompts=["c", "a"])
    assert pool.prompts == ("c", "a")
    assert pool.queries == ("ex-1", "ex-2")  # ex-3 dropped: prompt a lacks it
    cell = pool.cell("a", "ex-1")
    assert cell.outcomes == (Sample("A", {}, 7.5), Sample("B", {}, 7.5), Sample(None, {}, 7.5))
    assert cell.weights.tolist() == [2.0, 1.0, 1.0]
    assert pool.objectives == ("accuracy",) and pool.cost_unit == "output_tokens"
    assert pool.meta["license"] == "BSD-2-Clause, Copyright (c) 2023 Matthew Renze"
    # prompt b at 0.7 has only question 1: the intersection keeps it alone
    assert import_renze(path, model="m", exam="ex", temperature=0.7).queries == ("ex-1",)
    with pytest.raises(
        PoolError, match=r"temperature: rows at several temperatures match \(0.1, 0.7\)"
    ):
        import_renze(path, model="m", exam="ex", prompts=["b"])
    with pytest.raises(PoolError, match=r"available models: m$"):
        import_renze(path, model="gpt", exam="ex")
    with pytest.raises(PoolError, match=r"exam: no rows for exam 'x'.*available exams: ex"):
        import_renze(path, model="m", exam="x")
    with pytest.raises(PoolError, match=r"available temperatures: 0.1, 0.7"):
        import_renze(path, model="m", exam="ex", temperature=0.5)
    with pytest.raises(
        PoolError, match=r"prompts: no rows for prompt 'd'.*available prompts: a, b, c"
    ):
        import_renze(path, model="m", exam="ex", temperature=0.7, prompts=["a", "d"])
    with pytest.raises(PoolError, match="study: no rows for study 'concise_cot'"):
        import_renze(path, model="m", exam="ex", study="concise_cot")
    bad = write(tmp_path, [renze_row("a", 1, ["A"], gold=None)], name="bad.jsonl")
    with pytest.raises(PoolError, match=r"bad.jsonl:1: gold: not a renze-mcqa record"):
        import_renze(bad, model="m", exam="ex")


def tot_log(path: Path, n_tasks: int, scores: list[Any], usage_reset_at: int | None = None) -> Path:
    records = []
    total = 0
    for i in range(n_tasks):
        total = (
            (i + 1) * 100
            if usage_reset_at is None or i < usage_reset_at
            else (i - usage_reset_at + 1) * 100
        )
        records.append(
            {
                "idx": i,
                "ys": ["text"] * len(scores),
                "infos": [{"r": s} for s in scores],
                "usage_so_far": {"completion_tokens": total, "prompt_tokens": 10, "cost": 0.1},
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))
    return path


def test_import_tot_text_synthetic(tmp_path: Path) -> None:
    root = tmp_path / "tot-logs"
    tot_log(
        root / "text" / "gpt-4_1.0_naive_standard_sample_10_start0_end100.json", 3, [2.2, 7, 10, 1]
    )
    with pytest.raises(
        PoolError, match=r"missing log gpt-4_1.0_naive_cot.*logs here: gpt-4_1.0_naive_standard"
    ):
        import_tot_text(root)
    tot_log(
        root / "text" / "gpt-4_1.0_naive_cot_sample_10_start0_end100.json",
        3,
        [5, 5],
        usage_reset_at=2,
    )
    pool = import_tot_text(root)
    assert pool.prompts == ("standard", "cot") and pool.queries == ("text-0", "text-1", "text-2")
    assert pool.objectives == ("coherence",)
    assert [o.scores["coherence"] for o in pool.cell("standard", "text-0").outcomes] == [
        0.22,
        0.7,
        1.0,
        0.1,
    ]
    assert pool.cell("standard", "text-1").outcomes[0].cost == 25.0  # 100 tokens / 4 samples
    assert pool.cell("cot", "text-2").outcomes[0].cost == 50.0  # counter restarted: 100 / 2
    assert pool.gold("text-0") is None
    assert import_tot_text(root / "text").prompts == (
        "standard",
        "cot",
    )  # the text/ folder works too


def test_import_tot_game24_synthetic(tmp_path: Path) -> None:
    root = tmp_path / "tot-logs" / "game24"
    tot_log(root / "gpt-3.5-turbo_0.7_naive_cot_sample_100_start900_end1000.json", 2, [0, 1])
    tot_log(root / "gpt-4_0.7_naive_cot_sample_100_start900_end1000.json", 2, [1, 1])
    path = tot_log(root / "gpt-4_0.7_naive_standard_sample_100_start900_end1000.json", 2, [0, 0])
    records = json.loads(path.read_text())
    for r in records:  # the IO log scores with accs instead of infos
        r["accs"] = [True, False]
        del r["infos"]
    path.write_text(json.dumps(records))
    pool = import_tot_game24(tmp_path / "tot-logs")
    assert pool.prompts == ("gpt-4/standard", "gpt-4/cot", "gpt-3.5-turbo/cot")
    assert pool.queries == ("24-0", "24-1")
    assert [o.scores["correct"] for o in pool.cell("gpt-4/standard", "24-0").outcomes] == [1.0, 0.0]
    records[0]["accs"] = [True]
    path.write_text(json.dumps(records))
    with pytest.raises(PoolError, match=r"\[0\]\.accs: 1 scores for 2 samples"):
        import_tot_game24(tmp_path / "tot-logs")
    path.write_text('[{"idx": 0}]')
    with pytest.raises(
        PoolError, match=r"gpt-4_0.7_naive_standard.*: \[0\]\.ys: not a Tree-of-Thoughts log"
    ):
        import_tot_game24(tmp_path / "tot-logs")


# ------------------------------------------------------------------------------------------------
# importers on the real shared pools
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mcqa() -> Pool:
    return import_renze(
        TEMPERATURE_POOL,
        model="gpt-35-turbo",
        exam="comprehensive-100",
        temperature=0.7,
        prompts=["baseline", "domain_expert", "self_recitation", "chain_of_thought", "composite"],
    )


@needs_shared
def test_import_renze_real(mcqa: Pool) -> None:
    assert len(mcqa.prompts) == 5 and len(mcqa.queries) == 100
    assert mcqa.queries[0] == "comprehensive-100-1"
    # README: gpt-3.5 on comprehensive-100 at T=0.7: acc@1 .59 (CoT) and .55 (composite);
    # output tokens per sample 160 and 274
    for prompt, acc, tokens in [("chain_of_thought", 0.59, 160), ("composite", 0.55, 274)]:
        cells = [mcqa.cell(prompt, q) for q in mcqa.queries]
        assert np.mean([p_correct(c) for c in cells]) == pytest.approx(acc, abs=0.005)
        assert np.mean([c.mean_cost() for c in cells]) == pytest.approx(tokens, abs=0.5)
    # one row, straight from the file: cost = output_tokens / 10, "" = abstain
    row = next(
        r
        for r in map(json.loads, TEMPERATURE_POOL.read_text().splitlines())
        if (r["model"], r["exam"], r["temperature"], r["prompt"], r["problem_id"])
        == ("gpt-35-turbo", "comprehensive-100", 0.7, "chain_of_thought", 1)
    )
    cell = mcqa.cell("chain_of_thought", "comprehensive-100-1")
    assert cell.gold == row["gold"]
    assert all(o.cost == row["output_tokens"] / 10 for o in cell.outcomes)
    got = {o.answer: int(w) for o, w in zip(cell.outcomes, cell.weights, strict=True)}
    assert got == dict(Counter(a or None for a in row["answers"]))
    # the content-filtered question: every sample abstains, cost 0
    blocked = mcqa.cell("baseline", "comprehensive-100-83")
    assert blocked.outcomes == (Sample(None, {}, 0.0),) and blocked.size == 10
    assert mcqa.meta["commit"] == "b00cfb652897e8bdc28c63234def9b490fa84cfb"


@needs_shared
def test_import_renze_concise_real() -> None:
    pool = import_renze(
        CONCISE_POOL, model="gpt-35-turbo", exam="sat-math-100", study="concise_cot"
    )
    assert pool.prompts == ("baseline", "chain_of_thought", "composite", "concise")
    expected = {
        "baseline": (0.42, 34),
        "concise": (0.50, 109),
        "chain_of_thought": (0.70, 180),
        "composite": (0.71, 260),
    }
    for prompt, (acc, tokens) in expected.items():
        cells = [pool.cell(prompt, q) for q in pool.queries]
        assert np.mean([p_correct(c) for c in cells]) == pytest.approx(acc, abs=0.005)
        assert np.mean([c.mean_cost() for c in cells]) == pytest.approx(tokens, abs=0.5)
    assert pool.meta["repo"] == "matthewrenze/jhu-concise-cot"


@needs_shared
def test_import_renze_real_errors() -> None:
    with pytest.raises(PoolError) as info:
        import_renze(TEMPERATURE_POOL, model="gpt-4o", exam="comprehensive-100")
    assert "available models: claude-3-opus-20240229" in str(info.value) and "gpt-35-turbo" in str(
        info.value
    )


@needs_shared
def test_import_tot_text_real() -> None:
    pool = import_tot_text(POOLS / "tot-logs")
    assert pool.prompts == ("standard", "cot") and len(pool.queries) == 100
    assert pool.objectives == ("coherence",) and pool.cost_unit == "output_tokens"
    # README: IO mean score 6.19, oracle best-of-10 7.96; CoT 6.93 and 8.21
    for prompt, mean, best in [("standard", 6.19, 7.96), ("cot", 6.93, 8.21)]:
        cells = [pool.cell(prompt, q) for q in pool.queries]
        assert 10 * np.mean([mean_score(c, "coherence") for c in cells]) == pytest.approx(
            mean, abs=0.005
        )
        assert 10 * np.mean(
            [max(o.scores["coherence"] for o in c.outcomes) for c in cells]
        ) == pytest.approx(best, abs=0.005)
        assert all(c.size == 10 and c.outcomes[0].text is None for c in cells)
    assert pool.cell("standard", "text-0").outcomes[0].cost == 774.3  # 7743 tokens / 10
    assert pool.cell("standard", "text-75").outcomes[0].cost == 919.1  # counter restarted there
    assert min(o.cost for c in pool.cells.values() for o in c.outcomes) > 0


@needs_shared
def test_import_tot_game24_real() -> None:
    pool = import_tot_game24(POOLS / "tot-logs")
    assert pool.prompts == ("gpt-4/standard", "gpt-4/cot", "gpt-3.5-turbo/cot")
    assert pool.queries[0] == "24-900" and len(pool.queries) == 100
    # README: per-sample accuracy .073 / .040 / .023; best-of-100 .33 / .49 / .41
    for prompt, acc, best in [
        ("gpt-4/standard", 0.073, 0.33),
        ("gpt-4/cot", 0.040, 0.49),
        ("gpt-3.5-turbo/cot", 0.023, 0.41),
    ]:
        cells = [pool.cell(prompt, q) for q in pool.queries]
        assert np.mean([mean_score(c, "correct") for c in cells]) == pytest.approx(acc, abs=0.0005)
        assert np.mean(
            [max(o.scores["correct"] for o in c.outcomes) for c in cells]
        ) == pytest.approx(best)
    assert pool.cell("gpt-4/standard", "24-900").outcomes[0].cost == 18.56  # 1856 tokens / 100
    assert pool.cell("gpt-4/cot", "24-932").outcomes[0].cost == 68.16  # counter restarted there
    assert "ndrew1337/ai-360-project-reasoning_llms" in pool.meta["source"]


# ------------------------------------------------------------------------------------------------
# bundled pools
# ------------------------------------------------------------------------------------------------


def test_bundled_pools_load() -> None:
    mcqa = load_pool(DATA / "mcqa-gpt35-comprehensive.jsonl", require_gold=True)
    assert mcqa.prompts == (
        "baseline",
        "domain_expert",
        "self_recitation",
        "chain_of_thought",
        "composite",
    )
    assert len(mcqa.queries) == 100 and mcqa.objectives == ("accuracy",)
    assert all(c.size == 10 for c in mcqa.cells.values())
    assert mcqa.meta["commit"] == "b00cfb652897e8bdc28c63234def9b490fa84cfb"
    assert "BSD-2-Clause" in mcqa.meta["license"]
    tot = load_pool(DATA / "tot-writing.jsonl", objectives=["coherence"])
    assert tot.prompts == ("standard", "cot") and len(tot.queries) == 100
    assert tot.meta["commit"] == "ab400345c5ea39d28ea6d7d3be0e417b11113c87"
    assert tot.meta["license"].startswith("MIT")
    assert all(o.text is None for c in tot.cells.values() for o in c.outcomes)
    assert "BSD 2-Clause" in (DATA / "LICENSE-renze-mcqa").read_text()
    assert "MIT License" in (DATA / "LICENSE-tot-logs").read_text()
    readme = (DATA / "README.md").read_text()
    assert (
        "b00cfb652897e8bdc28c63234def9b490fa84cfb" in readme
        and "ab400345c5ea39d28ea6d7d3be0e417b11113c87" in readme
    )


def _vendor_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "vendor_pools", REPO / "scripts" / "vendor_pools.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_shared
def test_bundled_pools_match_importers(tmp_path: Path) -> None:
    script = _vendor_script()
    fresh = script.build(POOLS)
    for name, pool in fresh.items():
        assert_same_pool(load_pool(DATA / name), pool)
    # the licence texts are copies of the shared ones
    assert (DATA / "LICENSE-renze-mcqa").read_bytes() == (
        POOLS / "renze-mcqa" / "LICENSE-jhu-llm-temperature"
    ).read_bytes()
    assert (DATA / "LICENSE-tot-logs").read_bytes() == (POOLS / "tot-logs" / "LICENSE").read_bytes()
    # and the script reproduces the bundled files byte for byte
    assert script.main([str(POOLS), "--out", str(tmp_path)]) == 0
    for name in ("mcqa-gpt35-comprehensive.jsonl", "tot-writing.jsonl", "README.md"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name
