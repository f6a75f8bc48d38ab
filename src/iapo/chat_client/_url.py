"""Showing a URL, or a server's message, without the credentials it may carry."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["public_url", "redact"]


def public_url(url: str) -> str:
    """``url`` without user info, query or fragment (which may carry credentials): safe to show
    in ids, logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def redact(text: str, key: str) -> str:
    """``text`` on one line, at most 300 characters, with neither ``key`` nor any bearer token
    or ``sk-`` key in it."""
    if len(key) >= 4:
        text = text.replace(key, "***")
    text = re.sub(r"(?i)(bearer\s+)\S+", r"\1***", text)
    text = re.sub(r"\bsk-[A-Za-z0-9_\-*.]{4,}", "sk-***", text)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."
