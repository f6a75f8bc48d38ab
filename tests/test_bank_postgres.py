"""The PostgreSQL sample bank against a real server (tests/_postgres.py starts one): the bank
contract (BankSuite), its schema versions, claims across processes, lost connections, and the
CLI on a postgresql:// URL, never showing the URL's password."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _postgres
import pytest
from conftest import MCQA, REPO

from iapo.bank import BANK_SCHEMA, PostgresBank, SampleBank, mask_url, open_bank
from iapo.cli import main
from iapo.errors import BankError, StorageError
from iapo.testing import BankSuite
from iapo.types import Sample

DIST = "model=m|prompt=p|query=q"


def _sample(tag: str) -> Sample:
    return Sample(answer=tag, scores={"s": 1.0}, cost=1.0)


def _sql(url: str, *statements: str) -> list[Any]:
    """Run ``statements`` on ``url`` (autocommit); the last one's rows, if it returns any."""
    import psycopg

    rows: list[Any] = []
    with psycopg.connect(url, autocommit=True) as conn:
        for stmt in statements:
            cur = conn.execute(stmt.encode())
            rows = cur.fetchall() if cur.description else []
    return rows


class TestPostgresBank(BankSuite):
    persistent = True

    @pytest.fixture(autouse=True)
    def _server(self, postgres_server: str) -> Iterator[None]:
        self.admin = postgres_server
        self.made: list[str] = []
        yield
        for name in self.made:
            _postgres.drop_database(self.admin, name)

    @pytest.fixture
    def storage(self, postgres_url: str) -> str:
        return postgres_url

    def open(self, storage: str) -> SampleBank:
        bank = open_bank(storage)
        assert isinstance(bank, PostgresBank)
        return bank

    def foreign_storages(self, tmp_path: Path) -> list[str]:
        """A database whose ``iapo`` schema holds another application's tables, and a bank of
        a newer schema version."""
        urls = []
        for _ in range(2):
            name, url = _postgres.create_database(self.admin)
            self.made.append(name)
            urls.append(url)
        _sql(urls[0], "CREATE SCHEMA iapo", "CREATE TABLE iapo.notes (body text)")
        open_bank(urls[1]).close()
        _sql(urls[1], f"UPDATE iapo.meta SET value = '{BANK_SCHEMA + 1}' WHERE key = 'schema'")
        return urls


# -- schema -------------------------------------------------------------------------------------
def _tables(url: str) -> list[tuple[str, str]]:
    return _sql(
        url,
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
    )


def test_an_empty_database_gets_the_bank_in_schema_iapo_beside_other_tables(
    postgres_url: str,
) -> None:
    _sql(postgres_url, "CREATE TABLE public.theirs (x int)", "INSERT INTO theirs VALUES (7)")
    with open_bank(postgres_url) as bank:
        bank.put(DIST, "p", "q", [(0, _sample("a"))])
    assert _tables(postgres_url) == [
        ("iapo", "claims"),
        ("iapo", "dists"),
        ("iapo", "meta"),
        ("iapo", "run_inputs"),
        ("iapo", "runs"),
        ("iapo", "samples"),
        ("iapo", "tasks"),
        ("iapo", "workers"),
        ("public", "theirs"),
    ]
    assert _sql(postgres_url, "SELECT value FROM iapo.meta") == [(str(BANK_SCHEMA),)]
    assert _sql(postgres_url, "SELECT key, prompt, query FROM iapo.dists") == [(DIST, "p", "q")]
    assert _sql(postgres_url, "SELECT x FROM theirs") == [(7,)]
    _sql(postgres_url, "CREATE SCHEMA other")  # an empty, pre-made `iapo` schema is fine too


def test_a_pre_made_empty_iapo_schema_is_used(postgres_url: str) -> None:
    _sql(postgres_url, "CREATE SCHEMA iapo")
    with open_bank(postgres_url) as bank:
        bank.start_run("r", "r", 1, {})
        assert [r["id"] for r in bank.runs()] == ["r"]


