"""Estimators of the sum of a per-sample quantity (cost) over N samples."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["sum_blocks", "sum_ustat"]


def sum_ustat(values: NDArray[np.float64], k_max: int) -> NDArray[np.float64]:
    """Mean over all k-subsets of the subset sum, ``k · mean``: (rows, n) → (rows, k_max)."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[1]
    k = np.arange(1, k_max + 1, dtype=np.float64)
    # the mean as numpy computes it (sum, then one division), without its per-call overhead
    out = np.add.reduce(values, axis=1, keepdims=True) / n * k[None, :]
    if k_max > n:
        out[:, n:] = np.nan
    return out


def sum_blocks(values: NDArray[np.float64], k_max: int) -> NDArray[np.float64]:
    """Mean over ⌊n/k⌋ consecutive disjoint blocks of the block sum."""
    values = np.asarray(values, dtype=np.float64)
    rows, n = values.shape
    out = np.full((rows, k_max), np.nan)
    csum = np.concatenate([np.zeros((rows, 1)), np.cumsum(values, axis=1)], axis=1)
    for k in range(1, min(n, k_max) + 1):
        b = n // k
        out[:, k - 1] = csum[:, b * k] / b
    return out
