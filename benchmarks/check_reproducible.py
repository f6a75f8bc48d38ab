"""Re-run a slice of every stored ``iapo bench`` result and compare it bit for bit.

For each JSON file written by ``iapo bench`` (default: ``docs/bench/*.json``; other JSON files
there get a skip line), the environment is rebuilt from the stored ``env`` and ``protocol`` (name
or pool file, ``env_seed``, N_max, cost weights and normalisation) and every stored algorithm is
re-run alone with the stored seed: by default the first ``--runs`` runs (1) at its smallest and
largest feasible budget; ``--all``: every run at every budget (minutes to hours).

Run r of algorithm a at budget b depends on (seed, r, a's seed group) only: the split on
(seed, r), the algorithm's and simulator's streams on (seed, r, group), each budget a fresh run
(UCB, ε-greedy: a copy of the long run, equal to a fresh one). So a cell does not depend on the
table's other algorithms, budgets or runs, and re-run alone it must give the stored bits.
Compared (canonical JSON, so floats bit for bit): every per-run field stored except ``cpu_s``
(``acr``, ``found``, ``spent``, ``arms`` where stored), each run's split and oracle ACRs, the
environment's shape, each algorithm's definition and minimum budget.

One line per file: ``ok``, or the mismatches with the first (algorithm, budget, run, field,
stored vs now), or ``skipped`` (not an ``iapo bench`` result; shared data absent, looked for as
``iapo bench`` does: ``--shared DIR``, ``$IAPO_SHARED``, ``../shared``). Exit status 0: nothing
mismatched; 1: a mismatch or a result that cannot be re-run; 2: bad input (one line).

    .venv/bin/python benchmarks/check_reproducible.py --shared ../shared    # the CI slice
    .venv/bin/python benchmarks/check_reproducible.py --envs tot-game24 --runs 5
    .venv/bin/python benchmarks/check_reproducible.py docs/bench/mcqa-gpt35.json --all
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iapo.algorithms import registry
from iapo.bench import (
    ENVIRONMENTS,
    EncodedPool,
    Environment,
    build_environment,
    encode_pool,
    execute_runs,
    feasible_budgets,
    find_shared,
)
from iapo.errors import ConfigError, InputError
from iapo.fmt import strict_json

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "bench"
#: Per-run fields that are measured, not computed: never compared.
UNCOMPARED = frozenset({"cpu_s"})
#: The environment's fields that decide the numbers (compared where the file stores them).
ENV_FIELDS = ("strategy", "objectives", "prompts", "queries", "n_max", "contexts", "cost_scale")
#: The algorithm's fields that decide what it does (its title is only a label).
ALGO_FIELDS = ("algorithm", "params", "estimator")
SHARED_MISSING = "needs the shared data"  # iapo.bench's message when an environment lacks it


def canonical(value: Any) -> str:
    """``value`` as iapo writes it (strict JSON, keys sorted): equal strings ⇔ equal bits (floats
    round-trip exactly through their shortest repr)."""
    return strict_json(value, sort_keys=True)


@dataclass(frozen=True)
class Mismatch:
    """One stored value that the code does not give now; ``budget``/``run`` None: not a cell."""

    algorithm: str
    budget: int | None
    run: int | None
    field: str
    stored: Any
    now: Any

    def __str__(self) -> str:
        at = [f"budget {self.budget}"] * (self.budget is not None)
        at += [f"run {self.run}"] * (self.run is not None)
        values = f"stored {_short(self.stored)} now {_short(self.now)}"
        return f"{', '.join([self.algorithm, *at])}: {self.field} {values}"


_ABSENT: Any = object()


def _short(value: Any, limit: int = 60) -> str:
    text = "absent" if value is _ABSENT else canonical(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Check:
    """What re-running one file's slice found."""

    cells: int = 0
    fields: set[str] = field(default_factory=set)
    mismatches: list[Mismatch] = field(default_factory=list)
    bad_cells: Counter[str] = field(default_factory=Counter)  # algorithm → mismatching cells
    cells_of: Counter[str] = field(default_factory=Counter)  # algorithm → cells compared