def test_a_newer_bank_is_refused_in_one_line_and_left_as_it_was(postgres_url: str) -> None:
    with open_bank(postgres_url) as bank:
        bank.put(DIST, "p", "q", [(0, _sample("kept"))])
    newer = str(BANK_SCHEMA + 1)
    _sql(postgres_url, f"UPDATE iapo.meta SET value = '{newer}'")
    before = _sql(postgres_url, "SELECT * FROM iapo.samples")
    with pytest.raises(BankError) as err:
        open_bank(postgres_url)
    msg = str(err.value)
    assert f"bank schema version {newer}" in msg and "\n" not in msg
    assert _sql(postgres_url, "SELECT value FROM iapo.meta") == [(newer,)]
    assert _sql(postgres_url, "SELECT * FROM iapo.samples") == before


def test_a_migration_step_runs_once_and_an_added_step_upgrades_an_older_bank(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook a later part of the bank (a task queue) uses: a step appended to STEPS is
    applied to a bank of the version before, once, keeping its samples."""
    from iapo.bank import _postgres_schema as schema  # the module a queue's step goes in

    with open_bank(postgres_url) as bank:
        bank.put(DIST, "p", "q", [(0, _sample("kept"))])
    step = (schema.LATEST + 1, "CREATE TABLE iapo.extra (x int); INSERT INTO iapo.extra VALUES (1)")
    monkeypatch.setattr(schema, "STEPS", [*schema.STEPS, step])
    monkeypatch.setattr(schema, "LATEST", step[0])
    for _ in range(2):  # the second open finds it current: the step is not run again
        with PostgresBank(postgres_url) as bank:
            assert bank.get(DIST, [0]) == {0: _sample("kept")}
    assert _sql(postgres_url, "SELECT x FROM iapo.extra") == [(1,)]
    assert _sql(postgres_url, "SELECT value FROM iapo.meta") == [(str(step[0]),)]


def test_processes_opening_one_new_database_at_once_create_the_bank_once(
    postgres_url: str,
) -> None:
    script = (
        "import sys\nfrom iapo.bank import open_bank\n"
        "with open_bank(sys.argv[1]) as b:\n    b.start_run(sys.argv[2], 'n', 1, {})\n"
    )
    procs = [_python(script, postgres_url, f"run{i}") for i in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with open_bank(postgres_url) as bank:
        assert sorted(r["id"] for r in bank.runs()) == [f"run{i}" for i in range(4)]


def test_texts_with_nul_characters_round_trip(postgres_url: str) -> None:
    """PostgreSQL text cannot hold NUL, which an endpoint may send: such texts (and texts that
    look like the escaped form) are stored escaped and come back as they were."""
    odd = {
        0: Sample(answer="a\x00b", scores={"s\x00": 1.0}, text="\x00", usage={"n\x00": 1}),
        1: Sample(answer='\x1b[iapo-json]"x"', text="\x1b[iapo-json]"),
        2: Sample(answer="plain", text="\x1b not the mark"),
    }
    with open_bank(postgres_url) as bank:
        bank.put("d\u00e9", "p\x00", "q\x00", odd.items())
        assert bank.get("d\u00e9", range(3)) == odd
    assert _sql(postgres_url, "SELECT answer FROM iapo.samples WHERE idx = 2") == [("plain",)]


# -- claims across processes --------------------------------------------------------------------
def _python(script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), *sys.path])}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


CLAIMER = """
import json, sys
from iapo.bank import open_bank
from iapo.types import Sample
url, owner = sys.argv[1], sys.argv[2]
got = []
with open_bank(url) as bank:
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()
    for lo in range(0, 300, 7):
        got += bank.claim("d", range(lo, lo + 11), owner, 60.0)
        if lo % 21 == 0:
            bank.put("d", "p", "q", [(i, Sample(owner)) for i in got[-2:]])
print(json.dumps(got))
"""


def test_two_processes_claiming_at_once_never_get_one_index_twice(postgres_url: str) -> None:
    open_bank(postgres_url).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, postgres_url, f"proc{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), *sys.path])},
        )
        for i in range(2)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:  # both start claiming together
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    got = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        got.append(set(json.loads(out)))
    assert not got[0] & got[1]
    assert got[0] | got[1] == set(range(305))
    with open_bank(postgres_url) as bank:  # what each stored is its own, and kept its lease off
        stored = bank.get("d", range(305))
        assert stored and all(s.answer == f"proc{int(i in got[1])}" for i, s in stored.items())
        assert not set(bank.holders("d", range(305))) & set(stored)


def test_a_claim_never_returns_an_index_stored_while_it_waited(postgres_url: str) -> None:
    """A writer holds index 0's lease row locked (its put not committed yet) while another
    owner's claim of a lapsed lease waits on it: once the put commits, the claim must not hand
    out the now stored index."""
    import psycopg

    with open_bank(postgres_url) as bank:
        assert bank.claim(DIST, [0, 1], "writer", -1.0) == [0, 1]  # lapsed at once
        bank.put(DIST, "p", "q", [(5, _sample("x"))])  # the distribution exists
        writer = psycopg.connect(postgres_url)
        writer.execute(
            "INSERT INTO iapo.samples SELECT id, 0, 'w', '{}', 0, NULL, NULL, 0 "
            "FROM iapo.dists WHERE key = %s",
            (DIST,),
        )
        writer.execute("DELETE FROM iapo.claims WHERE dist = %s AND idx = 0", (DIST,))
        got: list[list[int]] = []
        claimer = threading.Thread(target=lambda: got.append(bank.claim(DIST, [0, 1], "b", 60)))
        claimer.start()
        database = postgres_url.rsplit("/", 1)[1]
        for _ in range(6000):  # until the claim waits for the writer's row lock
            waiting = _sql(
                postgres_url,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                f"AND datname = '{database}'",
            )
            if waiting[0][0]:
                break
            time.sleep(0.01)
        else:
            raise AssertionError("the claim never waited for the writer")
        writer.commit()
        writer.close()
        claimer.join(60)
        assert got == [[1]]
        assert bank.holders(DIST, [0, 1]) == {1: "b"}


# -- lost connections ---------------------------------------------------------------------------
def _backends(url: str, database: str) -> list[int]:
    return [
        r[0]
        for r in _sql(
            url,
            "SELECT pid FROM pg_stat_activity WHERE datname = "
            f"'{database}' AND pid <> pg_backend_pid()",
        )
    ]


def test_a_terminated_connection_is_replaced_and_the_call_succeeds(postgres_url: str) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    with open_bank(postgres_url) as bank:
        bank.put(DIST, "p", "q", [(0, _sample("a"))])
        pids = _backends(postgres_url, database)
        assert pids
        _sql(postgres_url, *(f"SELECT pg_terminate_backend({pid})" for pid in pids))
        bank.put(DIST, "p", "q", [(1, _sample("b"))])  # on a new connection
        assert bank.get(DIST, [0, 1]) == {0: _sample("a"), 1: _sample("b")}
        assert set(_backends(postgres_url, database)).isdisjoint(pids)


class _Proxy:
    """A TCP proxy on loopback to the server, that can cut every connection and refuse more."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks: list[socket.socket] = []
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self, *, refuse: bool) -> None:
        self.open = not refuse
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self.socks.clear()

    def close(self) -> None:
        self.cut(refuse=True)
        self.listener.close()


