"""The iapo exception tree.

::

    IapoError                     root of every error iapo raises on purpose
    ├── InputError                a user mistake: one line naming the file, the field and the fix;
    │   │                         the CLI prints it and exits with code 2, no traceback, nothing
    │   │                         stored is touched
    │   ├── ConfigError           the run configuration (YAML, CLI flags) is invalid
    │   ├── PoolError             a pool file is malformed or does not fit the configuration
    │   ├── BudgetError           the budget cannot fund the algorithm (said before any spend)
    │   └── BankError             the sample bank cannot be opened, or has another schema
    ├── StorageError              the sample bank failed mid-run (disk full, I/O error, a lock
    │                             held too long): the CLI exits 1; what was stored is intact and
    │                             the same command resumes
    └── BackendError              talking to an LLM endpoint failed
        ├── TransientBackendError worth retrying (rate limit, 5xx, timeout, dropped connection);
        │                         the CLI exits 1 and says the run resumes from the bank
        └── PermanentBackendError retrying cannot fix it (bad request, auth, unknown model);
                                  the CLI exits 2

Anything else escaping iapo (``RuntimeError``, ``AssertionError``) is a bug, not an input problem.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BankError",
    "BudgetError",
    "ConfigError",
    "IapoError",
    "InputError",
    "PermanentBackendError",
    "PoolError",
    "StorageError",
    "TransientBackendError",
]


class IapoError(Exception):
    """Root of every error iapo raises on purpose."""


class InputError(IapoError):
    """Bad user input. ``str(err)`` is one line naming the file, the field and the fix."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.source = source
        self.field = field
        self.detail = message
        where = ": ".join(part for part in (source, field) if part)
        super().__init__(f"{where}: {message}" if where else message)

    def within(self, source: str | None) -> InputError:
        """The same error attributed to ``source`` (the config that named the faulty thing); an
        error that already names a file keeps it inside the message."""
        if source is None or self.source == source:
            return self
        detail = f"{self.source}: {self.detail}" if self.source else self.detail
        return type(self)(detail, source=source, field=self.field)


class ConfigError(InputError):
    """The run configuration is invalid."""


class PoolError(InputError):
    """A pool file is malformed or does not fit the configuration."""


class BudgetError(InputError):
    """The exploration budget cannot fund the algorithm (said before anything is spent)."""


class BankError(InputError):
    """The sample bank cannot be opened or belongs to another schema version."""


class StorageError(IapoError):
    """The sample bank failed while in use (disk full, I/O error, locked for too long).

    ``str(err)`` is one line naming the bank and the cause. Not an input error: the
    configuration is fine, and running the same command again (once the cause is gone) resumes
    from what the bank holds, which a failed write leaves intact.
    """


class BackendError(IapoError):
    """An LLM endpoint failed."""


class TransientBackendError(BackendError):
    """A failure worth retrying (rate limit, 5xx, timeout, broken connection)."""


class PermanentBackendError(BackendError):
    """A failure that retrying cannot fix (bad request, auth, unknown model)."""
