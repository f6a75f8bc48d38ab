"""What the server enforces on every request, and the defaults (no web framework imported)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_TIMEOUT", "Limits"]

#: The largest request body accepted, in bytes (1 MiB).
DEFAULT_MAX_BODY = 1 << 20
#: Seconds a request may take, from its body to its answer (upstream retries included).
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class Limits:
    """``api_key``: the bearer key requests to ``/v1/*`` must send (None: none); ``max_body``:
    bytes; ``timeout``: seconds per request."""

    api_key: str | None = None
    max_body: int = DEFAULT_MAX_BODY
    timeout: float = DEFAULT_TIMEOUT
