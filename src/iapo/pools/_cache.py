"""The array cache: a pool file's arrays (and what is computed from them) as ``.npz`` files.

A pool file of at least :data:`MIN_BYTES` is read once into :class:`~iapo.pools.PoolArrays`
and saved as ``<stem>.<path tag>.<sha256 of the file, 16 hex>.npz`` in ``.iapo-cache/`` beside
the file; the next :func:`~iapo.pools.load_pool` of the same bytes reads that instead of the
JSON (milliseconds: the arrays are memory-mapped views). Derived tables (the benchmark
simulator's encoded pool and exact utilities, see :func:`cached_tables`) are saved the same
way, keyed by the pool's content and a description of what was computed, including a
fingerprint of the source code that computes them.

* **Where**: beside the pool; where that directory is not writable (a read-only data folder),
  in the user cache: ``$IAPO_CACHE_DIR``, else ``$XDG_CACHE_HOME/iapo``, else ``~/.cache/iapo``.
  Reads look in both places.
* **Trust**: a cache file holds its format version (:data:`FORMAT`) and its full key (the
  SHA-256 of the pool file's bytes, plus the derivation); a file that cannot be read, has another
  version or key, or whose arrays do not fit together is ignored and rebuilt, never used. The
  ``.npz`` members carry CRC-32 checks, verified on reading.
* **Writes** are atomic: a temporary file in the target directory, then ``os.replace``.
* **Off switch**: ``IAPO_NO_CACHE=1`` (any non-empty value but ``0``) in the environment
  (``iapo bench`` and every other command), or ``load_pool(..., cache=False)`` and
  ``encode_pool(..., cache=False)``: nothing is read or written.
* **Size**: a changed pool file's old cache files are removed when its new ones are written,
  and at most :data:`KEEP_TABLES` tables per pool content are kept (least recently used go).
  Small files (< :data:`MIN_BYTES`) are not cached: parsing them takes milliseconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import math
import mmap
import os
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from iapo.pools._arrays import PoolArrays

__all__ = [
    "FORMAT",
    "MIN_BYTES",
    "cache_enabled",
    "cached_tables",
    "code_fingerprint",
    "load_arrays",
    "save_arrays",
    "user_cache_dir",
]

FORMAT = 1
"""The cache file format version; files of another version are ignored."""
MIN_BYTES = 1 << 20
"""Pool files smaller than this are not cached."""
KEEP_TABLES = 8
"""Tables kept per pool content (least recently used dropped first)."""
BESIDE = ".iapo-cache"

_STRINGS = ("prompts", "queries", "labels", "score_names")
_ARRAYS = ("gold", "start", "answer", "cost", "weight", "scores", "order")


def cache_enabled(flag: bool | None = None) -> bool:
    """Whether the cache is on: ``flag`` if given, else not when ``$IAPO_NO_CACHE`` is set."""
    if flag is not None:
        return flag
    return os.environ.get("IAPO_NO_CACHE", "") in ("", "0")


def user_cache_dir() -> Path:
    """``$IAPO_CACHE_DIR``, else ``$XDG_CACHE_HOME/iapo``, else ``~/.cache/iapo``."""
    if os.environ.get("IAPO_CACHE_DIR"):
        return Path(os.environ["IAPO_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "iapo"
    return Path.home() / ".cache" / "iapo"


def _dirs(pool_path: Path) -> list[Path]:
    return [pool_path.resolve().parent / BESIDE, user_cache_dir()]


def _prefix(pool_path: Path) -> str:
    """The pool file's name stem and a tag of its full path: no two pool files share it."""
    where = hashlib.sha256(str(pool_path.resolve()).encode()).hexdigest()[:8]
    return f"{pool_path.stem}.{where}"


def _name(pool_path: Path, key: str, tag: str) -> str:
    return f"{_prefix(pool_path)}.{key[:16]}{tag}.npz"


def _prune(folder: Path, pool_path: Path, key: str) -> None:
    """Drop this pool file's cache files for other contents (it changed since), and all but the
    :data:`KEEP_TABLES` most recently used tables of this content."""
    prefix, current = f"{_prefix(pool_path)}.", key[:16]
    tables: list[tuple[float, Path]] = []
    with contextlib.suppress(OSError):
        for f in folder.iterdir():
            if not (f.name.startswith(prefix) and f.name.endswith(".npz")):
                continue
            rest = f.name[len(prefix) :]  # "<key16>.npz" or "<key16>.t<digest16>.npz"
            if rest[:16] != current:
                f.unlink(missing_ok=True)
            elif rest[16:].startswith(".t"):
                tables.append((f.stat().st_mtime, f))
        for _, f in sorted(tables, reverse=True)[KEEP_TABLES:]:
            f.unlink(missing_ok=True)


