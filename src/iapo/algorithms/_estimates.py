"""A batch's utility estimates produced on demand, and their padding-free summation.

A round of a large run has many pulls: its estimates as one dense (pulls, C, n_max) float64
array are mostly padding (a pull of n says nothing at N > n) and reach gigabytes with many
contexts. :class:`Estimates` is that array computed on demand, a block of pulls at a time, so a
consumer (:class:`~iapo.algorithms.ArmStats`) holds a bounded slice of it at once: from the
simulator's draws (``iapo bench``) or from a round's results (:class:`PullEstimates`, the
``tell()`` path of ``iapo run``).

:func:`add_sums` adds each prompt's sums to running totals **bit for bit** as the dense
computation does: ``np.add.reduceat`` over a prompt's pulls (sorted by prompt, in batch order)
is ``first + pairwise(rest)`` per element, numpy's pairwise summation splitting a range of
n > 128 at ``n2 = n // 2 - (n // 2) % 8``. A prompt's pulls that fit in one block are summed by
numpy itself; a longer run is split at exactly numpy's points until the pieces fit, so the
sums, and hence every decision, are those of the dense array.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from iapo.types import PullResult

__all__ = [
    "ArrayEstimates",
    "Estimates",
    "MaskedEstimates",
    "PullEstimates",
    "add_sums",
    "as_array",
]

#: Elements (pulls × contexts × width) of estimates held at once by the summation.
BLOCK_ELEMENTS = 1 << 20
_PW_BLOCK = 128  # numpy's pairwise-summation leaf size (PW_BLOCKSIZE)


class Estimates(ABC):
    """Utility estimates of a batch of pulls, (pulls, C, width) as a dense array would hold them
    (column j: N = j + 1, NaN where a pull says nothing), computed a block of pulls at a time.

    ``sizes``: each pull's n when known (a block then needs only ``max n`` columns)."""

    def __init__(
        self, n_pulls: int, n_contexts: int, width: int, sizes: NDArray[np.int64] | None = None
    ) -> None:
        self.shape = (int(n_pulls), int(n_contexts), int(width))
        self.sizes = sizes
        self._pairs: dict[int, tuple[int, int]] | None = None  # see fetch

    def __len__(self) -> int:
        return self.shape[0]

    @abstractmethod
    def rows(self, index: NDArray[np.int64], width: int) -> NDArray[np.float64]:
        """(len(index), C, width): the estimates of pulls ``index`` (width ≤ ``shape[2]``)."""

    def width_of(self, index: NDArray[np.int64]) -> int:
        """Columns that may hold numbers for these pulls (the rest are NaN)."""
        if self.sizes is None or len(index) == 0:
            return self.shape[2]
        return min(self.shape[2], int(self.sizes[index].max()))

    def dense(self) -> NDArray[np.float64]:
        """The whole (pulls, C, width) array."""
        return self.rows(np.arange(self.shape[0], dtype=np.int64), self.shape[2])

    def masked(self, active: NDArray[np.bool_], prompt_index: NDArray[np.int64]) -> Estimates:
        """NaN wherever ``active[c, prompt_index[i], k]`` is False (a dead arm learns nothing)."""
        return MaskedEstimates(self, active, prompt_index)

    def fetch(self, index: NDArray[np.int64], width: int) -> NDArray[np.float64]:
        """:meth:`rows`, each pull estimated as in the whole batch: where ``sizes`` are known, a
        size that only one of ``index``'s pulls has is read beside another pull of that size
        (an estimator vectorised over the pulls of one size may round a group of one
        differently: numpy keeps a one-row transpose's memory order, and a reduction over it
        then sums in another order). What the summation and :meth:`blocks` read."""
        sizes = self.sizes
        if sizes is None or len(index) == len(sizes):
            return self.rows(index, width)
        pairs = getattr(self, "_pairs", None)
        if pairs is None:
            pairs = self._pairs = _first_two(sizes)
        ext = _with_companions(index, sizes, pairs)
        return self.rows(ext, width)[: len(index)]

    def head(self, k: int) -> Estimates:
        """The first ``k`` columns (``array[:, :, :k]``)."""
        return _Head(self, k)

    def blocks(
        self, block: int | None = None
    ) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float64]]]:
        """(pull indices, their rows at :meth:`width_of` columns) in batch order, about ``block``
        elements (default :data:`BLOCK_ELEMENTS`) at a time, never fewer than 128 pulls nor a
        lone last pull, read with :meth:`fetch`: the rows are the dense array's, bit for bit."""
        block = BLOCK_ELEMENTS if block is None else block
        n_pulls, n_ctx, width = self.shape
        step = max(_PW_BLOCK, block // max(1, n_ctx * width))
        lo = 0
        while lo < n_pulls:
            hi = min(lo + step, n_pulls)
            if n_pulls - hi == 1:  # no lone last pull
                hi = n_pulls
            index = np.arange(lo, hi, dtype=np.int64)
            yield index, self.fetch(index, self.width_of(index))
            lo = hi


class ArrayEstimates(Estimates):
    """A dense array as :class:`Estimates`."""

    def __init__(self, array: NDArray[np.float64]) -> None:
        super().__init__(*array.shape)
        self.array = array

    def rows(self, index: NDArray[np.int64], width: int) -> NDArray[np.float64]:
        return self.array[index, :, :width]

    def dense(self) -> NDArray[np.float64]:
        return self.array


class MaskedEstimates(Estimates):
    """``base`` with NaN where ``active`` (C, P, ≥ width) is False for the pull's prompt."""

    def __init__(
        self, base: Estimates, active: NDArray[np.bool_], prompt_index: NDArray[np.int64]
    ) -> None:
        super().__init__(*base.shape, sizes=base.sizes)
        self.base, self.active, self.prompt_index = base, active, prompt_index

    def width_of(self, index: NDArray[np.int64]) -> int:  # as the base narrows (adaptive: not)
        return self.base.width_of(index)

    def rows(self, index: NDArray[np.int64], width: int) -> NDArray[np.float64]:
        live = self.active[:, self.prompt_index[index], :width].transpose(1, 0, 2)
        return np.where(live, self.base.rows(index, width), np.nan)

    def dense(self) -> NDArray[np.float64]:
        k = self.shape[2]
        live = self.active[:, self.prompt_index, :k].transpose(1, 0, 2)
        return np.where(live, self.base.dense(), np.nan)


class _Head(Estimates):
    """``base``'s first ``k`` columns."""

    def __init__(self, base: Estimates, k: int) -> None:
        super().__init__(base.shape[0], base.shape[1], min(k, base.shape[2]), sizes=base.sizes)
        self.base = base

    def width_of(self, index: NDArray[np.int64]) -> int:
        return min(self.shape[2], self.base.width_of(index))

    def rows(self, index: NDArray[np.int64], width: int) -> NDArray[np.float64]:
        return self.base.rows(index, min(width, self.base.width_of(index)))[:, :, :width]


class PullEstimates(Estimates):
    """Estimates of pulls' results, computed by ``estimate`` a block of pulls at a time when read
    (the ``tell()`` path: a round of ``iapo run`` never holds its whole dense array).

    ``estimate(results, k)`` gives the (len(results), C, ``k``) estimates of those results at
    N ≤ ``k``; each pull's row must depend on that pull alone, as the built-in
    :meth:`Strategy.estimate <iapo.strategies.Strategy.estimate>` does (it estimates pull by pull,
    vectorised over pulls of one size). ``narrow``: a block may be estimated at ``k`` = its
    largest n instead of ``width`` (False with adaptive arms, whose columns depend on N_max).

    Read through :meth:`Estimates.fetch` (as the summation and :meth:`Estimates.blocks` read),
    a lone pull of some size is estimated beside another of that size, so the numbers are the
    dense array's."""

    def __init__(
        self,
        estimate: Callable[[Sequence[PullResult], int], NDArray[np.float64]],
        results: Sequence[PullResult],
        n_contexts: int,
        width: int,
        *,
        narrow: bool = True,
    ) -> None:
        sizes = np.array([len(r.samples) for r in results], dtype=np.int64)
        super().__init__(len(results), n_contexts, width, sizes=sizes)
        self.estimate, self.results, self.narrow = estimate, results, narrow

    def width_of(self, index: NDArray[np.int64]) -> int:
        return super().width_of(index) if self.narrow else self.shape[2]

    def rows(self, index: NDArray[np.int64], width: int) -> NDArray[np.float64]:
        got = self.estimate([self.results[i] for i in index.tolist()], width)
        return got[:, :, :width]


def _first_two(sizes: NDArray[np.int64]) -> dict[int, tuple[int, int]]:
    """Each size's first two pulls (-1: there is one only)."""
    pairs: dict[int, tuple[int, int]] = {}
    for i, size in enumerate(sizes.tolist()):
        first = pairs.get(size)
        if first is None:
            pairs[size] = (i, -1)
        elif first[1] < 0:
            pairs[size] = (first[0], i)
    return pairs


def _with_companions(
    index: NDArray[np.int64], sizes: NDArray[np.int64], pairs: dict[int, tuple[int, int]]
) -> NDArray[np.int64]:
    """``index``, then for each size that only one of its pulls has (where the batch has two)
    another pull of that size: estimated beside it, as in the whole batch (see
    :meth:`Estimates.fetch`)."""
    values, counts = np.unique(sizes[index], return_counts=True)
    extra = []
    for size in values[counts == 1].tolist():
        a, b = pairs[size]
        if b >= 0:
            extra.append(b if a in index else a)
    return np.concatenate([index, np.array(extra, dtype=np.int64)]) if extra else index


def as_array(estimates: NDArray[np.float64] | Estimates) -> NDArray[np.float64]:
    return estimates.dense() if isinstance(estimates, Estimates) else estimates


Sums = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]


