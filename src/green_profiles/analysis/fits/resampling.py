"""Resampling whole groups of rows (documents, windows) into per-distance profiles, without copying rows.

What the bootstrap (:mod:`.bootstrap`), the null simulations and the held-out check
(:mod:`.calibration`) all draw from: :func:`resampled_profiles` for replicates, and
:class:`ColumnAggregator` for the profile of any multiset of rows.

The replicates are computed many at a time, with no Python loop over replicates or distances
on the median's path; every number is the same, bit for bit, as the one-replicate-at-a-time
reading (the tests compare the two, and with the explicit resampled rows).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from green_profiles.analysis.fits.laws import FloatArray
from green_profiles.kernel.counts import measured_mask

__all__ = ["STATISTICS", "ColumnAggregator", "group_index", "jackknife_profiles", "resampled_profiles"]


# The per-distance statistics of rows: every one scales with its column (statistic(c x) = c statistic(x)), which
# the null simulations rely on (calibration.null_scale). "geometric" is the mean of logs (zeros, underflowed
# norms, are left out of it: one would make it zero); "trimmed" the mean without the lowest and highest
# TRIM_FRACTION of the values (as scipy.stats.trim_mean cuts them).
STATISTICS = ("median", "mean", "geometric", "trimmed")
TRIM_FRACTION = 0.1

# About how many array elements one batch of replicates may hold in its largest working array (8 MiB of int64).
_BATCH_ELEMENTS = 1 << 20
# The same for the weighted statistics' per-column arrays, which pass through several operations: kept in cache.
_WEIGHTED_ELEMENTS = 1 << 16
# Integers up to these are exact in float32 / float64 sums (the block counts are read off a matrix product).
_EXACT_FLOAT32 = 1 << 24
_EXACT_FLOAT64 = 1 << 53


class ColumnAggregator:
    """Per-distance statistic (:data:`STATISTICS`) of rows drawn with multiplicities, without copying rows.

    Each column's measured values (:func:`~green_profiles.kernel.counts.measured_mask`: zeros included) are
    sorted once, and the sorted columns are laid end to end. A bootstrap replicate is then a vector of
    multiplicities, and the median of the expanded multiset is read off the cumulative counts in sorted
    order, which equals ``np.median`` of the explicitly resampled column (including the mean of the two
    middle values for an even count) without a gather of rows or a partition; the trimmed mean likewise.

    Two ways in: :meth:`__call__` takes one vector of row multiplicities; :meth:`profiles` takes a
    matrix of group multiplicities ``[n_replicates, n_groups]`` (``group`` gives each row's group) and
    reads all replicates at once. For the median it never expands the rows: each sorted column is cut
    into blocks of ``block_size`` values, a block's count in every replicate is one matrix product of the
    group multiplicities with each group's rows per block (exact: small integers), the block holding each
    middle rank is found from their cumulative sums, and only that block's rows are counted. The other
    statistics weigh every value, so :meth:`profiles` expands the multiplicities to the values in batches
    of replicates and sums them with the same dot product as :meth:`__call__`. Either way the numbers are
    bitwise those of :meth:`__call__` on ``group_counts[b][group]``.
    """

    def __init__(self, rows: FloatArray, statistic: str, group: ArrayLike | None = None) -> None:
        """``rows`` ``[n_rows, n_r]``; ``group`` each row's group as an index ``[n_rows]`` into
        ``range(n_groups)`` (:func:`group_index`'s first value; ``None``: each row its own group)."""
        if statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}")
        self.statistic = statistic
        data = np.asarray(rows, dtype=np.float64)
        valid = measured_mask(data)  # zeros (underflow) rank lowest; they are not missing
        if statistic == "geometric":
            valid &= data > 0
        n_rows, n_r = data.shape
        indices, values = [], []
        for j in range(n_r):
            idx = np.nonzero(valid[:, j])[0]
            order = np.argsort(data[idx, j], kind="stable")
            indices.append(idx[order])
            values.append(data[idx[order], j])
        self.n_rows, self.n_r = n_rows, n_r
        # The sorted columns end to end: entry e is row _row[e] of column j for _bounds[j] <= e < _bounds[j + 1].
        self._row = np.concatenate(indices).astype(np.intp) if indices else np.zeros(0, dtype=np.intp)
        self._values = np.concatenate(values) if values else np.zeros(0)
        self._bounds = np.concatenate([[0], np.cumsum([len(idx) for idx in indices], dtype=np.intp)]).astype(np.intp)
        # Logs taken column by column, as the one-replicate reading took them (the same elementwise calls).
        self._logs = np.concatenate([np.log(v) for v in values]) if statistic == "geometric" and values \
            else self._values
        if group is None:
            self._group = np.arange(n_rows, dtype=np.intp)
        else:
            self._group = np.asarray(group, dtype=np.intp).ravel()
            if self._group.size != n_rows or (n_rows and self._group.min() < 0):
                raise ValueError(f"group must give each of the {n_rows} rows a group index >= 0")
        self.n_groups = int(self._group.max()) + 1 if n_rows else 0
        self._entry_group = self._group[self._row]
        self._layout: _BlockLayout | None = None

    @property
    def block_size(self) -> int:
        """Sorted values per block in :meth:`profiles`' median (more groups: larger blocks, fewer of them)."""
        return self._block_layout().size

    def __call__(self, multiplicity: NDArray[np.int64]) -> FloatArray:
        """The per-distance statistic ``[n_r]`` of the rows, each counted ``multiplicity`` ``[n_rows]`` times.

        NaN at a distance with no valid value among the drawn rows.
        """
        counts = np.asarray(multiplicity, dtype=np.int64).ravel()
        if counts.size != self.n_rows:
            raise ValueError(f"multiplicity must have one count per row ({self.n_rows}), got {counts.size}")
        if self.statistic == "median":
            return self._median_of_values(counts[self._row][None, :])[0]
        return self._weighted(lambda start, stop: counts[self._row[start:stop]][None, :], 1)[0]

    def profiles(self, group_counts: ArrayLike) -> FloatArray:
        """The per-distance statistic ``[n, n_r]`` of each of ``n`` multisets of rows: every row of group
        ``g`` counted ``group_counts[b, g]`` times in multiset ``b`` (``group_counts`` ``[n, n_groups]``).

        Row ``b`` equals ``self(group_counts[b][group])`` bitwise; NaN where no valid value was drawn.
        """
        counts = np.asarray(group_counts, dtype=np.int64)
        if counts.ndim != 2 or counts.shape[1] != self.n_groups:
            raise ValueError(f"group_counts must be [n, {self.n_groups}], got shape {counts.shape}")
        if counts.size and counts.min() < 0:
            raise ValueError("group_counts must not be negative")
        n = counts.shape[0]
        if n == 0 or self._values.size == 0:
            return np.full((n, self.n_r), np.nan)
        if self.statistic == "median":
            return self._median_by_group(counts)
        batch = max(1, _WEIGHTED_ELEMENTS // int(np.diff(self._bounds).max()))
        parts = []
        for start in range(0, n, batch):
            drawn = counts[start:start + batch]
            parts.append(self._weighted(lambda first, stop, drawn=drawn: np.take(
                drawn, self._entry_group[first:stop], axis=1), drawn.shape[0]))
        return np.concatenate(parts)

    # -- one count per sorted value ------------------------------------------------------------------

    def _weighted(self, column_counts: Callable[[int, int], NDArray[np.int64]], n: int) -> FloatArray:
        """The mean, geometric or trimmed mean ``[n, n_r]``, each column's multiplicities ``[n, values]`` in
        sorted order given by ``column_counts(start, stop)`` for its values ``start:stop``."""
        out = np.full((n, self.n_r), np.nan)
        for j in range(self.n_r):
            start, stop = int(self._bounds[j]), int(self._bounds[j + 1])
            if start == stop:
                continue
            column = column_counts(start, stop)
            if self.statistic == "trimmed":
                cum = np.cumsum(column, axis=1)
                total = cum[:, -1].copy()
                cut = (TRIM_FRACTION * total).astype(np.int64)  # int() of the float, as one replicate at a time
                # Each value's copies among the kept ranks cut..total-cut: min(cum, total - cut) - max(cum - count,
                # cut), at least 0 (in place: these columns are the largest arrays here).
                below = cum - column
                np.maximum(below, cut[:, None], out=below)
                np.minimum(cum, (total - cut)[:, None], out=cum)
                cum -= below
                kept = np.maximum(cum, 0, out=cum)
                value = _dot(kept, self._values[start:stop])
                denominator = total - 2 * cut
            else:
                total = column.sum(axis=1)
                value = _dot(column, self._logs[start:stop])
                denominator = total
            drawn = total > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                value = value / np.where(drawn, denominator, 1)
            if self.statistic == "geometric":
                value = np.exp(value)
            out[:, j] = np.where(drawn, value, np.nan)
        return out

    def _median_of_values(self, counts: NDArray[np.int64]) -> FloatArray:
        """The medians ``[n, n_r]`` from each sorted value's multiplicity ``counts`` ``[n, n_values]``: one
        cumulative sum over all values of all replicates end to end (every count is >= 0, so it never decreases)
        and one search for every replicate's and distance's two middle ranks."""
        n, n_values = counts.shape
        out = np.full((n, self.n_r), np.nan)
        flat = np.cumsum(counts.ravel())
        # Cumulative count before each column's first value (and after the last column) in each replicate.
        edges = (np.arange(n)[:, None] * n_values + self._bounds[None, :]).ravel()
        before = np.where(edges > 0, flat[np.maximum(edges - 1, 0)], 0).reshape(n, self.n_r + 1)
        base, total = before[:, :-1], np.diff(before, axis=1)
        drawn = total > 0
        row_start = (np.arange(n) * n_values)[:, None]
        middle = []
        for rank in ((total - 1) // 2, total // 2):
            # The first value whose cumulative count exceeds the rank, as np.searchsorted(cum, rank, "right").
            found = np.searchsorted(flat, np.where(drawn, base + rank, 0).ravel(), side="right").reshape(n, -1)
            middle.append(self._values[np.clip(found - row_start, 0, n_values - 1)])
        out[drawn] = (0.5 * (middle[0] + middle[1]))[drawn]
        return out

    # -- the median from block counts ----------------------------------------------------------------

    def _block_layout(self) -> _BlockLayout:
        if self._layout is None:
            self._layout = _BlockLayout(self._entry_group, self._values, self._bounds, self.n_groups)
        return self._layout

    def _median_by_group(self, counts: NDArray[np.int64]) -> FloatArray:
        """The medians ``[n, n_r]`` of the multisets ``counts`` ``[n, n_groups]`` (see the class docstring)."""
        layout = self._block_layout()
        n, n_r, size, n_blocks = counts.shape[0], self.n_r, layout.size, layout.n_blocks
        # A block's count is at most (groups drawn) x (a group's values in the block); so is every partial sum.
        bound = int(counts.sum(axis=1).max()) * layout.max_per_group
        if bound >= _EXACT_FLOAT64:
            raise ValueError(f"group_counts too large for exact block counts ({bound})")
        matrix = layout.matrix(np.float32 if bound < _EXACT_FLOAT32 else np.float64)
        small = np.int32 if bound < 2**31 else np.int64
        out = np.empty((n, n_r))
        batch = max(1, _BATCH_ELEMENTS // max(self.n_groups + 1, n_blocks + 1, n_r * size))
        for start in range(0, n, batch):
            out[start:start + batch] = self._median_batch(counts[start:start + batch], layout, matrix, small)
        return out

    def _median_batch(self, counts: NDArray[np.int64], layout: _BlockLayout, matrix: NDArray[np.floating],
                      small: type) -> FloatArray:
        n, n_r, size, n_blocks = counts.shape[0], self.n_r, layout.size, layout.n_blocks
        # Each block's count in each replicate, then cumulative counts before every block: [n, n_blocks + 1].
        block_counts = (counts.astype(matrix.dtype) @ matrix).astype(np.int64)  # exact: integers below the bound
        cum = np.zeros((n, n_blocks + 1), dtype=np.int64)
        np.cumsum(block_counts, axis=1, out=cum[:, 1:])
        base = cum[:, layout.column_blocks[:-1]]
        total = cum[:, layout.column_blocks[1:]] - base
        drawn = total > 0
        low_rank = base + np.where(drawn, (total - 1) // 2, 0)  # ranks counted from the replicate's first block
        high_rank = base + np.where(drawn, total // 2, 0)
        # The replicates' cumulative counts end to end, each shifted above the last: one increasing array.
        shift = np.concatenate([[0], np.cumsum(cum[:, -1] + 1)[:-1]])
        flat = (cum + shift[:, None]).ravel()
        row_start = np.arange(n) * (n_blocks + 1)

        def block_of(rank: NDArray[np.int64], row: NDArray[np.intp]) -> NDArray[np.intp]:
            """The block holding each ``rank`` (counted from replicate ``row``'s first block)."""
            found = np.searchsorted(flat, rank + shift[row], side="right")
            return np.clip(found - 1 - row_start[row], 0, n_blocks - 1)

        block = block_of(low_rank.ravel(), np.repeat(np.arange(n), n_r)).reshape(n, n_r)  # the lower middle's
        before = np.take_along_axis(cum, block, axis=1)
        padded = np.zeros((n, self.n_groups + 1), dtype=small)  # group n_groups: the blocks' padding, never drawn
        padded[:, :-1] = counts
        inside = np.take_along_axis(padded, layout.slot_group[block].reshape(n, n_r * size), axis=1)
        inside = np.cumsum(inside.reshape(n, n_r, size), axis=2, dtype=small)
        # The first value in the block whose cumulative count exceeds the rank (np.searchsorted(..., "right")).
        low_at = (inside <= (low_rank - before).astype(small)[..., None]).sum(axis=2)
        high_at = (inside <= (high_rank - before).astype(small)[..., None]).sum(axis=2)
        low = layout.slot_value[block, np.minimum(low_at, size - 1)]
        high = layout.slot_value[block, np.minimum(high_at, size - 1)]
        # The upper middle value opens a later block when the lower one is its block's last drawn value.
        rows, columns = np.nonzero(drawn & (high_rank >= np.take_along_axis(cum, block + 1, axis=1)))
        if rows.size:
            rank = high_rank[rows, columns]
            later = block_of(rank, rows)
            counted = np.cumsum(padded[rows[:, None], layout.slot_group[later]], axis=1, dtype=small)
            at = (counted <= (rank - cum[rows, later]).astype(small)[:, None]).sum(axis=1)
            high[rows, columns] = layout.slot_value[later, np.minimum(at, size - 1)]
        return np.where(drawn, 0.5 * (low + high), np.nan)


class _BlockLayout:
    """The sorted values of every column cut into blocks of ``size`` (a column's last block may be shorter).

    ``slot_group`` and ``slot_value`` ``[n_blocks, size]`` are the blocks' values' groups and values, padded
    with the group ``n_groups`` (never drawn) and NaN; ``column_blocks`` ``[n_r + 1]`` the first block of each
    column; ``matrix(dtype)`` ``[n_groups, n_blocks]`` each group's values per block; ``max_per_group`` its
    largest entry.
    """

    def __init__(self, entry_group: NDArray[np.intp], values: FloatArray, bounds: NDArray[np.intp],
                 n_groups: int) -> None:
        n_values, n_r = values.size, bounds.size - 1
        self.size = _block_size(n_groups, n_values, n_r)
        lengths = np.diff(bounds)
        per_column = -(-lengths // self.size)
        self.column_blocks = np.concatenate([[0], np.cumsum(per_column)]).astype(np.intp)
        self.n_blocks = n_blocks = int(self.column_blocks[-1])
        column = np.repeat(np.arange(n_r), per_column)
        first = bounds[column] + (np.arange(n_blocks) - self.column_blocks[column]) * self.size
        length = np.minimum(self.size, bounds[column + 1] - first)
        slots = first[:, None] + np.arange(self.size)[None, :]
        used = np.arange(self.size)[None, :] < length[:, None]
        slots = np.where(used, slots, 0)
        self.slot_group = np.where(used, entry_group[slots], n_groups).astype(np.intp)
        self.slot_value = np.where(used, values[slots], np.nan)
        block = np.repeat(np.arange(n_blocks), length)
        per_group = np.bincount(entry_group * n_blocks + block, minlength=n_groups * n_blocks)
        self.max_per_group = int(per_group.max()) if per_group.size else 0
        # Entries are at most `size`, far below float32's exact integers.
        self._matrices = {np.dtype(np.float32): per_group.reshape(n_groups, n_blocks).astype(np.float32)}

    def matrix(self, dtype: type) -> NDArray[np.floating]:
        key = np.dtype(dtype)
        if key not in self._matrices:
            self._matrices[key] = self._matrices[np.dtype(np.float32)].astype(key)
        return self._matrices[key]


def _dot(counts: NDArray[np.int64], values: FloatArray) -> FloatArray:
    """``counts[b] @ values`` for every row ``b``, each summed exactly as that one-row product sums it.

    ``np.vecdot`` hands each contiguous float64 row to the BLAS dot product, which is what ``@`` does with
    one row (an int64 row cast to float64 first); a row with a stride (a Fortran-ordered gather) would be
    summed in another order, hence the C-ordered copy.
    """
    return np.vecdot(np.ascontiguousarray(counts, dtype=np.float64), np.ascontiguousarray(values))


def _block_size(n_groups: int, n_values: int, n_r: int) -> int:
    """Values per block for :class:`ColumnAggregator`'s median: the power of two nearest ``sqrt(n_groups x
    values per column / 256)`` (at least 16, at most a column), which balances the matrix product
    (``n_groups x n_blocks`` per replicate) against the counting inside the middle blocks (``n_r x size``);
    doubled while the matrix would hold more than 2**23 entries."""
    per_column = max(1, -(-n_values // max(n_r, 1)))
    largest = max(16, 2 ** math.ceil(math.log2(per_column)))
    size = min(largest, 2 ** max(4, round(0.5 * math.log2(max(n_groups, 1) * per_column / 256))))
    while size < largest and n_groups * (n_values / size + n_r) > 2**23:
        size *= 2
    return size


def group_index(n_rows: int, group: ArrayLike | None) -> tuple[NDArray[np.intp], tuple[str, ...]]:
    """Each row's group as an index ``[n_rows]`` into the sorted group labels, and those labels.

    Raises:
        ValueError: no rows, or not one label per row.
    """
    if group is None:
        inverse = np.arange(n_rows)
        names = tuple(str(i) for i in range(n_rows))
    else:
        labels = np.asarray(group).ravel()
        if labels.size != n_rows:
            raise ValueError(f"group must have one label per row ({n_rows}), got {labels.size}")
        unique, inverse = np.unique(labels, return_inverse=True)
        names = tuple(str(label) for label in unique)
    if not names:
        raise ValueError("rows is empty")
    return inverse, names


def drawn_counts(rng: np.random.Generator, n_groups: int, n: int) -> NDArray[np.int64]:
    """``[n, n_groups]``: how often each group was drawn in each of ``n`` replicates of ``n_groups`` draws with
    replacement.

    One call ``rng.integers(0, n_groups, size=(n, n_groups))`` draws the same numbers as ``n`` calls of
    ``size=n_groups`` in turn (numpy's bounded integers take their 32-bit halves from the generator's own
    state, not from a buffer of the call), so a replicate's groups do not depend on how the replicates are
    batched; the tests pin this.
    """
    draws = rng.integers(0, n_groups, size=(n, n_groups))
    offsets = (np.arange(n, dtype=np.int64) * n_groups)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=n * n_groups).reshape(n, n_groups)


def resampled_profiles(
    rows: ArrayLike,
    group: ArrayLike | None = None,
    *,
    n_boot: int,
    seed: int | list[int] | None = 0,
    statistic: str = "median",
) -> tuple[FloatArray, FloatArray, tuple[str, ...]]:
    """The per-distance statistic of the rows, and of ``n_boot`` group resamples of them: what
    :func:`bootstrap_fits` fits.

    Args:
        rows: ``[n_rows, n_r]`` values (see :func:`bootstrap_fits`).
        group: one label per row (``None``: each row its own group).
        n_boot: replicates; each draws as many groups as there are, with replacement.
        seed: seeds the draws; the same seed, groups and ``n_boot`` draw the same groups.
        statistic: one of :data:`STATISTICS`, per distance.

    Returns:
        the full-data profile ``[n_r]``, the replicates ``[n_boot, n_r]``, and the groups' labels in the
        order the draws index them.

    Raises:
        ValueError: no rows, or not one label per row.
    """
    data = np.asarray(rows, dtype=np.float64)
    inverse, names = group_index(data.shape[0], group)
    n_groups = len(names)
    aggregate = ColumnAggregator(data, statistic, inverse)
    rng = np.random.default_rng(seed)
    replicates = np.empty((n_boot, data.shape[1]))
    batch = max(1, _BATCH_ELEMENTS // n_groups)
    for start in range(0, n_boot, batch):
        stop = min(n_boot, start + batch)
        replicates[start:stop] = aggregate.profiles(drawn_counts(rng, n_groups, stop - start))
    return aggregate(np.ones(data.shape[0], dtype=np.int64)), replicates, names


def jackknife_profiles(rows: ArrayLike, group: ArrayLike | None = None, *, statistic: str = "median") -> FloatArray:
    """The per-distance statistic of the rows with each group left out in turn: ``[n_groups, n_r]``, in the
    order of :func:`group_index`'s labels."""
    data = np.asarray(rows, dtype=np.float64)
    inverse, names = group_index(data.shape[0], group)
    n_groups = len(names)
    aggregate = ColumnAggregator(data, statistic, inverse)
    batch = max(1, _BATCH_ELEMENTS // n_groups)
    parts = []
    for start in range(0, n_groups, batch):
        left_out = np.arange(start, min(n_groups, start + batch))
        counts = np.ones((left_out.size, n_groups), dtype=np.int64)
        counts[np.arange(left_out.size), left_out] = 0
        parts.append(aggregate.profiles(counts))
    return np.concatenate(parts)