def test_a_dropped_network_is_retried_then_a_one_line_storage_error(postgres_url: str) -> None:
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(postgres_url)
    proxy = _Proxy(int(str(info["port"])))
    url = postgres_url.replace(f":{info['port']}/", f":{proxy.port}/").replace(
        "iapo@", "iapo:s3cret-pw@"
    )
    try:
        bank = PostgresBank(url, retry_limit=3.0)
        bank.put(DIST, "p", "q", [(0, _sample("a"))])
        proxy.cut(refuse=False)  # a blip: the connection drops, a new one gets through
        assert bank.get(DIST, [0]) == {0: _sample("a")}
        proxy.cut(refuse=True)  # the network stays down
        with pytest.raises(StorageError) as err:
            bank.get(DIST, [0])
        msg = str(err.value)
        assert "\n" not in msg and "s3cret-pw" not in msg and "***" in msg
        assert "run the same command again" in msg
        proxy.open = True  # back: the same bank object works again
        bank.retry_limit = 120.0  # (the pool's reconnection backs off)
        assert bank.get(DIST, [0]) == {0: _sample("a")}
        bank.close()
        bank.close()
    finally:
        proxy.close()


# -- URLs and the CLI ---------------------------------------------------------------------------
def test_mask_url_hides_every_password_and_where_names_the_database() -> None:
    from iapo.bank._postgres_url import where

    assert mask_url("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert mask_url("postgres://u:p%40ss@h/db?password=x&sslmode=require") == (
        "postgres://u:***@h/db?password=***&sslmode=require"
    )
    assert mask_url("postgresql://u@h1,h2/db") == "postgresql://u@h1,h2/db"
    assert mask_url("postgresql://h/db?password=x") == "postgresql://h/db?password=***"
    assert mask_url("postgresql://a:b:c@h/d") == "postgresql://a:***@h/d"
    assert mask_url("sqlite:///x:y@z.sqlite") == "sqlite:///x:y@z.sqlite"
    assert where("postgresql://u:pw@h:5/db") == "database 'db' on h:5"
    assert where("postgres:///db?host=/run/pg&port=6") == "database 'db' on /run/pg port 6"
    assert where("postgresql://alice@h") == "database 'alice' on h"
    assert where("postgresql://") == "database '(your user name)' on the local socket"


