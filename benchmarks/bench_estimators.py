"""Timing of the estimator kernels on a realistic batch: 10^4 rows, n = 32, k_max = 32.

Run: ``PYTHONPATH=src python benchmarks/bench_estimators.py`` (seconds per kernel, best of 3).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from iapo.estimators import (
    bon_blocks,
    bon_exact,
    bon_ustat,
    mv_blocks,
    mv_exact,
    mv_ustat,
)

ROWS, N, K_MAX, CLASSES = 10_000, 32, 32, 6


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def cases() -> list[tuple[str, Callable[[], object]]]:
    """The timed kernels on 10^4 rows of n = 32 samples, every k ≤ 32."""
    rng = np.random.default_rng(0)
    # Answer distributions: CLASSES answer classes plus abstention, gold = class 0.
    probs = rng.dirichlet(np.ones(CLASSES + 1), size=ROWS)
    cum = probs.cumsum(axis=1)
    u = rng.random((ROWS, N, 1))
    labels = (u > cum[:, None, :]).sum(axis=2).astype(np.int64)
    labels[labels == CLASSES] = -1
    gold = np.zeros(ROWS, dtype=np.int64)
    # A hard case too: the answers spread uniformly over the classes (many ties to track).
    labels_flat = rng.integers(-1, CLASSES, size=(ROWS, N)).astype(np.int64)

    select = np.round(rng.normal(size=(ROWS, N)), 1)  # rounded: many ties
    value = (rng.random((ROWS, N)) < 0.5).astype(np.float64)
    probs_v = rng.dirichlet(np.ones(N), size=ROWS)

    cases: list[tuple[str, Callable[[], object]]] = [
        ("mv_ustat (Dirichlet answers)", lambda: mv_ustat(labels, gold, K_MAX)),
        ("mv_ustat (uniform answers)", lambda: mv_ustat(labels_flat, gold, K_MAX)),
        ("mv_blocks", lambda: mv_blocks(labels, gold, K_MAX)),
        ("mv_exact (M = 6 + abstain)", lambda: mv_exact(probs[:, :CLASSES], gold, K_MAX)),
        ("bon_ustat (value=None)", lambda: bon_ustat(select, None, K_MAX)),
        ("bon_ustat (value)", lambda: bon_ustat(select, value, K_MAX)),
        ("bon_blocks (value)", lambda: bon_blocks(select, value, K_MAX)),
        ("bon_exact (V = 32, value)", lambda: bon_exact(select, probs_v, value, K_MAX)),
    ]
    return cases


def main() -> None:
    print(f"rows={ROWS} n={N} k_max={K_MAX}")
    for name, fn in cases():
        print(f"{name:32s} {best_of(fn) * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
