"""The frozen, JSON-serialisable result of a run, built in one place from what the study learned."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from iapo.errors import InputError
from iapo.fmt import strict_json
from iapo.version import __version__

__all__ = ["REQUIRED_KEYS", "RunResult", "as_result_dict", "versions"]

#: The keys a result must have to be reported or shown.
REQUIRED_KEYS = ("policy", "estimates", "account", "trace", "contexts", "prompts", "n_max")


def as_result_dict(result: Any, *, source: str | None = None) -> dict[str, Any]:
    """A run's result as a plain dict (a :class:`RunResult` or its ``to_dict()``)."""
    to_dict = getattr(result, "to_dict", None)
    d = to_dict() if callable(to_dict) else result
    if not isinstance(d, Mapping):
        raise InputError("not an iapo run result: expected result.json's object", source=source)
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise InputError(
            f"not an iapo run result (missing {', '.join(missing)}): point at a run's result.json",
            source=source,
        )
    return dict(d)


def versions() -> dict[str, str]:
    """The versions that produced a result: iapo, Python, numpy."""
    return {"iapo": __version__, "python": platform.python_version(), "numpy": np.__version__}


@dataclass(frozen=True)
class RunResult:
    """The frozen, JSON-serialisable result of a run."""

    run_id: str
    name: str
    algorithm: str
    strategy: str
    seed: int
    policy: dict[str, dict[str, Any]]
    estimates: dict[str, list[dict[str, Any]]]
    account: dict[str, Any]
    trace: list[dict[str, Any]]
    contexts: list[dict[str, Any]]
    prompts: list[str]
    n_max: int
    evaluation: dict[str, Any] | None
    versions: dict[str, str]
    config: dict[str, Any]
    elapsed_s: float
    run_dir: str
    storage: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def to_json(self) -> str:
        return strict_json(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunResult:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    @classmethod
    def load(cls, path: str | Path) -> RunResult:
        """The result in ``path`` (a run folder or its ``result.json``); an
        :class:`~iapo.errors.InputError` naming the file when it is missing, unreadable,
        truncated or not a run result."""
        p = Path(path)
        if p.is_dir():
            p = p / "result.json"
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(
                "no such file: give a run folder with a result.json (`iapo runs` lists the runs)",
                source=str(p),
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise InputError(f"cannot read it ({why})", source=str(p)) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"not valid JSON (line {exc.lineno}; truncated?): run the config again to "
                "rewrite it",
                source=str(p),
            ) from None
        d = as_result_dict(data, source=str(p))
        missing = [k for k in cls.__dataclass_fields__ if k not in d and k != "extra"]
        if missing:
            raise InputError(
                f"not an iapo run result (missing {', '.join(missing)}): run the config again "
                "to rewrite it",
                source=str(p),
            )
        return cls.from_dict(d)

    def save(self, run_dir: Path) -> Path:
        """Write ``result.json`` into ``run_dir`` atomically and durably: a uniquely named
        temporary file, flushed and fsynced, renamed over the result, then the folder fsynced.
        Never a half-written result, and once this returns the result survives a power cut."""
        out = run_dir / "result.json"
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            _durable_write(out, self.to_json())
        except OSError as exc:
            raise InputError(
                f"cannot write the result ({exc.strerror}): choose a writable run_dir",
                source=str(run_dir),
                field="run_dir",
            ) from None
        return out


def _durable_write(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` atomically (unique temp file, fsync, rename, fsync dir)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