def add_sums(
    total: NDArray[np.float64],
    total_sq: NDArray[np.float64],
    count: NDArray[np.int64],
    prompt_index: NDArray[np.int64],
    estimates: NDArray[np.float64] | Estimates,
    block: int | None = None,
) -> None:
    """Add every pull's estimates (and squares, and counts of non-NaN entries) to the (C, P, K)
    totals of its prompt, holding at most ``block`` elements of estimates at once (default
    :data:`BLOCK_ELEMENTS`); the same floats as :func:`_add_dense` on the whole array."""
    if len(prompt_index) == 0:
        return
    block = BLOCK_ELEMENTS if block is None else block
    if isinstance(estimates, np.ndarray):
        estimates = ArrayEstimates(estimates)
    n_pulls, n_ctx, width = estimates.shape
    if n_pulls * n_ctx * width <= block:
        _add_dense(total, total_sq, count, prompt_index, estimates.dense())
        return
    order = np.argsort(prompt_index, kind="stable")
    sorted_index = prompt_index[order]
    bounds = np.flatnonzero(np.r_[True, sorted_index[1:] != sorted_index[:-1], True])
    group: list[int] = []  # [first, end) positions in ``order`` of whole prompts summed together
    held = 0
    for s, e in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        rows = order[s:e]
        size = len(rows) * n_ctx * estimates.width_of(rows)
        if group and held + size > block:
            _flush(total, total_sq, count, prompt_index, estimates, order[group[0] : group[1]])
            group, held = [], 0
        if size > block:  # one prompt's pulls do not fit: split them as numpy's pairwise sum
            _add_split(total, total_sq, count, int(sorted_index[s]), estimates, rows, block)
            continue
        group = [group[0] if group else s, e]
        held += size
    if group:
        _flush(total, total_sq, count, prompt_index, estimates, order[group[0] : group[1]])