def test_an_unreachable_server_is_one_line_naming_it_without_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://team:hunter2@127.0.0.1:{port}/shared"
    with pytest.raises(BankError) as err:
        open_bank(url)
    msg = str(err.value)
    assert "hunter2" not in msg and "\n" not in msg
    assert f"database 'shared' on 127.0.0.1:{port}" in msg and "start the server" in msg
    for argv in (["runs", "--storage", url], ["show", "x", "--storage", url]):
        assert main(argv) == 2
        out, errtext = capsys.readouterr()
        assert errtext.count("\n") == 1 and "hunter2" not in errtext + out
        assert "Traceback" not in errtext


def test_a_missing_database_names_the_fix(postgres_server: str) -> None:
    url = _postgres.with_database(postgres_server, "no_such_db")
    with pytest.raises(BankError, match=r"'no_such_db'.*createdb"):
        open_bank(url)


def test_without_psycopg_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "iapo.bank._postgres", None)  # import fails
    with pytest.raises(BankError, match=r"pip install 'iapo\[postgres\]'") as err:
        open_bank("postgres://u:pw-x@db.example/bank")
    assert "pw-x" not in str(err.value) and "\n" not in str(err.value)


@pytest.fixture
def password_url(postgres_url: str) -> Iterator[str]:
    """``postgres_url`` as a role with a password (in the URL) that owns the database."""
    role, secret = f"iapo_pw_{uuid.uuid4().hex[:8]}", f"pw-secret-{uuid.uuid4().hex[:8]}"
    database = postgres_url.rsplit("/", 1)[1]
    _sql(
        postgres_url,
        f"CREATE ROLE {role} LOGIN PASSWORD '{secret}'",
        f'ALTER DATABASE "{database}" OWNER TO {role}',
    )
    user = postgres_url.split("://", 1)[1].split("@", 1)[0]
    yield postgres_url.replace(f"://{user}@", f"://{role}:{secret}@")
    _sql(postgres_url, f"REASSIGN OWNED BY {role} TO CURRENT_USER", f"DROP OWNED BY {role}")
    _sql(postgres_url, f"DROP ROLE {role}")