def _blob(strings: tuple[str, ...]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    data = [s.encode("utf-8", "surrogatepass") for s in strings]
    ends = np.cumsum([len(b) for b in data], dtype=np.int64)
    return np.frombuffer(b"".join(data), dtype=np.uint8), ends


def _unblob(data: NDArray[np.uint8], ends: NDArray[np.int64]) -> tuple[str, ...]:
    raw = data.tobytes()
    bounds = [0, *ends.tolist()]
    return tuple(raw[a:b].decode("utf-8", "surrogatepass") for a, b in itertools.pairwise(bounds))


def _info_array(info: Mapping[str, Any]) -> NDArray[np.uint8]:
    return np.frombuffer(json.dumps(info, sort_keys=True).encode(), dtype=np.uint8)


def _write(dirs: list[Path], name: str, members: Mapping[str, NDArray[Any]]) -> Path | None:
    """Write ``members`` atomically into the first directory that takes it; None if none does."""
    for d in dirs:
        tmp: str | None = None
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **members)  # type: ignore[arg-type]
            os.chmod(tmp, 0o644)  # mkstemp makes it 0600: others may share the pool's cache
            os.replace(tmp, d / name)
            return d / name
        except OSError:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
    return None


def _read(dirs: list[Path], name: str, info: Mapping[str, Any]) -> dict[str, NDArray[Any]] | None:
    """The members of the first cache file called ``name`` whose stored info is ``info``."""
    want = json.dumps(info, sort_keys=True)
    for d in dirs:
        path = d / name
        if not path.is_file():
            continue
        try:
            members = _read_npz(path)
            if bytes(members.pop("info", np.zeros(0, np.uint8)).tobytes()).decode() == want:
                return members
        except (OSError, ValueError, KeyError, EOFError, UnicodeDecodeError, zipfile.BadZipFile):
            continue
    return None


def _read_npz(path: Path) -> dict[str, NDArray[Any]]:
    """The arrays of an uncompressed ``.npz`` (as ``np.savez`` writes it), as read-only views of
    the file mapped into memory, each member's CRC-32 checked over the whole member first
    (``np.load`` reads in small chunks and copies: three times slower on a large table). The
    cache files are only ever replaced (``os.replace``), never changed in place, so a mapping
    stays valid."""
    out: dict[str, NDArray[Any]] = {}
    with zipfile.ZipFile(path) as z:
        members = z.infolist()
    with path.open("rb") as fh:
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    whole = memoryview(mapped)
    for m in members:
        if m.compress_type != zipfile.ZIP_STORED or not m.filename.endswith(".npy"):
            raise ValueError(f"unexpected member {m.filename!r}")
        at = m.header_offset
        if bytes(whole[at : at + 4]) != b"PK\x03\x04":
            raise ValueError("not a zip member header")
        name_len, extra_len = struct.unpack("<HH", whole[at + 26 : at + 30])
        start = at + 30 + name_len + extra_len
        data = whole[start : start + m.file_size]
        if len(data) != m.file_size or zlib.crc32(data) != m.CRC:
            raise ValueError(f"member {m.filename!r} is damaged")
        head = io.BytesIO(bytes(data[:4096]))
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        count = math.prod(shape)
        if fortran or dtype.hasobject or head.tell() + count * dtype.itemsize != m.file_size:
            raise ValueError("only C-ordered plain arrays are cached")
        arr = np.frombuffer(mapped, dtype=dtype, count=count, offset=start + head.tell())
        out[m.filename[: -len(".npy")]] = arr.reshape(shape)
    return out


# --------------------------------------------------------------------------------------------
# a pool file's arrays
# --------------------------------------------------------------------------------------------