def _flush(
    total: NDArray[np.float64],
    total_sq: NDArray[np.float64],
    count: NDArray[np.int64],
    prompt_index: NDArray[np.int64],
    estimates: Estimates,
    rows: NDArray[np.int64],
) -> None:
    """Whole prompts' pulls ``rows`` (sorted by prompt, batch order within) summed densely."""
    arr = estimates.fetch(rows, estimates.width_of(rows))
    _add_dense(total, total_sq, count, prompt_index[rows], arr)


def _add_dense(
    total: NDArray[np.float64],
    total_sq: NDArray[np.float64],
    count: NDArray[np.int64],
    prompt_index: NDArray[np.int64],
    estimates: NDArray[np.float64],
) -> None:
    """The dense summation (the reference the blocked one reproduces)."""
    k = estimates.shape[2]
    ok = ~np.isnan(estimates)
    vals = np.where(ok, estimates, 0.0)
    # sum each prompt's pulls in one pass (sorted by prompt, np.add.reduceat), then add once
    # per prompt: much faster than np.add.at on big batches
    order = np.argsort(prompt_index, kind="stable")
    sorted_index = prompt_index[order]
    starts = np.flatnonzero(np.r_[True, sorted_index[1:] != sorted_index[:-1]])
    prompts = sorted_index[starts]
    v = vals[order]
    total[:, prompts, :k] += np.add.reduceat(v, starts, axis=0).transpose(1, 0, 2)
    total_sq[:, prompts, :k] += np.add.reduceat(v * v, starts, axis=0).transpose(1, 0, 2)
    count[:, prompts, :k] += np.add.reduceat(ok[order].astype(np.int64), starts, axis=0).transpose(
        1, 0, 2
    )


