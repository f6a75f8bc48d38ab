"""Test helpers that ship with iapo (importing this package starts nothing).

- :class:`FakeOpenAIServer`: a real OpenAI-compatible HTTP server on loopback with injectable
  faults, for testing clients end to end.
- :class:`MockBackend`: an in-process backend answering from a handler (like
  ``httpx.MockTransport``).
- Conformance suites, in the style of Optuna's ``optuna.testing``: subclass
  :class:`AlgorithmSuite`, :class:`BackendSuite`, :class:`BankSuite` or :class:`QueueSuite` in a
  test module to check your own algorithm, backend, sample bank or its task queue against the
  contracts iapo relies on. They need pytest (``pip install 'iapo[testing]'``) and load it only
  when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from iapo.backends import MockBackend
from iapo.testing.algorithms import AlgorithmSuite
from iapo.testing.fake_openai import (
    FAULT_KINDS,
    HOSTILE_KINDS,
    FakeOpenAIServer,
    FaultPlan,
    default_script,
)

if TYPE_CHECKING:
    from iapo.testing.backends import BackendSuite
    from iapo.testing.banks import BankSuite
    from iapo.testing.queues import QueueSuite

__all__ = [
    "FAULT_KINDS",
    "HOSTILE_KINDS",
    "AlgorithmSuite",
    "BackendSuite",
    "BankSuite",
    "FakeOpenAIServer",
    "FaultPlan",
    "MockBackend",
    "QueueSuite",
    "default_script",
]

_SUITES = {
    "BackendSuite": "iapo.testing.backends",
    "BankSuite": "iapo.testing.banks",
    "QueueSuite": "iapo.testing.queues",
}


def __getattr__(name: str) -> Any:
    """The suites import pytest: load them on first use, not with the package."""
    module = _SUITES.get(name)
    if module is None:
        raise AttributeError(f"module 'iapo.testing' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
