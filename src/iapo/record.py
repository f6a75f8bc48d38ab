"""``iapo record``: draw k samples per (prompt, query) from a live backend into a pool file.

Expensive sampling is done once; algorithms are then compared by replaying the pool. Every
completion goes through the sample bank first (sample indices ``0..k-1`` of the distribution
``backend.cache_key(prompt, query)``), so

* a crashed or interrupted recording resumes where it stopped: run the same command again;
* a second recording of the same config asks the backend for nothing;
* a later live run of the same config (same bank) reuses the recorded completions, and a
  recording after a live run reuses the run's.

The pool is written in the full form (answer, cost, usage and text per sample) with a header
whose ``meta`` keeps the provenance: model, sampling params, prompt texts, date, licences.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from iapo.aio import gather_or_cancel
from iapo.aio import run as run_loop
from iapo.backends import Backend
from iapo.bank import mask_url, open_bank
from iapo.errors import ConfigError
from iapo.fmt import amount, strict_json
from iapo.pools import Pool, dump_pool, full_cell, pool_from_cells
from iapo.sampling import CachedSampler
from iapo.setups import LiveSetup, Setup, setup
from iapo.version import __version__

__all__ = ["RecordProgress", "record", "register_cli"]

#: ``progress(done, total)``: samples in hand (banked or new) out of ``prompts × queries × k``.
RecordProgress = Callable[[int, int], None]


def _atomic_dump(pool: Pool, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        dump_pool(pool, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _meta(
    s: LiveSetup, backend: Backend, info: dict[str, Any] | None, k: int, queries: Sequence[str]
) -> dict[str, Any]:
    cfg = s.config
    bcfg = s.backend_config
    prompts = {
        pid: {"system": spec.system, "template": spec.template}
        for pid, spec in s.prompt_specs.items()
    }
    meta: dict[str, Any] = {
        "source": "iapo record",
        "description": (
            f"{k} samples per (prompt, query) from {bcfg.model} "
            f"({bcfg.kind} backend), {len(prompts)} prompts x {len(queries)} queries"
        ),
        "model": bcfg.model,
        "backend": backend.name,
        "params": dict(bcfg.params),
        "prompts": prompts,
        "queries": cfg.queries,
        "extract": cfg.extract,
        "samples_per_cell": k,
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "license": (
            "completions: subject to the model's licence and terms of use; questions: see the "
            "licence of the query file"
        ),
    }
    if info:
        meta["runtime"] = info
        if info.get("model_license"):
            meta["license"] = (
                f"completions: {info['model_license']} model outputs; questions: see the "
                "licence of the query file"
            )
    meta["iapo"] = __version__
    return meta


async def _record(
    s: LiveSetup,
    backend: Backend,
    k: int,
    queries: Sequence[str],
    progress: RecordProgress | None,
) -> tuple[dict[tuple[str, str], list[Any]], dict[str, Any]]:
    # Query-major: an interrupted recording leaves whole queries (all prompts) in the bank.
    cells = [(p, q) for q in queries for p in s.prompts]
    total = len(cells) * k
    done = 0
    out: dict[tuple[str, str], list[Any]] = {}

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None and n:
            progress(done, total)

    async def one(sampler: CachedSampler, prompt: str, query: str) -> None:
        samples, fresh = await sampler.draw(prompt, query, range(k), on_stored=tick)
        tick(fresh)
        out[(prompt, query)] = samples

    async with backend:
        with open_bank(s.storage) as bank:
            # Samples in flight: enough to keep the backend's request slots busy, few enough
            # that an interruption loses little that was drawn but not yet banked (a cell is
            # banked whole).
            sampler = CachedSampler(backend, bank, max_in_flight=backend.concurrency + k - 1)
            if progress is not None:
                progress(0, total)
            await gather_or_cancel(one(sampler, p, q) for p, q in cells)
            info = backend.describe()  # while a local server still runs
    return out, info


def record(
    setup: Setup,
    k: int,
    out: Path,
    *,
    queries: Sequence[str] | None = None,
    progress: RecordProgress | None = None,
) -> Pool:
    """Draw ``k`` samples per (prompt, query) of ``setup`` (a live config) through its sample
    bank, write them to the pool file ``out`` (atomically) and return the pool.

    ``queries``: query ids to record (default: all the config's queries, in file order).
    Samples already in the bank are reused, so an interrupted recording resumes.
    """
    if not isinstance(setup, LiveSetup):
        raise ConfigError(
            "record needs a live backend config (backend + queries + prompts), not a pool",
            source=setup.source,
            field="backend",
        )
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}", field="k")
    qids = list(setup.queries) if queries is None else list(queries)
    unknown = [q for q in qids if q not in setup.queries]
    if unknown:
        raise ConfigError(
            f"unknown query id {unknown[0]!r}: use ids of the query file",
            source=setup.source,
            field="queries",
        )
    if not qids:
        raise ConfigError("no queries to record", source=setup.source, field="queries")
    if len(set(qids)) != len(qids):
        raise ConfigError("query ids must be unique", source=setup.source, field="queries")
    backend = setup.make_backend()
    samples, info = run_loop(_record(setup, backend, k, qids, progress))
    gold = {q: setup.queries[q].gold for q in qids}
    cells = [full_cell(p, q, gold[q], samples[(p, q)]) for p in setup.prompts for q in qids]
    pool = pool_from_cells(
        cells,
        objectives=("accuracy",) if setup.config.strategy == "majority_vote" else None,
        cost_unit=setup.cost_unit,
        meta=_meta(setup, backend, info, k, qids),
    )
    _atomic_dump(pool, Path(out))
    return pool


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------


def _stderr_progress(quiet: bool) -> RecordProgress | None:
    if quiet:
        return None
    tty = sys.stderr.isatty()
    last = [-1]

    def show(done: int, total: int) -> None:
        pct = int(100 * done / total) if total else 100
        if tty:
            print(f"\rrecording: {done}/{total} samples ({pct} %)", end="", file=sys.stderr)
            if done >= total:
                print(file=sys.stderr)
        elif pct // 10 != last[0] // 10 or done >= total:
            print(f"recording: {done}/{total} samples ({pct} %)", file=sys.stderr)
        last[0] = pct

    return show


def _summary(pool: Pool, out: Path) -> str:
    lines = [f"pool: {out} ({len(pool.prompts)} prompts x {len(pool.queries)} queries)"]
    for p in pool.prompts:
        cells = [pool.cell(p, q) for q in pool.queries]
        n = sum(c.size for c in cells)
        right = sum(
            w
            for c in cells
            for o, w in zip(c.outcomes, c.weights, strict=True)
            if c.gold is not None and o.answer is not None and o.answer == c.gold
        )
        cost = sum(c.mean_cost() for c in cells) / len(cells)
        lines.append(
            f"  {p}: per-sample accuracy {right / n:.3f}, "
            f"mean cost {amount(cost, 4)} {pool.cost_unit}"
        )
    return "\n".join(lines)


def _cmd_record(args: argparse.Namespace) -> int:
    s = setup(Path(args.config), run_dir=args.run_dir, storage=args.storage)
    qids = None
    if args.queries is not None:
        if args.queries < 1:
            raise ConfigError(f"--queries must be at least 1, got {args.queries}", field="queries")
        if not isinstance(s, LiveSetup):
            raise ConfigError(
                "record needs a live backend config (backend + queries + prompts), not a pool",
                source=s.source,
                field="backend",
            )
        qids = list(s.queries)[: args.queries]
    out = Path(args.out)
    try:
        pool = record(s, args.k, out, queries=qids, progress=_stderr_progress(args.quiet))
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: every completion drawn so far is in the bank ({mask_url(s.storage)}); "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    if args.json:
        print(
            strict_json(
                {"out": str(out), "prompts": list(pool.prompts), "queries": len(pool.queries)}
            )
        )
    else:
        print(_summary(pool, out))
    return 0


def register_cli(sub: Any) -> None:
    """Add ``iapo record CONFIG -k 8 --out FILE [--queries N]`` to a subparsers object."""
    p = sub.add_parser(
        "record",
        help="draw k samples per (prompt, query) from the live backend into a pool file",
    )
    p.add_argument("config", help="run configuration with a live backend (YAML)")
    p.add_argument("-k", type=int, default=8, help="samples per (prompt, query) (default 8)")
    p.add_argument("--out", required=True, help="the pool file to write (JSONL)")
    p.add_argument("--queries", type=int, help="record only the first N queries of the file")
    p.add_argument("--run-dir", help="run directory (the default bank lives there)")
    p.add_argument("--storage", help="sample bank URL, e.g. sqlite:///bank.sqlite")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_record)