def test_run_runs_show_and_report_work_on_a_postgres_bank(
    password_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = password_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    url = password_url.replace("postgresql://", "postgres://")
    assert main(["runs", "--storage", url]) == 0  # a new bank
    assert capsys.readouterr().out == f"no runs in {mask_url(url)}\n"
    run_dir = tmp_path / "run"
    assert main(["run", str(MCQA), "--storage", url, "--run-dir", str(run_dir), "--quiet"]) == 0
    result = json.loads((run_dir / "result.json").read_text())
    capsys.readouterr()
    assert main(["runs", "--storage", url]) == 0
    listing = capsys.readouterr().out
    assert "mcqa" in listing and "done" in listing
    assert main(["runs", "--storage", url, "--json"]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["id"] == result["run_id"] and rec["storage"] == mask_url(url)
    assert main(["show", "mcqa", "--storage", url]) == 0
    shown = capsys.readouterr().out
    assert f"run {result['run_id']}" in shown
    assert main(["show", "no-such-run", "--storage", url]) == 2
    assert secret not in capsys.readouterr().err
    out = tmp_path / "report"
    assert main(["report", result["run_id"][:8], "--storage", url, "--out", str(out)]) == 0
    assert (out / "report.html").is_file()
    again = tmp_path / "again"  # a second run on the same bank draws nothing new
    assert main(["run", str(MCQA), "--storage", url, "--run-dir", str(again), "--quiet"]) == 0
    second = json.loads((again / "result.json").read_text())
    assert second["policy"] == result["policy"]
    assert second["account"]["drawn"] == 0
    files = [
        f for d in (run_dir, again, out) for f in d.rglob("*") if f.suffix in (".json", ".html")
    ]
    texts = [listing, shown, capsys.readouterr().out, *(f.read_text() for f in files)]
    assert not [t for t in texts if secret in t]


def test_record_on_a_postgres_bank_pays_each_completion_once(
    postgres_url: str, tmp_path: Path, secret: str
) -> None:
    """``iapo record`` against the fake OpenAI server, twice on one PostgreSQL bank: the second
    recording is served from the bank, request for request."""
    from live_helpers import script, write_config

    from iapo.pools import load_pool
    from iapo.testing.fake_openai import FakeOpenAIServer

    with FakeOpenAIServer(script, api_key=secret) as srv:
        cfg = write_config(tmp_path, srv.base_url)
        for name in ("one", "two"):
            out = tmp_path / f"{name}.jsonl"
            args = ["record", str(cfg), "-k", "2", "--out", str(out), "--queries", "3"]
            assert main([*args, "--quiet", "--storage", postgres_url]) == 0
        assert srv.completions_served == 2 * 3 * 2
    one, two = (load_pool(tmp_path / f"{name}.jsonl") for name in ("one", "two"))
    assert one.cells.keys() == two.cells.keys()
    for key, cell in one.cells.items():
        assert [o.text for o in two.cells[key].outcomes] == [o.text for o in cell.outcomes]
    with open_bank(postgres_url) as bank:
        assert len(_sql(postgres_url, "SELECT 1 FROM iapo.samples")) == 2 * 3 * 2
        assert not bank.holders("any", [0])


def test_without_a_server_the_tests_skip_with_the_install_line_but_fail_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_postgres, "find_binary", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    install = r"apt-get install postgresql.*iapo\[postgres\]"
    with pytest.raises(pytest.skip.Exception, match=install), _postgres.throwaway_cluster():
        pass
    monkeypatch.setenv("CI", "true")
    with (
        pytest.raises(pytest.fail.Exception, match="CI requires it"),
        _postgres.throwaway_cluster(),
    ):
        pass
