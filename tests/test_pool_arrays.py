"""Pools as arrays: the encoded pool and exact tables computed on arrays are, bit for bit, those of
the per-cell code they replace (a frozen copy in ``pool_reference.py``), on the bundled pools, the
synthetic environments and generated pools that stress every special case; the compact-form fast
reader gives the pool the full reader gives, or defers to it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pool_reference as ref
import pytest

from iapo.bench import build_environment, encode_pool, synth_bernoulli, synth_categorical
from iapo.estimators import mv_exact, mv_exact_many
from iapo.pools import Cell, Pool, PoolArrays, dump_pool, load_pool, pool_from_cells
from iapo.strategies import BestOfN, MajorityVote, Strategy, exact_cell_utilities
from iapo.types import Context, Sample

DATA = Path(__file__).resolve().parents[1] / "src" / "iapo" / "data"
MV_CTX = (
    Context("blind", {"accuracy": 1.0}, 0.0),
    Context("aware", {"accuracy": 1.0}, 0.2),
    Context("averse", {"accuracy": 0.7}, 1.0),
)


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IAPO_NO_CACHE", "1")


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def assert_encodes_like_before(
    pool: Pool,
    strategy: Strategy,
    contexts: Sequence[Context],
    n_max: int,
    prompts: Sequence[str] | None = None,
) -> None:
    want = ref.encode_pool(pool, strategy, contexts, n_max, prompts=prompts)
    got = encode_pool(pool, strategy, contexts, n_max, prompts=prompts)
    for name, arr in want.items():
        assert same_bits(getattr(got, name), arr), name


def compact_pool(
    n_p: int, n_q: int, seed: int, *, answers: int = 5, samples: int = 20, zero: bool = False
) -> Pool:
    """Compact-form cells: abstentions, gold sometimes absent, answer orders shuffled."""
    rng = np.random.default_rng(seed)
    letters = [f"a{i}" for i in range(answers)]
    golds: list[str | None] = [letters[int(i)] for i in rng.integers(answers, size=n_q)]
    for q in range(n_q):
        golds[q] = None if q % 11 == 3 else "never-answered" if q % 13 == 5 else golds[q]
    cells = []
    for p in range(n_p):
        for q in range(n_q):
            probs = rng.dirichlet(np.full(answers + 1, 0.4))
            counts = rng.multinomial(samples, probs)
            order = rng.permutation(answers + 1)
            outcomes, weights = [], []
            cost = float(rng.integers(1, 400)) / 7.0
            for i in order:
                if counts[i] or (zero and i == 0):
                    outcomes.append(Sample(None if i == answers else letters[i], {}, cost))
                    weights.append(float(counts[i]))
            if not outcomes:
                outcomes, weights = [Sample(letters[0], {}, cost)], [1.0]
            cells.append(Cell(f"p{p}", f"q{q}", golds[q], tuple(outcomes), np.array(weights)))
    return pool_from_cells(cells, objectives=("accuracy",))


def full_pool(n_p: int, n_q: int, seed: int, *, scored: bool = False) -> Pool:
    """Full-form cells: repeated answers with different costs (merged or not), many classes."""
    rng = np.random.default_rng(seed)
    cells = []
    for p in range(n_p):
        for q in range(n_q):
            n = int(rng.integers(1, 14))
            outcomes = []
            for _ in range(n):
                a = rng.integers(-1, 10)
                cost = float(rng.choice([1.0, 2.5, 0.1 * int(rng.integers(1, 50))]))
                scores = {
                    "h": float(rng.choice([0.0, 0.5, rng.random()])),
                    "s": float(rng.random()),
                }
                outcomes.append(
                    Sample(None if a < 0 else str(a), scores if scored else {}, cost, "t", {})
                )
            cells.append(Cell(f"p{p}", f"q{q}", str(q % 10), tuple(outcomes), np.ones(n)))
    return pool_from_cells(cells, objectives=("h", "s") if scored else ("accuracy",))


# -- the exact kernel ----------------------------------------------------------------------


@pytest.mark.parametrize("tie", ["fractional", "half"])
def test_mv_exact_is_the_previous_kernel_bit_for_bit(tie: str) -> None:
    rng = np.random.default_rng(5)
    for trial in range(120):
        rows, m, k = int(rng.integers(1, 50)), int(rng.integers(1, 12)), int(rng.integers(0, 36))
        p = rng.dirichlet(np.full(m + 1, rng.choice([0.1, 0.5, 2.0])), rows)[:, :m]
        if trial % 3 == 0:
            p = np.round(p * 10) / 10
        p[rng.random(p.shape) < 0.2] = 0.0
        g = rng.integers(-1, m, rows)
        want = ref.mv_exact(p, g, k, tie)
        assert same_bits(mv_exact(p, g, k, tie), want)
        blocks = [(p, g), (p[::-1].copy(), g[::-1].copy()), (p[:1], g[:1])]
        many = mv_exact_many(blocks, k, tie)  # type: ignore[arg-type]
        for (bp, bg), got in zip(blocks, many, strict=True):
            assert same_bits(got, ref.mv_exact(bp, bg, k, tie))


def test_mv_exact_many_over_several_chunks() -> None:
    rng = np.random.default_rng(8)
    p = np.round(rng.dirichlet(np.full(4, 0.3), 9000)[:, :3] * 8) / 8  # many repeated profiles
    g = rng.integers(0, 3, 9000)
    got = mv_exact_many([(p, g), (p[:5000], g[:5000])], 6)
    assert same_bits(got[0], ref.mv_exact(p, g, 6, "fractional"))
    assert same_bits(got[1], ref.mv_exact(p[:5000], g[:5000], 6, "fractional"))


# -- exact tables and encoded pools ----------------------------------------------------------


@pytest.mark.parametrize("name", ["mcqa-gpt35", "tot-writing", "synth-bernoulli"])
def test_environments_encode_like_before(name: str) -> None:
    env = build_environment(name)
    assert_encodes_like_before(env.pool, env.strategy, env.contexts, env.n_max)


def test_synth_categorical_encodes_like_before() -> None:
    env = build_environment("synth-categorical")
    pool = env.pool.subset(prompts=env.pool.prompts[:6])
    assert_encodes_like_before(pool, env.strategy, env.contexts, env.n_max)


def test_gsm8k_full_form_pool_encodes_like_before() -> None:
    env = build_environment(str(DATA / "gsm8k-qwen05.jsonl"))
    assert_encodes_like_before(env.pool, env.strategy, env.contexts, env.n_max)
    half = MajorityVote(tie_credit="half")
    assert_encodes_like_before(env.pool, half, MV_CTX, 8, prompts=env.pool.prompts[::-1])


@pytest.mark.parametrize("tie", ["fractional", "half"])
def test_compact_pools_encode_like_before(tie: str) -> None:
    strategy = MajorityVote(tie_credit=tie)  # type: ignore[arg-type]
    assert_encodes_like_before(compact_pool(4, 60, 1), strategy, MV_CTX, 12)
    assert_encodes_like_before(compact_pool(3, 40, 2, answers=11, zero=True), strategy, MV_CTX, 7)
    pool = compact_pool(3, 30, 3, samples=3)
    assert_encodes_like_before(pool, strategy, MV_CTX[:1], 5, prompts=["p2", "p0"])


def test_more_queries_than_one_chunk_encode_like_before() -> None:
    pool = compact_pool(1, 4200, 4, samples=6)  # a prompt's cells span two chunks of mv_exact
    assert_encodes_like_before(pool, MajorityVote(), MV_CTX, 4)


def test_full_form_pools_encode_like_before() -> None:
    assert_encodes_like_before(full_pool(3, 50, 5), MajorityVote(), MV_CTX, 9)
    scored = full_pool(3, 40, 6, scored=True)
    ctx = (Context("x", {"h": 0.7, "s": 0.3}, 0.5), Context("y", {"h": 0.1, "s": 0.9}, 0.0))
    assert_encodes_like_before(scored, BestOfN(("h", "s")), ctx, 11)
    assert_encodes_like_before(scored, BestOfN(("s",)), ctx[1:], 3)


def test_synthetic_generators_exact_tables_like_before() -> None:
    pool = synth_bernoulli(n_prompts=6, n_queries=40, seed=3, wrong_answers=3)
    want = ref.exact_cell_utilities(pool, MajorityVote(), MV_CTX, 16)
    assert same_bits(exact_cell_utilities(pool, MajorityVote(), MV_CTX, 16), want)
    cat = synth_categorical(n_prompts=4, n_queries=30, seed=2)
    ctx = (Context("a", {"helpful": 0.4, "harmless": 0.6}, 0.05),)
    qs = cat.queries[5:17]
    strategy = BestOfN(("helpful", "harmless"))
    want = ref.exact_cell_utilities(cat, strategy, ctx, 9, prompts=["p03", "p01"], queries=qs)
    got = exact_cell_utilities(cat, strategy, ctx, 9, prompts=["p03", "p01"], queries=qs)
    assert same_bits(got, want)


def test_missing_score_still_raises_as_before() -> None:
    cells = [
        Cell("p", "q", None, (Sample(None, {"h": 1.0}, 0.0), Sample(None, {}, 0.0)), np.ones(2))
    ]
    pool = pool_from_cells(cells, objectives=("h",))
    with pytest.raises(KeyError):
        exact_cell_utilities(pool, BestOfN(("h",)), (Context("c", {"h": 1.0}, 0.0),), 3)


# -- arrays and the compact-form reader ---------------------------------------------------------


def write_lines(path: Path, lines: Sequence[Any], header: bool = True) -> Path:
    head = [{"iapo_pool": 1, "objectives": ["accuracy"], "cost_unit": "tok"}] if header else []
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in [*head, *lines]))
    return path


def assert_same_pool(a: Pool, b: Pool) -> None:
    assert (a.objectives, a.prompts, a.queries, a.cost_unit) == (
        b.objectives,
        b.prompts,
        b.queries,
        b.cost_unit,
    )
    assert dict(a.meta) == dict(b.meta)
    assert list(a.cells) == list(b.cells)  # the file's cell order
    for key in b.cells:
        x, y = a.cells[key], b.cells[key]
        assert (x.prompt, x.query, x.gold, x.outcomes) == (y.prompt, y.query, y.gold, y.outcomes)
        assert same_bits(x.weights, y.weights)
    assert a.digest == b.digest


def full_reader(path: Path, **kw: Any) -> Pool:
    from iapo.pools import _load

    lines = path.read_text().split("\n")
    return _load._load_pool(lines, str(path), require_gold=False, objectives=None, quiet=True, **kw)


def test_compact_file_reads_into_arrays_like_the_full_reader(tmp_path: Path) -> None:
    pool = compact_pool(3, 25, 9)
    dump_pool(pool, tmp_path / "p.jsonl")
    fast = load_pool(tmp_path / "p.jsonl")
    assert "arrays" in fast.__dict__  # read into arrays, no cell built yet
    assert_same_pool(fast, full_reader(tmp_path / "p.jsonl"))
    assert_same_pool(fast.scale_costs(0.37), full_reader(tmp_path / "p.jsonl").scale_costs(0.37))
    assert fast.max_cost() == full_reader(tmp_path / "p.jsonl").max_cost()
    assert len(fast.cells) == 75 and ("p1", "q3") in fast.cells and ("p1", "x") not in fast.cells
    assert fast.cells.get(("nope", "q1")) is None


def test_compact_file_in_query_major_order_without_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        {"prompt": p, "query": q, "gold": "B", "answer_counts": {"B": 2, "A": 1}, "cost": 3}
        for q in ("q2", "q1")
        for p in ("y", "x")
    ]
    lines[1]["abstain"] = 4
    lines[2]["answer_counts"] = {}
    lines[2]["abstain"] = 1
    path = write_lines(tmp_path / "p.jsonl", ["", *lines, "   "], header=False)
    fast = load_pool(path)
    warning = capsys.readouterr().err
    assert "no header line" in warning
    assert_same_pool(fast, full_reader(path))
    assert fast.prompts == ("y", "x") and list(fast.cells)[:2] == [("y", "q2"), ("x", "q2")]
    arrays = fast.arrays
    assert arrays.start.tolist() == [0, 2, 3, 6, 8]  # grid order: (y, q2), (y, q1), (x, q2), …


BAD_CELLS: list[dict[str, Any] | str] = [
    {"answer_counts": {"A": True}},
    {"answer_counts": {"A": 1.0}},
    {"answer_counts": {"A": 0}},
    {"answer_counts": {}},
    {"abstain": -1},
    {"abstain": False},
    {"abstain": 0.0},
    {"cost": True},
    {"cost": -0.5},
    {"cost": 2e9},
    {"cost": "1"},
    {"gold": 3},
    {"prompt": ""},
    {"extra": 1},
    {"samples": [{"answer": "A"}]},
    '{"prompt": "p1", "query": "q0", "answer_counts": {"A": 1}, "cost": NaN}',
    '{"prompt": "p1", "query": "q0", "answer_counts": {"A": 1}, "cost": 1e999}',
    '{"prompt": "p1\\ud800", "query": "q0", "answer_counts": {"A": 1}}',
    '{"prompt": "p1", "query": "q0", "answer_counts": {"A": 1}} {"x": 1}',
    '{"prompt": "p1", "query": "q0", "answer_counts": {"A": 1}}, {"prompt": "p1"',
    "[1]",
    '{"iapo_pool": 1}',
    {"gold": "other"},
    {"query": "q1"},
]


@pytest.mark.parametrize("bad", BAD_CELLS, ids=[str(i) for i in range(len(BAD_CELLS))])
def test_what_the_fast_reader_does_not_take_the_full_reader_reports(
    tmp_path: Path, bad: dict[str, Any] | str
) -> None:
    good = [
        {"prompt": p, "query": q, "gold": "A", "answer_counts": {"A": 2, "B": 1}, "cost": 1.5}
        for p in ("p0", "p1")
        for q in ("q0", "q1")
    ]
    if isinstance(bad, str):
        lines: list[Any] = [*good[:2], bad, good[3]]
    else:
        lines = [*good[:2], {**good[2], **bad}, good[3]]
    path = write_lines(tmp_path / "bad.jsonl", lines)
    try:
        want: Any = full_reader(path)
    except Exception as exc:
        with pytest.raises(type(exc)) as got:
            load_pool(path, quiet=True)
        assert str(got.value) == str(exc)
    else:
        assert_same_pool(load_pool(path, quiet=True), want)


def test_require_gold_and_objectives_errors_come_from_the_full_reader(tmp_path: Path) -> None:
    lines = [{"prompt": "p", "query": f"q{i}", "answer_counts": {"A": 1}} for i in range(2)]
    lines[1]["gold"] = "A"
    path = write_lines(tmp_path / "p.jsonl", lines)
    for kw in ({"require_gold": True}, {"objectives": ["helpful"]}):
        with pytest.raises(Exception) as want:
            from iapo.pools import _load

            _load._load_pool(
                path.read_text().split("\n"),
                str(path),
                require_gold=bool(kw.get("require_gold")),
                objectives=kw.get("objectives"),  # type: ignore[arg-type]
                quiet=True,
            )
        with pytest.raises(type(want.value)) as got:
            load_pool(path, **kw)  # type: ignore[arg-type]
        assert str(got.value) == str(want.value)


def test_arrays_from_cells_round_trip_through_lazy_cells() -> None:
    pool = compact_pool(2, 5, 12)
    arrays = PoolArrays.from_cells(pool.prompts, pool.queries, pool.cells)
    assert arrays.plain and arrays.n_cells == 10
    assert arrays.lengths.sum() == len(arrays.answer)
    from iapo.pools import pool_from_arrays

    again = pool_from_arrays(arrays, pool.objectives, pool.cost_unit, pool.meta)
    assert_same_pool(again, pool)
    with pytest.raises(ValueError, match="plain"):
        pool_from_arrays(full_pool(1, 2, 0).arrays, ("accuracy",))


def test_single_query_single_context_and_one_row_chunks_like_before() -> None:
    # mv_exact's chunks of one row reduce differently in numpy: kept apart, as before
    one = compact_pool(3, 1, 13)
    assert_encodes_like_before(one, MajorityVote(), MV_CTX[:1], 9)
    assert_encodes_like_before(one, MajorityVote(tie_credit="half"), MV_CTX, 9)
    pool = compact_pool(2, 4097, 14, samples=4)  # a second chunk of exactly one row
    assert_encodes_like_before(pool, MajorityVote(), MV_CTX[:1], 5)
    scored = full_pool(2, 1, 15, scored=True)
    assert_encodes_like_before(scored, BestOfN(("h",)), (Context("c", {"h": 1.0}, 0.3),), 6)


def test_a_subclass_takes_the_per_cell_path() -> None:
    class Swapped(MajorityVote):  # gold coded 1, the first wrong answer 0: its own encoding
        def encode(self, samples: Any, gold: Any, contexts: Any) -> Any:
            out = super().encode(samples, gold, contexts)
            return np.where(out == 0, 1, np.where(out == 1, 0, out))

    pool = compact_pool(2, 10, 3)
    assert_encodes_like_before(pool, Swapped(), MV_CTX, 5)
    assert encode_pool(pool, Swapped(), MV_CTX, 5).codes.tobytes() != (
        encode_pool(pool, MajorityVote(), MV_CTX, 5).codes.tobytes()
    )


def test_outcomes_merge_on_equal_costs_as_before() -> None:
    outcomes = (
        Sample("a", {}, 0.0),
        Sample("a", {}, -0.0),  # equal cost: merged (a dictionary key of floats)
        Sample("b", {}, 1.0),
        Sample("a", {}, 1.0),  # another cost: kept apart
        Sample(None, {}, 0.0),
    )
    cells = [Cell("p", q, "a", outcomes, np.array([1.0, 2.0, 0.0, 3.0, 1.0])) for q in "xy"]
    pool = pool_from_cells(cells, objectives=("accuracy",))
    assert_encodes_like_before(pool, MajorityVote(), MV_CTX, 4)
