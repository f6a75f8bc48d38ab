"""Test helpers that ship with iapo (importing this package starts nothing)."""

from __future__ import annotations

from iapo.testing.algorithms import AlgorithmSuite
from iapo.testing.fake_openai import FAULT_KINDS, FakeOpenAIServer, FaultPlan, default_script

__all__ = ["FAULT_KINDS", "AlgorithmSuite", "FakeOpenAIServer", "FaultPlan", "default_script"]