def save_arrays(pool_path: Path, key: str, arrays: PoolArrays, extra: Mapping[str, Any]) -> None:
    """Cache ``arrays`` (and the JSON-able ``extra``: header, lines) read from ``pool_path``."""
    members: dict[str, NDArray[Any]] = {}
    for s in _STRINGS:
        members[f"{s}_data"], members[f"{s}_ends"] = _blob(getattr(arrays, s))
    for a in _ARRAYS:
        members[a] = getattr(arrays, a)
    members["extra"] = _info_array(extra)
    members["info"] = _info_array({"format": FORMAT, "key": key, "plain": arrays.plain})
    written = _write(_dirs(pool_path), _name(pool_path, key, ""), members)
    if written is not None:
        _prune(written.parent, pool_path, key)


def load_arrays(pool_path: Path, key: str) -> tuple[PoolArrays, dict[str, Any]] | None:
    """The cached arrays and extra of the pool file with content ``key``, if a sound cache file
    holds them."""
    info = {"format": FORMAT, "key": key, "plain": True}
    m = _read(_dirs(pool_path), _name(pool_path, key, ""), info)
    if m is None:
        return None
    try:
        text = {s: _unblob(m[f"{s}_data"], m[f"{s}_ends"]) for s in _STRINGS}
        arrays = PoolArrays(
            prompts=text["prompts"],
            queries=text["queries"],
            labels=text["labels"],
            gold=m["gold"],
            start=m["start"],
            answer=m["answer"],
            cost=m["cost"],
            weight=m["weight"],
            score_names=text["score_names"],
            scores=m["scores"],
            order=m["order"],
            plain=True,
        )
        extra = json.loads(m["extra"].tobytes().decode())
    except (KeyError, ValueError, TypeError, UnicodeDecodeError):
        return None
    return (arrays, extra) if _sound(arrays) and isinstance(extra, dict) else None


def _sound(a: PoolArrays) -> bool:
    """Whether the arrays fit together (shapes, dtypes, offsets, indices in range)."""
    n_cells = len(a.prompts) * len(a.queries)
    n = len(a.answer)
    int_ok = all(x.dtype == np.int64 and x.ndim == 1 for x in (a.gold, a.start, a.answer, a.order))
    float_ok = a.cost.dtype == np.float64 and a.weight.dtype == np.float64
    if not (int_ok and float_ok and a.start.shape == (n_cells + 1,)):
        return False
    return bool(
        a.gold.shape == (n_cells,)
        and a.cost.shape == (n,)
        and a.weight.shape == (n,)
        and a.scores.shape == (n, len(a.score_names))
        and a.start[0] == 0
        and a.start[-1] == n
        and np.all(np.diff(a.start) >= 0)
        and (n == 0 or (a.answer.min() >= -1 and a.answer.max() < len(a.labels)))
        and (a.gold.size == 0 or (a.gold.min() >= -1 and a.gold.max() < len(a.labels)))
        and (n_cells == 0 or (a.order.min() >= 0 and a.order.max() < n_cells))
        and bool(np.all(np.bincount(a.order, minlength=n_cells) == 1))
    )


# --------------------------------------------------------------------------------------------
# tables computed from a pool
# --------------------------------------------------------------------------------------------


def code_fingerprint(*modules: str) -> str:
    """A hash of the source files of ``modules`` (paths relative to the iapo package)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for m in modules:
        try:
            h.update((root / m).read_bytes())
        except OSError:
            h.update(m.encode())
    return h.hexdigest()[:32]


def cached_tables(
    source: tuple[Path, str] | None,
    what: Mapping[str, Any],
    build: Callable[[], dict[str, NDArray[Any]]],
    *,
    enabled: bool | None = None,
) -> dict[str, NDArray[Any]]:
    """``build()``, or the arrays it returned before for the same pool content and ``what``.

    ``source``: the pool file and its content key (:attr:`PoolArrays.source`; None: not
    cached). ``what``: a JSON-able description of everything the tables depend on besides the
    pool's content (strategy, contexts, N_max, code fingerprint, …)."""
    if source is None or not cache_enabled(enabled):
        return build()
    path, key = source
    digest = hashlib.sha256(json.dumps([key, what], sort_keys=True).encode()).hexdigest()
    info = {"format": FORMAT, "key": digest}
    name = _name(path, key, f".t{digest[:16]}")
    for folder in _dirs(path):
        hit = _read([folder], name, info)
        if hit is not None:
            with contextlib.suppress(OSError):
                os.utime(folder / name)  # recently used: kept by _prune
            return hit
    tables = build()
    written = _write(_dirs(path), name, {**tables, "info": _info_array(info)})
    if written is not None:
        _prune(written.parent, path, key)
    return tables
