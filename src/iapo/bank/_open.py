"""Storage URLs: which bank a URL names, and opening it."""

from __future__ import annotations

from pathlib import Path

from iapo.bank._base import SampleBank
from iapo.bank._memory import MEMORY_URL, MemoryBank
from iapo.bank._postgres_url import PIP_POSTGRES, is_postgres_url, mask_url
from iapo.bank._sqlite import SQLiteBank
from iapo.errors import BankError

__all__ = ["open_bank", "sqlite_path"]

_SQLITE = "sqlite:///"


def sqlite_path(url: str) -> Path | None:
    """The SQLite file a storage URL names (``sqlite:///path`` or a plain path); None for
    ``memory:`` and for any other ``scheme://`` URL."""
    if url == MEMORY_URL:
        return None
    if url.startswith(_SQLITE):
        return Path(url[len(_SQLITE) :])
    if "://" in url:
        return None
    return Path(url)


def open_bank(url: str) -> SampleBank:
    """Open the bank a storage URL names: ``sqlite:///path/to/bank.sqlite`` or a plain path (a
    :class:`SQLiteBank`, created if missing), ``postgresql://user@host:port/db`` or
    ``postgres://…`` (a :class:`~iapo.bank.PostgresBank`, created in the database if missing;
    needs the ``postgres`` extra), or ``memory:`` (a new, empty :class:`MemoryBank` each time).
    Raises :class:`~iapo.errors.BankError` (one line, never the URL's password) for another
    scheme, a missing extra, a server that cannot be reached, or storage that cannot be a
    bank."""
    if url == MEMORY_URL:
        return MemoryBank()
    if is_postgres_url(url):
        return _open_postgres(url)
    path = sqlite_path(url)
    if path is None:
        scheme = url.split("://", 1)[0]
        raise BankError(
            f"unsupported storage scheme {scheme!r}: use sqlite:///path/to/bank.sqlite "
            f"(or a plain path), postgresql://user@host/db, or {MEMORY_URL} for a bank that "
            "lasts one run",
            field="storage",
        )
    return SQLiteBank(path)


def _open_postgres(url: str) -> SampleBank:
    try:
        from iapo.bank._postgres import PostgresBank
    except ImportError as exc:
        raise BankError(
            f"a PostgreSQL bank needs the 'postgres' extra ({exc}): {PIP_POSTGRES}",
            source=mask_url(url),
            field="storage",
        ) from None
    return PostgresBank(url)