def is_bench_result(data: Any) -> bool:
    """Whether ``data`` has the shape ``iapo bench`` writes (its top two levels)."""
    return (
        isinstance(data, dict)
        and isinstance(data.get("env"), dict)
        and isinstance(data["env"].get("name"), str)
        and isinstance(data.get("protocol"), dict)
        and all(k in data["protocol"] for k in ("seed", "budgets", "runs"))
        and isinstance(data.get("algorithms"), list)
        and isinstance(data.get("runs"), list)
    )


def _pool_file(source: str) -> Path:
    for path in (Path(source), ROOT / source):
        if path.is_file():
            return path
    raise ConfigError(
        f"the stored environment's pool file {source} is not here: re-run from the folder it "
        "was benchmarked in, or keep the pool beside the result",
        field="env.source",
    )


def environment(data: dict[str, Any], shared: Path | None) -> Environment:
    """The environment ``data`` was benchmarked on, rebuilt from its stored description.

    Raises ConfigError when it cannot be (shared data absent, pool file gone)."""
    env, proto = data["env"], data["protocol"]
    name = str(env["name"])
    target = name if name in ENVIRONMENTS else str(_pool_file(str(env.get("source", ""))))
    kw: dict[str, Any] = {}
    if proto.get("cost_normalize") is not None:
        kw["cost_normalize"] = proto["cost_normalize"]
    seed = int(proto.get("env_seed", 0))
    e = build_environment(target, seed=seed, shared=shared, **kw)
    weights = proto.get("cost_weights")
    if weights is not None and [c.cost_weight for c in e.contexts] != weights:
        kw["cost_weights"] = weights
    if env.get("n_max") is not None and e.n_max != env["n_max"]:
        kw["n_max"] = int(env["n_max"])
    if "cost_weights" in kw or "n_max" in kw:
        e = build_environment(target, seed=seed, shared=shared, **kw)
    return e


def _env_key(data: dict[str, Any]) -> str:
    env, proto = data["env"], data["protocol"]
    keys = ("env_seed", "cost_normalize", "cost_weights")
    return canonical(
        [env["name"], env.get("source"), env.get("n_max"), [proto.get(k) for k in keys]]
    )


@dataclass(frozen=True)
class Slice:
    """What is re-run: the first ``runs`` runs (None: every run at every budget) at each
    algorithm's smallest and largest feasible budget not above ``max_budget`` (None: any; an
    algorithm feasible only above it: its smallest feasible budget)."""

    runs: int | None = 1
    max_budget: int | None = None


def _slice_budgets(feasible: Sequence[int], every: bool) -> tuple[int, ...]:
    if every or len(feasible) <= 2:
        return tuple(feasible)
    return (feasible[0], feasible[-1])


def check(data: dict[str, Any], sim: EncodedPool, env: Environment, sl: Slice) -> Check:
    """Re-run ``data``'s slice ``sl`` on ``sim`` and compare."""
    runs = sl.runs
    out = Check()
    described = env.describe()
    for key in ENV_FIELDS:
        if key in data["env"]:
            _differ(
                out, Mismatch("(environment)", None, None, key, data["env"][key], described[key])
            )
    proto = data["protocol"]
    seed, budgets = int(proto["seed"]), [int(b) for b in proto["budgets"]]
    stored_runs = {int(r["run"]): r for r in data["runs"]}
    known = registry()
    split_checked: set[int] = set()
    for algo in data["algorithms"]:
        label = str(algo["label"])
        n_runs = int(algo.get("runs", proto["runs"]))
        n = n_runs if runs is None else min(runs, n_runs)
        feasible = [b for b in budgets if b >= int(algo["min_budget"])]
        if sl.max_budget is not None:  # the ends up to the cap, else the smallest feasible
            feasible = [b for b in feasible if b <= sl.max_budget] or feasible[:1]
        chosen = _slice_budgets(feasible, runs is None)
        spec = known.get(label)
        if spec is None:
            out.mismatches.append(Mismatch(label, None, None, "label", label, _ABSENT))
            continue
        now_def = spec.to_dict()
        for key in (k for k in ALGO_FIELDS if k in algo):
            _differ(out, Mismatch(label, None, None, key, algo[key], now_def[key]))
        ok, need = feasible_budgets(sim, [spec], chosen)
        _differ(out, Mismatch(label, None, None, "min_budget", algo["min_budget"], need[label]))
        if n < 1 or not chosen:
            continue
        now_runs = execute_runs(sim, [spec], ok, n, seed, 1)
        for now in now_runs:
            r = int(now["run"])
            stored = stored_runs.get(r, {})
            if r not in split_checked:
                split_checked.add(r)
                for key in ("test", "oracle_train", "oracle_test"):
                    _differ(
                        out, Mismatch("(split)", None, r, key, stored.get(key, _ABSENT), now[key])
                    )
            for b in chosen:
                _compare_cell(out, label, b, r, stored, now)
    return out