def _add_split(
    total: NDArray[np.float64],
    total_sq: NDArray[np.float64],
    count: NDArray[np.int64],
    prompt: int,
    estimates: Estimates,
    rows: NDArray[np.int64],
    block: int,
) -> None:
    """One prompt's pulls ``rows`` (batch order) summed as ``np.add.reduceat`` sums them:
    ``first + pairwise(rest)``, the pairwise tree split as numpy splits it."""
    n_ctx = estimates.shape[1]
    k = estimates.width_of(rows)
    fit = max(_PW_BLOCK, block // max(1, n_ctx * k))  # rows summed by numpy in one call
    first = _values(estimates, rows[:1], k)
    tot, sq, cnt = first[0][0], first[1][0], first[2][0]
    if len(rows) > 1:
        rest = _pairwise(estimates, rows[1:], k, fit)
        tot, sq, cnt = tot + rest[0], sq + rest[1], cnt + rest[2]
    total[:, prompt, :k] += tot
    total_sq[:, prompt, :k] += sq
    count[:, prompt, :k] += cnt.astype(np.int64)


def _values(estimates: Estimates, rows: NDArray[np.int64], k: int) -> Sums:
    """(values with NaN as 0, their squares, 1 where not NaN), each (len(rows), C, k)."""
    arr = estimates.fetch(rows, k)
    ok = ~np.isnan(arr)
    vals = np.where(ok, arr, 0.0)
    return vals, vals * vals, ok.astype(np.float64)


def _pairwise(estimates: Estimates, rows: NDArray[np.int64], k: int, fit: int) -> Sums:
    """numpy's pairwise sum over ``rows`` (per element), fetching at most ``fit`` rows at once."""
    n = len(rows)
    if n <= fit:
        vals, sq, ok = _values(estimates, rows, k)
        # -0.0 + pairwise(x) is pairwise(x) for every x: reduceat then sums exactly the rows
        zero = np.full((1, *vals.shape[1:]), -0.0)
        return (
            np.add.reduceat(np.concatenate([zero, vals]), [0], axis=0)[0],
            np.add.reduceat(np.concatenate([zero, sq]), [0], axis=0)[0],
            ok.sum(axis=0),  # counts: integers, exact in any order
        )
    half = n // 2
    half -= half % 8
    left = _pairwise(estimates, rows[:half], k, fit)
    right = _pairwise(estimates, rows[half:], k, fit)
    return left[0] + right[0], left[1] + right[1], left[2] + right[2]
