"""The installed iapo's version, in its own module so nothing imports the package root for it."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
