"""The PostgreSQL sample bank: one bank shared by every run, machine and person that reaches it.

Why psycopg 3 with ``psycopg-pool`` rather than SQLAlchemy Core: the SQLite bank is plain
``sqlite3`` with hand-written SQL, and what makes this bank correct under concurrency is
PostgreSQL's own SQL (``INSERT … ON CONFLICT DO NOTHING`` for first-value-wins samples,
``ON CONFLICT … DO UPDATE … WHERE`` for atomic leases, ``unnest`` arrays for one-statement batches,
advisory locks for the schema); SQLAlchemy would add a dependency and a layer without removing
any of that SQL. The pool gives each thread its own connection, so the bank is thread-safe
without a lock, and replaces connections that die.

Every operation is one transaction (:meth:`PostgresBank.transaction`): on a lost connection (a
restarted server, a dropped network, an administrator terminating the backend), a deadlock or a
serialization failure it is retried on a fresh connection for up to ``retry_limit`` seconds;
every operation is idempotent, so a retry after a commit whose reply was lost changes nothing.
Then, and on any other database failure, it raises a one-line :class:`~iapo.errors.StorageError`
naming the bank (its URL without the password) and the cause. Times (sample ``created``, run
``created``/``updated``, lease expiry) are the server's clock, the one clock every client shares.

The layout and its migrations are in :mod:`iapo.bank._postgres_schema`; a later part of the bank
(a task queue) adds its tables there and its operations through :meth:`PostgresBank.transaction`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool

from iapo.bank._base import PutGroup, RunRecord, SampleBank
from iapo.bank._postgres_queue import PostgresQueue
from iapo.bank._postgres_schema import NOW, migrate
from iapo.bank._postgres_url import mask_url, where
from iapo.bank._sqlite_rows import Codec
from iapo.errors import BankError, StorageError
from iapo.fmt import strict_json
from iapo.types import Sample

T = TypeVar("T")

__all__ = ["CONNECT_TIMEOUT", "POOL_SIZE", "RETRY_LIMIT", "PostgresBank", "one_line"]

#: How long opening a bank waits for the server to answer (seconds).
CONNECT_TIMEOUT = 10.0
#: How long an operation keeps retrying a lost connection or a deadlock (seconds).
RETRY_LIMIT = 60.0
#: Connections a bank object keeps at most (one per thread using it at the same moment).
POOL_SIZE = 8


#: The mark of a stored text that :func:`_escape` wrote as JSON.
_ESCAPED = "\x1b[iapo-json]"

_RETRY = (psycopg.OperationalError, psycopg.errors.TransactionRollback)


def one_line(exc: BaseException) -> str:
    """A database error's message on one line (libpq's have several)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _open_hint(text: str) -> str:
    if "does not exist" in text and "database" in text:
        return "create the database (createdb NAME) or fix its name in the URL"
    if "password" in text or "authentication" in text:
        return "check the user and password (PGPASSWORD or ~/.pgpass keep it out of the URL)"
    return "start the server, or fix the host, port and user in the URL"


def _escape(text: str | None) -> str | None:
    """``text`` as PostgreSQL can store it: a text with a NUL character (which ``text`` columns
    cannot hold), or one that starts with :data:`_ESCAPED`, is stored as that mark and its JSON
    (which writes NUL as ``\\u0000``); any other text as it is."""
    if text is None or ("\x00" not in text and not text.startswith(_ESCAPED)):
        return text
    return _ESCAPED + json.dumps(text)


def _unescape(text: str | None) -> str | None:
    """The text :func:`_escape` stored."""
    if text is None or not text.startswith(_ESCAPED):
        return text
    return str(json.loads(text[len(_ESCAPED) :]))


def _spans(indices: Sequence[int]) -> list[tuple[int, int]]:
    """``indices`` as sorted, disjoint ``(lo, hi)`` runs of consecutive integers."""
    if isinstance(indices, range) and indices.step == 1:
        return [(indices.start, indices.stop - 1)] if len(indices) else []
    out: list[tuple[int, int]] = []
    for i in sorted(set(indices)):
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


