"""Finding runs: the run records of sample banks, or a run folder's ``result.json``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from iapo.bank._open import open_bank, sqlite_path
from iapo.bank._postgres_url import mask_url
from iapo.errors import InputError
from iapo.result import as_result_dict

__all__ = [
    "DEFAULT_BANKS",
    "bank_urls",
    "find_run",
    "finished_result",
    "list_runs",
]

#: Where ``iapo runs`` and ``iapo show`` look without ``--storage`` (each run's default bank).
DEFAULT_BANKS = "runs/*/bank.sqlite"


#: The keys every run result (``result.json``) has.
def bank_urls(storage: str | None) -> list[str]:
    """``storage`` (a SQLite bank must exist: listing never creates one), or every default bank."""
    if storage:
        path = sqlite_path(storage)
        if path is not None and not path.is_file():
            raise InputError(
                f"no sample bank at {path}: give the storage URL the run used "
                "(e.g. sqlite:///runs/NAME/bank.sqlite)",
                field="--storage",
            )
        return [storage]
    return [f"sqlite:///{p}" for p in sorted(Path().glob(DEFAULT_BANKS))]


def list_runs(storage: str | None = None) -> list[dict[str, Any]]:
    """Every run recorded in the bank at ``storage`` (default: every ``runs/*/bank.sqlite``,
    skipping with a warning on stderr those that cannot be read), oldest first, each a
    :data:`~iapo.bank.RunRecord` plus the bank it is in under ``storage`` (its URL without the
    password: :func:`~iapo.bank.mask_url`)."""
    out: list[dict[str, Any]] = []
    for url in bank_urls(storage):
        try:
            bank = open_bank(url)
        except InputError as exc:
            if storage:
                raise
            print(f"iapo: skipping {mask_url(url)}: {exc}", file=sys.stderr)
            continue
        shown = mask_url(url)
        with bank:
            out.extend({**rec, "storage": shown} for rec in bank.runs())
    out.sort(key=lambda r: r.get("created") or 0.0)
    return out


def _quiet_runs() -> list[dict[str, Any]]:
    """The default banks' runs, or none when they can't be read."""
    try:
        return list_runs(None)
    except InputError:
        return []


def _record_from_result(d: Mapping[str, Any], source: str) -> dict[str, Any]:
    acc = d.get("account", {})
    return {
        "id": d.get("run_id"),
        "name": d.get("name"),
        "status": "done",
        "created": None,
        "updated": None,
        "budget": acc.get("budget"),
        "spent": acc.get("completions"),
        "config": d.get("config"),
        "result": dict(d),
        "storage": d.get("storage"),
        "source": source,
    }


def _load_result_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read it ({exc.strerror})", source=str(path)) from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"not valid JSON (line {exc.lineno}): point at a run's result.json", source=str(path)
        ) from None
    return as_result_dict(data, source=str(path))


def find_run(ref: str, storage: str | None = None) -> dict[str, Any]:
    """A run record (``id, name, status, budget, spent, result, storage``) for ``ref``: a run
    folder or its ``result.json`` (then also ``source``, the file); else a run id, a unique id
    prefix, or a run name in the bank(s). Raises :class:`~iapo.errors.InputError` with a
    one-line hint when there is no such run, and one listing the candidates (id, date, status,
    and bank where they differ) when a name or prefix fits several runs: it never picks one."""
    path = Path(ref)
    folder_without_result = False
    if path.exists():
        file = path / "result.json" if path.is_dir() else path
        if file.is_file():
            return _record_from_result(_load_result_file(file), str(file))
        folder_without_result = True
    runs = list_runs(storage) if storage or not folder_without_result else _quiet_runs()
    where = mask_url(storage) if storage else f"the banks {DEFAULT_BANKS}"
    matches = [r for r in runs if r["id"] == ref]
    if not matches:
        matches = [r for r in runs if str(r["id"]).startswith(ref)]
        ids = sorted({str(r["id"]) for r in matches})
        if len(ids) > 1:
            raise InputError(f"run id prefix {ref!r} matches {', '.join(ids)}: give more of the id")
    if not matches:
        matches = [r for r in runs if r["name"] == ref]
        _refuse_ambiguous(ref, matches)
    if not matches and folder_without_result:
        raise InputError(
            "no result.json in this folder: finish the run with `iapo run CONFIG`, "
            "or give a run id from `iapo runs`",
            source=str(path),
        )
    if not matches:
        hint = "list them with `iapo runs`" if runs else "no runs recorded there"
        raise InputError(
            f"no run {ref!r} in {where} and no such folder: give a run folder, id or name ({hint})"
        )
    return max(matches, key=lambda r: r.get("updated") or 0.0)


def _refuse_ambiguous(ref: str, matches: list[dict[str, Any]]) -> None:
    """Several distinct runs share the name ``ref``: list them instead of picking one."""
    distinct = {(str(r["id"]), r["storage"]): r for r in matches}
    if len(distinct) < 2:
        return
    runs = sorted(distinct.values(), key=lambda r: r.get("created") or 0.0)
    banks = len({r["storage"] for r in runs}) > 1
    ids = len({str(r["id"]) for r in runs}) == len(runs)

    def entry(r: Mapping[str, Any]) -> str:
        when = r.get("created") or r.get("updated")
        date = time.strftime("%Y-%m-%d %H:%M", time.localtime(when)) if when else "no date"
        where = f", {r['storage']}" if banks else ""
        return f"{r['id']} ({date}, {r['status']}{where})"

    fix = "give its id" if ids else "give its id and --storage"
    raise InputError(
        f"{len(runs)} runs are named {ref!r}: {'; '.join(entry(r) for r in runs)}: {fix}",
        field="RUN",
    )


def finished_result(rec: Mapping[str, Any]) -> dict[str, Any]:
    """The result of the run record ``rec``; an :class:`~iapo.errors.InputError` saying so when
    the run has none yet (it is still running, or was stopped or interrupted)."""
    res = rec.get("result")
    if not res:
        raise InputError(
            f"run {rec['id']} ({rec['name']}) is {rec['status']} and has no result yet: "
            "run its config again to finish it"
        )
    return dict(res)
