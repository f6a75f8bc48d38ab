"""The sample bank: every completion drawn, the source of truth of every run."""

from __future__ import annotations

from iapo.bank._sqlite import BANK_SCHEMA, RunRecord, SampleBank, open_bank

__all__ = ["BANK_SCHEMA", "RunRecord", "SampleBank", "open_bank"]