class PostgresBank(PostgresQueue, SampleBank):
    """A :class:`SampleBank` in a PostgreSQL database (``postgresql://user@host:port/db``), its
    tables in the schema ``iapo``, created (or migrated) when first opened; any number of
    threads, processes and machines share it. A database whose ``iapo`` schema holds something
    else, or a bank of a newer version, is refused with a :class:`~iapo.errors.BankError` and
    left untouched; so is a server that cannot be reached (one line naming the server, the
    database and the fix). ``pool_size`` bounds the connections this object opens;
    ``retry_limit`` is how long an operation retries a lost connection (see the module)."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = POOL_SIZE,
        retry_limit: float = RETRY_LIMIT,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.url = url
        self.shown = mask_url(url)
        self.retry_limit = float(retry_limit)
        self._closed = False
        timeout = max(1, round(connect_timeout))
        try:
            with psycopg.connect(url, connect_timeout=timeout) as conn:
                found = migrate(conn)
        except psycopg.Error as exc:
            text = one_line(exc)
            raise BankError(
                f"cannot open the PostgreSQL bank, {where(url)} ({text}): {_open_hint(text)}",
                source=self.shown,
                field="storage",
            ) from None
        if isinstance(found, str):
            raise BankError(found, source=self.shown, field="storage")
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={"connect_timeout": timeout},
            open=True,
            name="iapo-bank",
            timeout=self.retry_limit,
        )

    def __repr__(self) -> str:
        return f"PostgresBank({self.shown!r})"

    # -- transactions -------------------------------------------------------------------------
    def transaction(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``work(conn)`` in one transaction on a pooled connection, committed when it returns;
        retried (see the module docstring) on a lost connection or a deadlock, so ``work`` must
        be idempotent. Failures become a one-line :class:`~iapo.errors.StorageError`."""
        if self._closed:
            raise StorageError(f"{self.shown}: sample bank: used after close()")
        deadline = time.monotonic() + self.retry_limit
        delay = 0.0
        while True:
            try:
                timeout = max(0.1, deadline - time.monotonic())
                with self._pool.connection(timeout=timeout) as conn:
                    return work(conn)
            except _RETRY as exc:
                if time.monotonic() + delay < deadline:
                    time.sleep(delay)
                    delay = min(max(2 * delay, 0.05), 1.0)
                    continue
                raise StorageError(
                    f"{self.shown}: sample bank: lost {where(self.url)} for over "
                    f"{self.retry_limit:g} s ({one_line(exc)}): once the server is back, run the "
                    "same command again to resume"
                ) from None
            except psycopg.Error as exc:
                raise StorageError(
                    f"{self.shown}: sample bank: {one_line(exc)}: check the server, then run "
                    "the same command again to resume"
                ) from None

    def close(self) -> None:
        """Close every pooled connection (idempotent)."""
        if not self._closed:
            self._closed = True
            self._pool.close()

    # -- samples ------------------------------------------------------------------------------
    def get(self, dist: str, indices: Sequence[int]) -> dict[int, Sample]:
        """The stored samples of ``dist`` among ``indices``."""
        return self.get_many([(dist, indices)])[0]

    def get_many(self, wanted: Sequence[tuple[str, Sequence[int]]]) -> list[dict[int, Sample]]:
        """The stored samples of each ``(dist, indices)``, in one query: every request's
        indices as runs of consecutive ones, joined to the samples."""
        ords: list[int] = []
        keys: list[str] = []
        los: list[int] = []
        his: list[int] = []
        for n, (dist, indices) in enumerate(wanted):
            for lo, hi in _spans(indices):
                ords.append(n)
                keys.append(dist)
                los.append(lo)
                his.append(hi)
        out: list[dict[int, Sample]] = [{} for _ in wanted]
        if not ords:
            return out
        rows = self.transaction(
            lambda conn: conn.execute(
                "SELECT u.ord, s.idx, s.answer, s.scores, s.cost, s.text, s.usage "
                "FROM unnest(%s::int[], %s::text[], %s::bigint[], %s::bigint[]) "
                "AS u(ord, key, lo, hi) "
                "JOIN iapo.dists d ON d.key = u.key "
                "JOIN iapo.samples s ON s.dist = d.id AND s.idx BETWEEN u.lo AND u.hi",
                (ords, keys, los, his),
            ).fetchall()
        )
        decode = Codec().decode
        for n, idx, answer, scores, cost, text, usage in rows:
            out[n][idx] = decode(_unescape(answer), scores, cost, _unescape(text), usage)
        return out

    def put(self, dist: str, prompt: str, query: str, items: Iterable[tuple[int, Sample]]) -> None:
        """Store samples in one transaction (an index already stored keeps its first value) and
        end their claims."""
        self.put_many([(dist, prompt, query, list(items))])

    def put_many(self, groups: Iterable[PutGroup], *, texts: bool = True) -> None:
        """Store every group's samples in one transaction (an index already stored keeps its
        first value; without their texts if not ``texts``) and end their claims."""
        codec = Codec()
        enc = codec.encode if texts else codec.encode_bare
        dists: dict[str, tuple[str | None, str | None]] = {}
        rows: dict[tuple[str, int], tuple[Any, ...]] = {}
        for dist, prompt, query, items in groups:
            for i, s in items:
                dists.setdefault(dist, (_escape(prompt), _escape(query)))
                if (dist, int(i)) not in rows:  # the first value in the batch wins
                    answer, scores, cost, text, usage = enc(s)
                    rows[dist, int(i)] = (_escape(answer), scores, cost, _escape(text), usage)
        if not rows:
            return
        keys = sorted(dists)  # rows in one order in every transaction: fewer deadlocks
        order = sorted(rows)
        cols: list[list[Any]] = [[] for _ in range(7)]
        for key in order:
            for col, value in zip(cols, (*key, *rows[key]), strict=True):
                col.append(value)

        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                "INSERT INTO iapo.dists (key, prompt, query) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]) "
                "ON CONFLICT (key) DO NOTHING",
                (keys, [dists[k][0] for k in keys], [dists[k][1] for k in keys]),
            )
            conn.execute(
                "INSERT INTO iapo.samples (dist, idx, answer, scores, cost, text, usage, created) "
                f"SELECT d.id, u.idx, u.answer, u.scores, u.cost, u.text, u.usage, {NOW} "
                "FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], "
                "%s::float8[], %s::text[], %s::text[]) "
                "WITH ORDINALITY AS u(key, idx, answer, scores, cost, text, usage, n) "
                "JOIN iapo.dists d ON d.key = u.key ORDER BY u.n "
                "ON CONFLICT (dist, idx) DO NOTHING",
                cols,
            )
            conn.execute(
                "DELETE FROM iapo.claims c USING unnest(%s::text[], %s::bigint[]) AS u(key, idx) "
                "WHERE c.dist = u.key AND c.idx = u.idx",
                cols[:2],
            )

        self.transaction(work)

    # -- claims -------------------------------------------------------------------------------
    def claim(self, dist: str, indices: Sequence[int], owner: str, ttl: float) -> list[int]:
        """Lease the free indices (neither stored nor leased by another live owner)."""
        want = sorted({int(i) for i in indices})
        if not want:
            return []

        def work(conn: psycopg.Connection[Any]) -> set[int]:
            got = {
                r[0]
                for r in conn.execute(
                    "INSERT INTO iapo.claims AS c (dist, idx, owner, expires) "
                    f"SELECT %(dist)s, u.idx, %(owner)s, {NOW} + %(ttl)s "
                    "FROM unnest(%(idx)s::bigint[]) AS u(idx) WHERE NOT EXISTS ("
                    "SELECT 1 FROM iapo.samples s JOIN iapo.dists d ON d.id = s.dist "
                    "WHERE d.key = %(dist)s AND s.idx = u.idx) ORDER BY u.idx "
                    "ON CONFLICT (dist, idx) DO UPDATE "
                    "SET owner = excluded.owner, expires = excluded.expires "
                    f"WHERE c.owner = excluded.owner OR c.expires <= {NOW} "
                    "RETURNING c.idx",
                    {"dist": dist, "owner": owner, "ttl": float(ttl), "idx": want},
                )
            }
            if got:  # stored by a writer that committed while this waited for its lease: drop
                stored = conn.execute(  # (a new statement: it sees that commit)
                    "DELETE FROM iapo.claims c USING iapo.samples s, iapo.dists d "
                    "WHERE c.dist = %s AND c.owner = %s AND c.idx = ANY(%s::bigint[]) "
                    "AND d.key = c.dist AND s.dist = d.id AND s.idx = c.idx RETURNING c.idx",
                    (dist, owner, sorted(got)),
                ).fetchall()
                got.difference_update(r[0] for r in stored)
            return got

        got = self.transaction(work)
        return [i for i in dict.fromkeys(indices) if i in got]

    def holders(self, dist: str, indices: Sequence[int]) -> dict[int, str]:
        """The owners of the live leases among ``indices``."""
        if not indices:
            return {}
        rows = self.transaction(
            lambda conn: conn.execute(
                "SELECT idx, owner FROM iapo.claims "
                f"WHERE dist = %s AND idx = ANY(%s::bigint[]) AND expires > {NOW}",
                (dist, sorted({int(i) for i in indices})),
            ).fetchall()
        )
        return {r[0]: r[1] for r in rows}

    def release(self, dist: str, indices: Sequence[int], owner: str) -> None:
        """End ``owner``'s leases on ``indices``."""
        if not indices:
            return
        self.transaction(
            lambda conn: conn.execute(
                "DELETE FROM iapo.claims "
                "WHERE dist = %s AND owner = %s AND idx = ANY(%s::bigint[])",
                (dist, owner, sorted({int(i) for i in indices})),
            )
        )

    # -- runs ---------------------------------------------------------------------------------
    def start_run(
        self,
        run_id: str,
        name: str,
        budget: int,
        config: dict[str, Any],
        data: str | None = None,
    ) -> None:
        self.transaction(
            lambda conn: conn.execute(
                "INSERT INTO iapo.runs (id, name, status, created, updated, budget, config, data) "
                f"VALUES (%s, %s, 'running', {NOW}, {NOW}, %s, %s::json, %s) "
                "ON CONFLICT (id) DO UPDATE SET status = 'running', updated = excluded.updated, "
                "data = coalesce(excluded.data, iapo.runs.data)",
                (run_id, name, int(budget), strict_json(config), data),
            )
        )

    def update_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        spent: int | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        sets = [f"updated = {NOW}"]
        args: list[Any] = []
        if status is not None:
            sets.append("status = %s")
            args.append(status)
        if spent is not None:
            sets.append("spent = %s")
            args.append(int(spent))
        if result is not None:
            sets.append("result = %s::json")
            args.append(strict_json(result))
        sql = f"UPDATE iapo.runs SET {', '.join(sets)} WHERE id = %s"
        self.transaction(lambda conn: conn.execute(sql.encode(), (*args, run_id)))

    def runs(self) -> list[RunRecord]:
        def work(conn: psycopg.Connection[Any]) -> list[RunRecord]:
            cur = conn.execute(  # json columns come back decoded: fresh copies every call
                "SELECT id, name, status, created, updated, budget, spent, config, result, data "
                "FROM iapo.runs ORDER BY created, id"
            )
            cols = [d.name for d in cur.description or ()]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

        return self.transaction(work)
