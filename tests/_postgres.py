"""A real PostgreSQL server for the tests: the one ``$IAPO_TEST_POSTGRES`` names, or a throwaway
cluster (``initdb`` into a temporary folder, ``pg_ctl start`` on a free loopback port, its Unix
socket in that folder) that lives as long as the test session.

PostgreSQL refuses to run as root: as root, the cluster belongs to the ``postgres`` user if there
is one (Debian's package creates it), else to ``nobody``. Where no server can be had, the tests
that need one are skipped with the install line, except under ``$CI``, where they fail.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

INSTALL = (
    "install PostgreSQL (Debian: apt-get install postgresql) and pip install 'iapo[postgres]', "
    "or set IAPO_TEST_POSTGRES=postgresql://user@host:port/postgres (a user who may create "
    "databases)"
)

#: Settings of the throwaway cluster: nothing it holds needs to survive a crash.
FAST = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
    "-c listen_addresses=127.0.0.1"
)


def unavailable(why: str) -> NoReturn:
    """Skip the test (fail it under ``$CI``): no PostgreSQL server to test against."""
    message = f"no PostgreSQL server for the tests ({why}): {INSTALL}"
    if os.environ.get("CI"):
        pytest.fail(message + " [CI requires it]", pytrace=False)
    pytest.skip(message)


def find_binary(name: str) -> str | None:
    """``name`` on PATH, else in Debian's ``/usr/lib/postgresql/<version>/bin`` (newest)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return versions[-1] if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A throwaway cluster in ``root`` (data in ``root/data``), run by ``user``."""

    root: Path
    port: int
    user: str | None  # the OS user that runs it (None: the current one)
    pg_ctl: str

    @property
    def url(self) -> str:
        return f"postgresql://iapo@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            user=self.user,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
            check=False,
        )

    def start(self) -> str | None:
        """Start it; None, or why it did not start."""
        opts = f"-p {self.port} -k {self.root} {FAST}"
        data = str(self.root / "data")
        log = str(self.root / "log")
        got = self._run(self.pg_ctl, "-D", data, "-l", log, "-w", "-t", "60", "-o", opts, "start")
        if got.returncode == 0:
            return None
        tail = Path(log).read_text(errors="replace")[-400:] if Path(log).exists() else ""
        return f"pg_ctl start failed: {got.stderr.strip()[-300:]} {tail}".strip()

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.root / "data"), "-m", "immediate", "stop")


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    return None


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Start a cluster for the session; yield its admin URL; stop and delete it after."""
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        unavailable("initdb and pg_ctl not found on PATH nor in /usr/lib/postgresql/*/bin")
    user = _server_user()
    if os.geteuid() == 0 and user is None:
        unavailable("running as root, and no 'postgres' or 'nobody' user to run the server")
    root = Path(tempfile.mkdtemp(prefix="iapo-pg-"))
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        cluster = Cluster(root, _free_port(), user, pg_ctl)
        data = str(root / "data")
        init = cluster._run(
            initdb, "-D", data, "-U", "iapo", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        if init.returncode != 0:
            unavailable(f"initdb failed: {init.stderr.strip()[-300:]}")
        why = cluster.start()
        for _ in range(3):  # the free port was taken in between: another one
            if why is None or "already in use" not in why:
                break
            cluster.port = _free_port()
            why = cluster.start()
        if why is not None:
            unavailable(why)
        try:
            yield cluster.url
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def server() -> Iterator[str]:
    """The admin URL of a server for the session (see the module docstring)."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        unavailable(f"psycopg is not installed: {exc}")
    given = os.environ.get("IAPO_TEST_POSTGRES")
    if given:
        yield given
        return
    with throwaway_cluster() as url:
        yield url


def with_database(admin_url: str, name: str) -> str:
    """``admin_url`` with its database replaced by ``name``."""
    base, _, query = admin_url.partition("?")
    head, _, _ = base.rpartition("/")
    if head.endswith("/"):  # postgresql://host (no database part): keep the host
        head = base
    return f"{head}/{name}" + (f"?{query}" if query else "")


def create_database(admin_url: str) -> tuple[str, str]:
    """A new, empty database: ``(name, url)``."""
    import psycopg

    name = f"iapo_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    return name, with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop a test database, ending whatever connections still use it."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
