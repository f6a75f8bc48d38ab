"""The sample bank: every completion drawn, the source of truth of every run.

:class:`SampleBank` states the contract; :class:`SQLiteBank` (the default, one file) and
:class:`MemoryBank` implement it; :func:`open_bank` opens the one a storage URL names.
"""

from __future__ import annotations

from iapo.bank._base import BANK_SCHEMA, RUN_FIELDS, RunRecord, SampleBank
from iapo.bank._memory import MEMORY_URL, MemoryBank
from iapo.bank._open import open_bank, sqlite_path
from iapo.bank._sqlite import SQLiteBank

__all__ = [
    "BANK_SCHEMA",
    "MEMORY_URL",
    "RUN_FIELDS",
    "MemoryBank",
    "RunRecord",
    "SQLiteBank",
    "SampleBank",
    "open_bank",
    "sqlite_path",
]
