"""(stub: being written)"""

from __future__ import annotations

from typing import Any

__all__ = ["register_cli"]


def register_cli(sub: Any) -> None:
    """Add this subpackage's commands to the ``iapo`` argument parser's subparsers."""
