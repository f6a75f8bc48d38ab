"""The sample bank: every completion drawn, the source of truth of every run; finding runs.

:class:`SampleBank` states the contract; :class:`SQLiteBank` (the default, one file),
:class:`PostgresBank` (a PostgreSQL database shared by many machines; the ``postgres`` extra,
loaded on first use) and :class:`MemoryBank` implement it; :func:`open_bank` opens the one a
storage URL names, :func:`mask_url` shows a URL without its password. :class:`TaskQueue` (part
of every bank) coordinates distributed sampling workers.
:func:`list_runs` and :func:`find_run` read the run records behind ``iapo runs`` and
``iapo show`` (:func:`register_cli`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from iapo.bank._base import (
    BANK_SCHEMA,
    CLAIM_TTL,
    RUN_FIELDS,
    WRITE_BATCH,
    BankWriter,
    PutGroup,
    RunRecord,
    SampleBank,
)
from iapo.bank._cli import RUN_HELP, STORAGE_HELP, register_cli
from iapo.bank._memory import MEMORY_URL, MemoryBank
from iapo.bank._open import open_bank, sqlite_path
from iapo.bank._postgres_url import PIP_POSTGRES, is_postgres_url, mask_url
from iapo.bank._runs import (
    DEFAULT_BANKS,
    find_run,
    finished_result,
    list_runs,
)
from iapo.bank._sqlite import BUSY_LIMIT, SQLiteBank
from iapo.bank._sqlite_schema import APPLICATION_ID
from iapo.bank._tasks import MAX_ATTEMPTS, TASK_STATES, TASK_TTL, Task, TaskQueue, TaskSpec

if TYPE_CHECKING:
    from iapo.bank._postgres import PostgresBank

__all__ = [
    "APPLICATION_ID",
    "BANK_SCHEMA",
    "BUSY_LIMIT",
    "CLAIM_TTL",
    "DEFAULT_BANKS",
    "MAX_ATTEMPTS",
    "MEMORY_URL",
    "PIP_POSTGRES",
    "RUN_FIELDS",
    "RUN_HELP",
    "STORAGE_HELP",
    "TASK_STATES",
    "TASK_TTL",
    "WRITE_BATCH",
    "BankWriter",
    "MemoryBank",
    "PostgresBank",
    "PutGroup",
    "RunRecord",
    "SQLiteBank",
    "SampleBank",
    "Task",
    "TaskQueue",
    "TaskSpec",
    "find_run",
    "finished_result",
    "is_postgres_url",
    "list_runs",
    "mask_url",
    "open_bank",
    "register_cli",
    "sqlite_path",
]


def __getattr__(name: str) -> Any:
    """:class:`PostgresBank` needs psycopg (the ``postgres`` extra): loaded on first use."""
    if name == "PostgresBank":
        from iapo.bank._postgres import PostgresBank

        return PostgresBank
    raise AttributeError(f"module 'iapo.bank' has no attribute {name!r}")
