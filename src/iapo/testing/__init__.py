"""Test helpers that ship with iapo (importing this package starts nothing; it imports pytest for
the conformance suites)."""

from __future__ import annotations

from iapo.backends import MockBackend
from iapo.testing.backends import BackendSuite
from iapo.testing.banks import BankSuite
from iapo.testing.fake_openai import FAULT_KINDS, FakeOpenAIServer, FaultPlan, default_script

__all__ = [
    "FAULT_KINDS",
    "BackendSuite",
    "BankSuite",
    "FakeOpenAIServer",
    "FaultPlan",
    "MockBackend",
    "default_script",
]