def _differ(out: Check, m: Mismatch) -> None:
    """Record ``m`` when its stored and current values differ in any bit."""
    if m.stored is _ABSENT or m.now is _ABSENT or canonical(m.stored) != canonical(m.now):
        out.mismatches.append(m)


def _compare_cell(
    out: Check, label: str, budget: int, run: int, stored: dict[str, Any], now: dict[str, Any]
) -> None:
    old = stored.get("results", {}).get(label, {}).get(str(budget))
    new = now["results"].get(label, {}).get(str(budget))
    out.cells += 1
    out.cells_of[label] += 1
    if old is None and new is None:
        return
    found: list[Mismatch] = []
    if old is None or new is None:
        state = ("absent", "run") if old is None else ("run", "absent")
        found.append(Mismatch(label, budget, run, "cell", *state))
    else:
        for key in sorted(set(old) - UNCOMPARED):
            out.fields.add(key)
            value = new.get(key, _ABSENT)
            if value is _ABSENT or canonical(old[key]) != canonical(value):
                found.append(Mismatch(label, budget, run, key, old[key], value))
    if found:
        out.bad_cells[label] += 1
        out.mismatches.extend(found)


def _summary_line(name: str, got: Check, sl: Slice, seconds: float) -> str:
    runs = sl.runs
    first = "run 0" if runs == 1 else f"runs 0-{(runs or 1) - 1}"
    cap = "" if sl.max_budget is None else f" up to {sl.max_budget}"
    scope = (
        "every run and budget"
        if runs is None
        else f"{first} at each algorithm's smallest and largest feasible budget{cap}"
    )
    if not got.mismatches:
        fields = ", ".join(sorted(got.fields)) or "no stored fields"
        return f"{name}: ok, {got.cells} cells bit-identical ({scope}; {fields}) in {seconds:.1f} s"
    n_bad = sum(got.bad_cells.values())
    other = len({(m.algorithm, m.field, m.run) for m in got.mismatches if m.budget is None})
    parts = [f"{n_bad} of {got.cells} cells mismatch" if n_bad else f"{got.cells} cells identical"]
    if other:
        parts.append(f"{other} other mismatch{'es' if other > 1 else ''}")
    per = ", ".join(f"{a} {k}/{got.cells_of[a]}" for a, k in sorted(got.bad_cells.items()))
    return (
        f"{name}: {', '.join(parts)} ({scope}{'; ' + per if per else ''}) in {seconds:.1f} s; "
        f"first: {got.mismatches[0]}"
    )


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _load(path: Path, named: bool) -> dict[str, Any] | str:
    """The result stored in ``path``, or why it is skipped (a file found by the default glob
    that is no ``iapo bench`` result). Raises InputError on a file that cannot be read."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        why = (
            "not found" if isinstance(exc, FileNotFoundError) else f"cannot be read as JSON ({exc})"
        )
        raise InputError(
            f"{why}: name a JSON file written by iapo bench", source=str(path)
        ) from None
    if is_bench_result(data):
        return dict(data)
    if named:
        raise InputError(
            "not an iapo bench result (needs env, protocol, algorithms and runs): name a file "
            "written by iapo bench",
            source=str(path),
        )
    return "skipped: not an iapo bench result (no env/protocol/algorithms/runs)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="check_reproducible",
        description="Re-run a slice of stored iapo bench results; compare bit for bit.",
    )
    p.add_argument("files", nargs="*", type=Path, help="result JSON files (default: docs/bench)")
    p.add_argument("--runs", type=int, default=1, help="the first RUNS runs (default 1)")
    p.add_argument("--all", action="store_true", help="every run at every budget")
    p.add_argument(
        "--max-budget", type=int, help="only budgets up to this one in the slice (CI: 10000)"
    )
    p.add_argument("--envs", help="only results on these environments (comma-separated)")
    p.add_argument("--shared", help="the shared data folder (holding data/pools), as iapo bench")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Check the files, one line each; the exit status: 0 ok, 1 a mismatch, 2 bad input."""
    args = _parser().parse_args(argv)
    try:
        return _main(args)
    except InputError as exc:
        print(f"check_reproducible: {exc}", file=sys.stderr)
        return 2


