"""The array cache of large pool files: written beside the pool (or in the user cache where that
is not possible), read back instead of the JSON, never trusted when it is corrupt, stale or of
another format, written atomically, and off when asked."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from iapo.bench import build_environment, encode_pool
from iapo.pools import _cache, _columns, _load, load_pool
from iapo.strategies import MajorityVote
from iapo.types import Context

CTX = (Context("blind", {"accuracy": 1.0}, 0.0), Context("averse", {"accuracy": 1.0}, 1.0))


@pytest.fixture(autouse=True)
def _cache_every_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Cache files of any size; the user cache in a temporary folder; the cache on."""
    monkeypatch.setattr(_load, "MIN_BYTES", 0)
    monkeypatch.delenv("IAPO_NO_CACHE", raising=False)
    user = tmp_path / "user-cache"
    monkeypatch.setenv("IAPO_CACHE_DIR", str(user))
    return user


def write_pool(path: Path, n_p: int = 3, n_q: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = [json.dumps({"iapo_pool": 1, "objectives": ["accuracy"], "cost_unit": "tok"})]
    for p in range(n_p):
        for q in range(n_q):
            counts = rng.multinomial(16, [0.5, 0.3, 0.15, 0.05])
            ac = {k: int(c) for k, c in zip("ABC", counts[:3], strict=True) if c}
            cell: dict[str, Any] = {"prompt": f"p{p}", "query": f"q{q}", "gold": "A"}
            cell["answer_counts"] = ac
            if counts[3]:
                cell["abstain"] = int(counts[3])
            cell["cost"] = int(rng.integers(5, 90))
            lines.append(json.dumps(cell))
    path.write_text("\n".join(lines) + "\n")
    return path


def cache_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.npz")) if folder.is_dir() else []


def no_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading the JSON from now on is an error: only the cache can answer."""

    def fail(*_: Any, **__: Any) -> None:
        raise AssertionError("the pool file was parsed")

    monkeypatch.setattr(_load, "read_compact", fail)
    monkeypatch.setattr(_load, "_load_pool", fail)


def same_pool_arrays(a: Any, b: Any) -> None:
    for name in ("gold", "start", "answer", "cost", "weight", "order"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    assert (a.prompts, a.queries, a.labels) == (b.prompts, b.queries, b.labels)


def test_second_load_reads_the_cache_beside_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _cache_every_file: Path
) -> None:
    path = write_pool(tmp_path / "pool.jsonl")
    first = load_pool(path)
    beside = cache_files(tmp_path / ".iapo-cache")
    assert len(beside) == 1 and beside[0].name.startswith("pool.")
    assert not cache_files(_cache_every_file)
    assert not list((tmp_path / ".iapo-cache").glob("*.tmp"))
    no_parse(monkeypatch)
    second = load_pool(path)
    same_pool_arrays(second.arrays, first.arrays)
    assert second.digest == first.digest and dict(second.meta) == dict(first.meta)
    assert second.objectives == ("accuracy",) and second.cost_unit == "tok"


def test_changed_file_is_not_served_the_old_cache(tmp_path: Path) -> None:
    path = write_pool(tmp_path / "pool.jsonl", seed=1)
    old = load_pool(path)
    write_pool(path, seed=2)
    new = load_pool(path)
    fresh = load_pool(path, cache=False)
    same_pool_arrays(new.arrays, fresh.arrays)
    assert new.digest != old.digest
    assert len(cache_files(tmp_path / ".iapo-cache")) == 1  # the old content's file is gone


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip", "other-key", "other-format"])
def test_damaged_or_stale_cache_is_rebuilt_not_trusted(tmp_path: Path, damage: str) -> None:
    path = write_pool(tmp_path / "pool.jsonl")
    want = load_pool(path, cache=False)
    load_pool(path)
    (cached,) = cache_files(tmp_path / ".iapo-cache")
    raw = cached.read_bytes()
    if damage == "truncate":
        cached.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        cached.write_bytes(b"not a zip file at all")
    elif damage == "flip":  # a byte inside the cost array: the member's CRC no longer matches
        with np.load(cached) as z:
            cost = z["cost"].tobytes()
        at = raw.index(cost) + len(cost) // 2
        cached.write_bytes(raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :])
    else:
        with np.load(cached) as z:
            members = {k: z[k] for k in z.files}
        info = json.loads(members["info"].tobytes())
        if damage == "other-key":
            info["key"] = "0" * 64
        else:
            info["format"] = _cache.FORMAT + 1
        members["info"] = np.frombuffer(json.dumps(info, sort_keys=True).encode(), np.uint8)
        with cached.open("wb") as fh:
            np.savez(fh, **members)  # type: ignore[arg-type]
    got = load_pool(path)
    same_pool_arrays(got.arrays, want.arrays)
    with zipfile.ZipFile(cached) as z:  # rebuilt: a sound file again
        assert z.testzip() is None
    with np.load(cached) as z:
        assert json.loads(z["info"].tobytes())["format"] == _cache.FORMAT


def test_unsound_arrays_in_a_cache_file_are_not_used(tmp_path: Path) -> None:
    path = write_pool(tmp_path / "pool.jsonl")
    want = load_pool(path, cache=False)
    load_pool(path)
    (cached,) = cache_files(tmp_path / ".iapo-cache")
    with np.load(cached) as z:
        members = {k: z[k] for k in z.files}
    members["answer"] = members["answer"] + 1000  # right key and format, indices out of range
    with cached.open("wb") as fh:
        np.savez(fh, **members)  # type: ignore[arg-type]
    same_pool_arrays(load_pool(path).arrays, want.arrays)


def test_unwritable_pool_folder_falls_back_to_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _cache_every_file: Path
) -> None:
    path = write_pool(tmp_path / "pool.jsonl")
    (tmp_path / ".iapo-cache").write_text("a file where the cache folder would go")
    load_pool(path)
    assert len(cache_files(_cache_every_file)) == 1
    no_parse(monkeypatch)
    load_pool(path)  # found in the user cache


def test_user_cache_dir_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IAPO_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert _cache.user_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("IAPO_CACHE_DIR")
    assert _cache.user_cache_dir() == tmp_path / "x" / "iapo"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _cache.user_cache_dir() == tmp_path / "home" / ".cache" / "iapo"


@pytest.mark.parametrize("how", ["env", "argument"])
def test_cache_can_be_turned_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _cache_every_file: Path, how: str
) -> None:
    path = write_pool(tmp_path / "pool.jsonl")
    if how == "env":
        monkeypatch.setenv("IAPO_NO_CACHE", "1")
        load_pool(path)
        env = build_environment(str(path))
        encode_pool(env.pool, env.strategy, env.contexts, env.n_max)
    else:
        load_pool(path, cache=False)
    assert not (tmp_path / ".iapo-cache").exists()
    assert not _cache_every_file.exists()


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_pool(tmp_path / "pool.jsonl")

    def broken(fh: Any, **_: Any) -> None:
        fh.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(_cache.np, "savez", broken)
    want = load_pool(path, cache=False)
    got = load_pool(path)
    same_pool_arrays(got.arrays, want.arrays)
    assert not [p for p in (tmp_path / ".iapo-cache").iterdir()]


def test_small_files_are_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_load, "MIN_BYTES", 10**9)
    load_pool(write_pool(tmp_path / "pool.jsonl"))
    assert not (tmp_path / ".iapo-cache").exists()


def test_encoded_pool_is_cached_and_keyed_by_what_it_depends_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_pool(tmp_path / "pool.jsonl", n_p=4, n_q=30)
    env = build_environment(str(path))
    first = encode_pool(env.pool, env.strategy, env.contexts, env.n_max)
    again = build_environment(str(path))
    from iapo.bench import _sim

    def fail(*_: Any, **__: Any) -> None:
        raise AssertionError("recomputed")

    with monkeypatch.context() as m:
        m.setattr(_sim, "exact_cell_utilities", fail)
        m.setattr(_sim, "_encode_arrays", fail)
        second = encode_pool(again.pool, again.strategy, again.contexts, again.n_max)
    for name in ("cum", "cost", "codes", "exact"):
        x, y = getattr(first, name), getattr(second, name)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    # anything else it depends on: computed afresh, equal to the uncached result
    variants = [
        (MajorityVote(tie_credit="half"), env.contexts, env.n_max, None),
        (env.strategy, CTX, env.n_max, None),
        (env.strategy, env.contexts, 5, None),
        (env.strategy, env.contexts, env.n_max, ["p3", "p1"]),
    ]
    for strategy, ctx, n_max, prompts in variants:
        got = encode_pool(again.pool, strategy, ctx, n_max, prompts=prompts)
        want = encode_pool(again.pool, strategy, ctx, n_max, prompts=prompts, cache=False)
        assert got.exact.tobytes() == want.exact.tobytes()
        assert got.codes.tobytes() == want.codes.tobytes()
    unscaled = load_pool(path)  # costs as recorded, not normalised: another content key
    got = encode_pool(unscaled, env.strategy, env.contexts, env.n_max)
    want = encode_pool(unscaled, env.strategy, env.contexts, env.n_max, cache=False)
    assert got.cost.tobytes() == want.cost.tobytes()
    assert got.cost.tobytes() != first.cost.tobytes()


def test_compact_reader_is_what_the_cache_holds(tmp_path: Path) -> None:
    path = write_pool(tmp_path / "pool.jsonl")
    lines = path.read_text().split("\n")
    direct = _columns.read_compact(lines, 0)
    assert direct is not None
    same_pool_arrays(load_pool(path).arrays, direct)
    same_pool_arrays(load_pool(path).arrays, direct)  # from the cache


def test_stale_contents_and_old_tables_are_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_cache, "KEEP_TABLES", 2)
    path = write_pool(tmp_path / "pool.jsonl", seed=1)
    other = write_pool(tmp_path / "other.jsonl", seed=1)  # same content, another file
    load_pool(other)
    env = build_environment(str(path))
    for n in (2, 3, 4):
        encode_pool(env.pool, env.strategy, env.contexts, n)
    folder = tmp_path / ".iapo-cache"
    mine = [f.name for f in cache_files(folder) if f.name.startswith("pool.")]
    assert len(mine) == 3  # the arrays and the two most recent tables
    write_pool(path, seed=2)  # the file changes: its old cache files go, the other file's stay
    load_pool(path)
    names = [f.name for f in cache_files(folder)]
    assert len([n for n in names if n.startswith("pool.")]) == 1
    assert len([n for n in names if n.startswith("other.")]) == 1
