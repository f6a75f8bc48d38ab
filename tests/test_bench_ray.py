"""``iapo bench --executor ray``: a real local Ray instance (2 CPUs, started once for the module)
gives the process pool's numbers bit for bit, through the library and through the CLI (a
separate driver process connecting with ``--address``); Ray missing or a cluster unreachable is
one line and exit 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import iapo
from iapo.bench import BenchResult, run_benchmark
from iapo.cli import main

try:
    import ray
except ImportError:  # an optional extra, not in dev: .ci/run installs it, so CI must have it
    if os.environ.get("CI"):
        raise
    ray = None

ENV = "mcqa-gpt35"  # 5 prompts × 100 queries, N_max 10: every algorithm feasible at 300
KW: dict[str, Any] = {
    "algorithms": ["psst_any", "psst", "ucb", "triple_n1", "triple_nrandom", "uniform"],
    "budgets": [300, 1000],
    "runs": 5,
    "seed": 7,
}
CLI_ARGS = [
    "bench",
    "--env",
    ENV,
    "--algorithms",
    ",".join(KW["algorithms"]),
    "--budgets",
    "300,1000",
    "--runs",
    "5",
    "--seed",
    "7",
    "--quiet",
    "--no-plot",
]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A local Ray instance with 2 CPUs for this module; yields its address."""
    if ray is None:
        pytest.skip("Ray is not installed: pip install 'iapo[ray]'")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def client_address(ray_cluster: str) -> Iterator[str]:
    """A Ray Client server (``ray://``) in front of the module's instance, as a cluster's head
    node runs one; stopped (its process group, which this fixture started) afterwards."""
    port = free_port()
    cmd = [sys.executable, "-m", "ray.util.client.server", "--address", ray_cluster]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--mode", "legacy"]
    server = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert server.poll() is None, "the Ray Client server exited"
                time.sleep(0.1)
        yield f"ray://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture(scope="module")
def by_process() -> BenchResult:
    return run_benchmark(ENV, workers=2, **KW)


def numbers(data: dict[str, Any]) -> dict[str, Any]:
    """Every number of a result but the measured ones (CPU seconds, wall time)."""

    def drop_cpu(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: drop_cpu(v) for k, v in x.items() if not k.startswith("cpu_s")}
        if isinstance(x, list):
            return [drop_cpu(v) for v in x]
        return x

    return drop_cpu({k: data[k] for k in ("env", "algorithms", "summary", "runs")})


def test_ray_gives_the_process_pools_numbers(ray_cluster: str, by_process: BenchResult) -> None:
    seen: list[tuple[int, int]] = []
    res = run_benchmark(
        ENV, workers=2, executor="ray", progress=lambda d, t, _: seen.append((d, t)), **KW
    )
    assert numbers(res.data) == numbers(by_process.data)
    assert [r["run"] for r in res.data["runs"]] == list(range(5))
    # the comparison has teeth: every algorithm ran at both budgets, with spread across runs
    acr = by_process.acr("psst_any", 1000)
    assert len(acr) == 5 and len(set(acr)) > 1
    assert all(set(r["results"]["ucb"]) == {"300", "1000"} for r in res.data["runs"])
    assert seen == [(i, 5) for i in range(1, 6)]  # progress once per finished run
    assert res.data["protocol"]["executor"] == "ray"
    assert by_process.data["protocol"]["executor"] == "process"
    assert ray.is_initialized()  # a session the caller opened stays open


@pytest.mark.parametrize("how", ["gcs", "client"])
def test_cli_executor_ray_connects_to_a_cluster_by_address(
    how: str, request: pytest.FixtureRequest, by_process: BenchResult, tmp_path: Path
) -> None:
    """A second driver process (the real CLI) connects to the module's instance by address:
    its GCS address (HOST:PORT, a driver on the cluster's network) or through Ray Client
    (ray://HOST:PORT, a driver anywhere)."""
    address = request.getfixturevalue("ray_cluster" if how == "gcs" else "client_address")
    env = {**os.environ, "PYTHONPATH": str(Path(iapo.__file__).parents[1])}
    args = [*CLI_ARGS, "--out", str(tmp_path), "--executor", "ray", "--address", address]
    proc = subprocess.run(
        [sys.executable, "-m", "iapo.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / f"{ENV}.json").read_text())
    # the saved JSON leaves the chosen arms out; compare what it keeps
    kept = json.loads(by_process.to_json())
    assert numbers(data) == numbers(kept)
    assert f"--executor ray --address {address}" in data["command"]
    assert data["protocol"]["executor"] == "ray"


def test_cli_executor_ray_in_process(
    ray_cluster: str, by_process: BenchResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main([*CLI_ARGS, "--out", str(tmp_path), "--executor", "ray", "--json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert numbers(data) == numbers(json.loads(by_process.to_json()))


def test_missing_ray_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    assert main([*CLI_ARGS, "--out", str(tmp_path), "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "needs Ray" in err and "pip install 'iapo[ray]'" in err
    assert not (tmp_path / f"{ENV}.json").exists()


def test_address_without_ray_executor_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*CLI_ARGS, "--address", "auto"]) == 2
    err = capsys.readouterr().err
    assert "--address applies to --executor ray" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("address", "says"),
    [
        (None, "cannot reach the Ray cluster at 127.0.0.1:"),  # nothing listens there
        ("ray://nowhere", "is not HOST:PORT"),
    ],
)
def test_unusable_address_is_one_line_and_exit_2(
    tmp_path: Path, address: str | None, says: str
) -> None:
    """In a fresh process (no Ray session open): Ray itself would retry for minutes."""
    addr = address or f"127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(Path(iapo.__file__).parents[1])}
    args = [*CLI_ARGS, "--out", str(tmp_path), "--executor", "ray", "--address", addr]
    proc = subprocess.run(
        [sys.executable, "-m", "iapo.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert says in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
