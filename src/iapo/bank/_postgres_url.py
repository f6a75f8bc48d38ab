"""PostgreSQL storage URLs without psycopg: recognising them, and showing them without secrets.

A URL's password must never reach an error message, ``iapo runs`` or a result file: every place
that shows a storage URL shows :func:`mask_url` of it. (Better still, keep the password out of
the URL: libpq reads ``PGPASSWORD`` and ``~/.pgpass``.)
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote

__all__ = ["PIP_POSTGRES", "POSTGRES_SCHEMES", "is_postgres_url", "mask_url", "where"]

#: The URL schemes of a PostgreSQL bank (libpq reads both).
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

#: The install line of the ``postgres`` extra.
PIP_POSTGRES = "pip install 'iapo[postgres]'"

_MASK = "***"
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def is_postgres_url(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL bank (``postgresql://…`` or ``postgres://…``)."""
    return url.lower().startswith(POSTGRES_SCHEMES)


def _split(url: str) -> tuple[str, str, str, str]:
    """``(scheme://, userinfo, hosts, rest)`` of a URL (``rest``: the path and query)."""
    scheme, _, tail = url.partition("://")
    cut = min((i for i in (tail.find("/"), tail.find("?"), tail.find("#")) if i >= 0), default=-1)
    netloc, rest = (tail, "") if cut < 0 else (tail[:cut], tail[cut:])
    userinfo, at, hosts = netloc.rpartition("@")
    return f"{scheme}://", userinfo if at else "", hosts, rest


def mask_url(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` parameter) replaced by
    ``***``; any other storage URL (a SQLite path, ``memory:``) unchanged."""
    if not is_postgres_url(url):
        return url
    scheme, userinfo, hosts, rest = _split(url)
    user, colon, _ = userinfo.partition(":")
    if colon:
        userinfo = f"{user}:{_MASK}"
    netloc = f"{userinfo}@{hosts}" if userinfo else hosts
    return scheme + netloc + _QUERY_PASSWORD.sub(rf"\g<1>{_MASK}", rest)


def where(url: str) -> str:
    """Which server and database ``url`` names, for error messages: ``database 'db' on host:5432``
    (libpq's defaults, the local socket and the user's name, where the URL leaves them out)."""
    _, userinfo, hosts, rest = _split(url)
    path, _, query = rest.split("#", 1)[0].partition("?")
    params = parse_qs(query)
    db = params.get("dbname", [unquote(path.lstrip("/"))])[0]
    db = db or params.get("user", [unquote(userinfo.partition(":")[0])])[0] or "(your user name)"
    host = params.get("host", [unquote(hosts)])[0]
    if host and "port" in params:
        host = f"{host} port {params['port'][0]}"
    return f"database {db!r} on {host or 'the local socket'}"
