"""``iapo bench --executor ray``: the protocol's runs as Ray tasks, on this machine or a cluster.

The unit of work is the one the process pool already uses: a **run** (one split, every
algorithm at every feasible budget, :func:`~iapo.bench._protocol.run_single`). A finer cell would
not be independent: the run's ground-truth tables are computed once per run, UCB / ε-greedy
serve every budget from one trajectory, and TRIPLE N=random reuses TRIPLE N=1's exploration of
the same run. A run is also seconds of work against Ray's milliseconds per task.

The shared state (the encoded pool's arrays, the algorithms, the budgets) is put in the object
store once; every task gets its reference (wrapped, so Ray does not resolve it per task) and a
worker process deserialises it on its first task only (numpy arrays are read in place from the
object store), as the process pool's initializer does. Each run's seeds come from
(seed, run, algorithm) and the results are collected in run order, so they equal the process
pool's bit for bit; only the measured CPU seconds differ, as between any two runs.

Ray is an optional dependency (``pip install 'iapo[ray]'``: Ray with Ray Client, for
``ray://`` addresses), imported only here and only when asked for. A cluster's nodes need iapo
(the same version) and its dependencies installed: tasks name their function by module.
"""

from __future__ import annotations

import importlib
import logging
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from iapo.algorithms import AlgorithmEntry
from iapo.bench._protocol import ProgressFn, _State, run_single
from iapo.bench._sim import EncodedPool
from iapo.errors import ConfigError

__all__ = [
    "EXECUTORS",
    "PIP_RAY",
    "check_reachable",
    "execute_runs_ray",
    "import_ray",
    "ray_session",
]

PIP_RAY = "pip install 'iapo[ray]'"
EXECUTORS = ("process", "ray")
CONNECT_TIMEOUT_S = 5.0

# per Ray worker process: the state of the benchmark it works for (object id → state)
_WORKER_STATE: dict[str, _State] = {}


def import_ray() -> Any:
    """The ``ray`` module, or a one-line ConfigError naming the extra to install."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ConfigError(
            f"--executor ray needs Ray, which is not installed: {PIP_RAY} (or pip install "
            "'ray[client]>=2.9'), or use --executor process",
            field="executor",
        ) from None


def _split_address(address: str) -> tuple[str, int]:
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(
            f"--address {address!r} is not HOST:PORT, ray://HOST:PORT or auto "
            "(e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001)",
            field="address",
        )
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """A ConfigError unless something listens at ``address`` (Ray itself would retry for
    minutes before giving up on an unreachable cluster)."""
    if address in ("auto", "local"):
        return
    host, port = _split_address(address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"cannot reach the Ray cluster at {address} ({why}): start one with "
            "`ray start --head` there, or fix --address",
            field="address",
        ) from None


@contextmanager
def ray_session(ray: Any, address: str | None, num_cpus: int) -> Iterator[None]:
    """Ray, connected: a session the calling program already opened (``ray.init``) as it is;
    else a new local instance with ``num_cpus`` CPUs (``address`` None) or the cluster at
    ``address``, shut down (disconnected) on exit."""
    if ray.is_initialized():
        yield
        return
    quiet: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.ERROR,
        "log_to_driver": False,
    }
    if address is None:
        ray.init(address="local", num_cpus=num_cpus, **quiet)
    else:
        check_reachable(address)
        if address.startswith("ray://"):  # Ray Client takes no dashboard option
            quiet.pop("include_dashboard")
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
            hint = (
                f"ray:// needs Ray Client: {PIP_RAY} (or pip install 'ray[client]')"
                if "ray[client]" in str(exc)
                else str(exc)
            )
            raise ConfigError(
                f"cannot connect to the Ray cluster at {address}: " + " ".join(hint.split())[:300],
                field="address",
            ) from None
    try:
        yield
    finally:
        ray.shutdown()


def _run_task(run: int, wrapped: list[Any]) -> dict[str, Any]:
    """One run, in a Ray worker: the shared state is fetched once per worker process."""
    ref = wrapped[0]
    key = ref.hex()
    st = _WORKER_STATE.get(key)
    if st is None:
        _WORKER_STATE.clear()  # one benchmark at a time per worker
        st = _WORKER_STATE[key] = importlib.import_module("ray").get(ref)
    return run_single(run, st)


def execute_runs_ray(
    sim: EncodedPool,
    specs: Sequence[AlgorithmEntry],
    budgets: dict[str, tuple[int, ...]],
    runs: int,
    seed: int,
    workers: int,
    progress: ProgressFn | None = None,
    runs_for: dict[str, int] | None = None,
    address: str | None = None,
) -> list[dict[str, Any]]:
    """:func:`~iapo.bench.execute_runs` on Ray: the same runs, in run order, with the same
    numbers. ``address`` None starts a local instance with ``workers`` CPUs; else the cluster
    there (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``) runs them on all its CPUs."""
    ray = import_ray()
    state = _State(sim, tuple(specs), budgets, seed, dict(runs_for or {}))
    t0 = time.perf_counter()
    with ray_session(ray, address, workers):
        state_ref = ray.put(state)
        task = ray.remote(num_cpus=1)(_run_task)
        refs = [task.remote(r, [state_ref]) for r in range(runs)]
        pending, done = list(refs), 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            done += len(ready)
            if progress:
                progress(done, runs, time.perf_counter() - t0)
        out: list[dict[str, Any]] = ray.get(refs)
        del state_ref
    return out
