"""Secrets never belong in a config: find one wherever it is (any section, any depth).

A secret is recognised by where it sits (a key named like ``api_key``, ``token`` or ``password``),
by its shape (``sk-…``, ``hf_…``, ``AIza…``, ``Bearer …``), or as credentials inside a URL
(``http://user:key@host``). Keys come from the environment: ``api_key_env`` names the variable.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ENV_NAME", "find_secret", "looks_like_key"]

_SECRET_NAMES = re.compile(
    r"(?:api[_-]?key|apikey|secret|client[_-]?secret|password|passwd|token|access[_-]?token|"
    r"auth|authorization|bearer|private[_-]?key|credentials?)",
    re.IGNORECASE,
)
_KEY_SHAPES = re.compile(
    r"(?:Bearer\s+\S{8,}"
    r"|(?:sk|pk|rk)-[A-Za-z0-9_-]{12,}"
    r"|(?:sk|rk|hf|gsk|ghp|gho|ghs|xai|glpat|pplx|nvapi)[_-][A-Za-z0-9_-]{16,}"
    r"|AIza[0-9A-Za-z_-]{30,})",
)
#: What an environment variable's name looks like (the only thing ``api_key_env`` may hold).
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")

#: URL schemes whose user part names a database user (only a password there is a secret).
_DATABASES = ("postgresql", "postgres")

_FIX = "put it in an environment variable and name the variable with api_key_env"


def looks_like_key(value: str) -> bool:
    """Whether ``value`` has the shape of an API key or a bearer token."""
    return _KEY_SHAPES.fullmatch(value.strip()) is not None


def _walk(data: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """(path, key, value) of every entry of nested mappings and lists."""
    if isinstance(data, dict):
        for k, v in data.items():
            sub = f"{path}.{k}" if path else str(k)
            yield sub, k, v
            yield from _walk(v, sub)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            sub = f"{path}[{i}]"
            yield sub, None, v
            yield from _walk(v, sub)


def find_secret(data: Any) -> tuple[str, str] | None:
    """(field path, message with the fix) of the first secret in a raw config, or None."""
    for path, key, value in _walk(data, ""):
        if key == "api_key_env":
            if value is not None and (
                not isinstance(value, str) or not ENV_NAME.fullmatch(value) or looks_like_key(value)
            ):
                return path, (
                    "must be the NAME of an environment variable (like OPENAI_API_KEY), and this "
                    f"looks like a key itself: never write an API key into a config; {_FIX}"
                )
            continue
        if isinstance(key, str) and _SECRET_NAMES.fullmatch(key) and value not in (None, ""):
            return path, f"never write an API key or other secret into a config: {_FIX}"
        if not isinstance(value, str):
            continue
        if looks_like_key(value):
            return path, f"looks like an API key: never write an API key into a config; {_FIX}"
        if _URL.fullmatch(value.strip()):
            try:
                parts = urlsplit(value.strip())
                userinfo = parts.username is not None or parts.password is not None
            except ValueError:
                continue
            if parts.scheme.lower() in _DATABASES and parts.password is None:
                continue  # a database user name (postgresql://alice@host/db) is no secret
            if parts.scheme.lower() in _DATABASES:
                return path, (
                    "holds a password in the URL: never write a password into a config; "
                    "remove it and put it in PGPASSWORD or ~/.pgpass"
                )
            if userinfo:
                return path, (
                    "holds credentials (user:key@) in the URL: never write an API key into a "
                    f"config; remove them and {_FIX}"
                )
    return None
