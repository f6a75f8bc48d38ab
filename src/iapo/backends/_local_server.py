"""llama.cpp's OpenAI-compatible HTTP server, in-process (``xllamacpp``), on 127.0.0.1.

:class:`LocalServer` starts lazily, on the first completion asked for, on a free port of
127.0.0.1; it stops on :meth:`LocalServer.stop`, on the backend's ``aclose`` and at interpreter
exit. Threads follow the machine's load (one thread on a busy machine: llama.cpp's spinning
threads slow each other down badly when cores are shared).
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import threading
import time
import urllib.error
import urllib.request
import weakref
from typing import Any

from iapo.backends._local_models import ModelFile
from iapo.errors import ConfigError, PermanentBackendError

__all__ = ["PIP_LOCAL", "LocalServer", "choose_threads"]


log = logging.getLogger("iapo.backends.local")

#: The pip command that installs the runtime (the ``local`` extra).
PIP_LOCAL = "pip install 'iapo[local]'"
#: How long a model may take to load before the start is given up.
START_TIMEOUT = 300.0


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