def _check_group(
    group: Sequence[tuple[int, str, dict[str, Any]]], shared: Path | None, sl: Slice
) -> list[tuple[int, str, bool]]:
    """Check results on one environment (built once): (index, line, failed) per file."""
    t0 = time.perf_counter()
    try:
        env = environment(group[0][2], shared)
        sim = encode_pool(env.pool, env.strategy, env.contexts, env.n_max)
    except ConfigError as exc:
        skip = SHARED_MISSING in str(exc)
        what = "skipped" if skip else "cannot be re-run"
        return [(i, f"{name}: {what}: {exc}", not skip) for i, name, _ in group]
    out = []
    for i, name, data in group:
        try:
            got = check(data, sim, env, sl)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(
                f"an incomplete iapo bench result ({type(exc).__name__}: {exc}): write it again "
                "with iapo bench",
                source=name,
            ) from None
        line = _summary_line(name, got, sl, time.perf_counter() - t0)
        out.append((i, line, bool(got.mismatches)))
        t0 = time.perf_counter()
    return out


def _main(args: argparse.Namespace) -> int:
    if args.runs < 1:
        raise ConfigError(f"{args.runs} runs: give at least 1 (or --all)", field="--runs")
    if args.workers < 1:
        raise ConfigError(f"{args.workers} workers: give at least 1", field="--workers")
    shared = find_shared(args.shared)
    paths = list(args.files) or sorted(DOCS.glob("*.json"))
    loaded = [(p, _load(p, bool(args.files))) for p in paths]
    wanted = {e for e in (args.envs or "").replace(" ", "").split(",") if e}
    have = {d["env"]["name"] for _, d in loaded if isinstance(d, dict)}
    for missing in sorted(wanted - have)[:1]:
        use = ", ".join(sorted(have))
        raise ConfigError(f"no stored result on {missing!r}: use one of {use}", field="--envs")
    if args.max_budget is not None and args.max_budget < 1:
        raise ConfigError(f"--max-budget {args.max_budget}: give at least 1", field="--max-budget")
    sl = Slice(None if args.all else int(args.runs), None if args.all else args.max_budget)
    lines: dict[int, tuple[str, bool]] = {}
    groups: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
    for i, (path, data) in enumerate(loaded):
        if isinstance(data, str):
            if not wanted:
                lines[i] = (f"{_display(path)}: {data}", False)
        elif not wanted or data["env"]["name"] in wanted:
            groups.setdefault(_env_key(data), []).append((i, _display(path), data))
    order = sorted(lines.keys() | {i for g in groups.values() for i, _, _ in g})
    shown = 0

    def show(results: list[tuple[int, str, bool]]) -> None:
        nonlocal shown
        for i, line, failed in results:
            lines[i] = (line, failed)
        while shown < len(order) and order[shown] in lines:
            print(lines[order[shown]][0], flush=True)
            shown += 1

    show([])
    if args.workers == 1 or len(groups) <= 1:
        for group in groups.values():
            show(_check_group(group, shared, sl))
    else:
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("fork" if "fork" in methods and sys.platform != "darwin" else "spawn")
        with ProcessPoolExecutor(args.workers, mp_context=ctx) as ex:
            futures = [ex.submit(_check_group, g, shared, sl) for g in groups.values()]
            for future in as_completed(futures):
                show(future.result())
    return 1 if any(failed for _, failed in lines.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
