"""Resampling whole groups of rows (documents, windows) into per-distance profiles, without copying rows.

What the bootstrap (:mod:`.bootstrap`), the null simulations and the held-out check
(:mod:`.calibration`) all draw from: :func:`resampled_profiles` for replicates, and
:class:`ColumnAggregator` for the profile of any multiset of rows.
"""

from __future__ import annotations

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


class ColumnAggregator:
    """Per-distance statistic (:data:`STATISTICS`) of rows drawn with multiplicities, without copying rows.

    Each column's measured values (:func:`~green_profiles.kernel.counts.measured_mask`: zeros included) are
    sorted once. A bootstrap replicate is then a vector of row multiplicities, and
    the median of the expanded multiset is read off the cumulative counts in
    sorted order, which equals ``np.median`` of the explicitly resampled column
    (including the mean of the two middle values for an even count) at O(rows)
    per column instead of a gather and a partition; the trimmed mean likewise.
    """

    def __init__(self, rows: FloatArray, statistic: str) -> None:
        if statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}")
        self.statistic = statistic
        valid = measured_mask(rows)  # zeros (underflow) rank lowest; they are not missing
        if statistic == "geometric":
            valid &= rows > 0
        self.columns: list[tuple[NDArray[np.intp], FloatArray]] = []
        for j in range(rows.shape[1]):
            idx = np.nonzero(valid[:, j])[0]
            order = np.argsort(rows[idx, j], kind="stable")
            self.columns.append((idx[order], rows[idx[order], j]))

    def __call__(self, multiplicity: NDArray[np.int64]) -> FloatArray:
        """The per-distance statistic ``[n_r]`` of the rows, each counted ``multiplicity`` ``[n_rows]`` times.

        NaN at a distance with no valid value among the drawn rows.
        """
        out = np.full(len(self.columns), np.nan)
        for j, (idx, values) in enumerate(self.columns):
            counts = multiplicity[idx]
            cum = np.cumsum(counts)
            total = int(cum[-1]) if cum.size else 0
            if total == 0:
                continue
            if self.statistic == "mean":
                out[j] = float(counts @ values) / total
                continue
            if self.statistic == "geometric":
                out[j] = float(np.exp(counts @ np.log(values) / total))
                continue
            if self.statistic == "trimmed":
                cut = int(TRIM_FRACTION * total)
                kept = np.clip(np.minimum(cum, total - cut) - np.maximum(cum - counts, cut), 0, None)
                out[j] = float(kept @ values) / (total - 2 * cut)
                continue
            lo = int(np.searchsorted(cum, (total - 1) // 2, side="right"))
            hi = int(np.searchsorted(cum, total // 2, side="right"))
            out[j] = 0.5 * (values[lo] + values[hi])
        return out


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
    aggregate = ColumnAggregator(data, statistic)
    rng = np.random.default_rng(seed)
    replicates = np.empty((n_boot, data.shape[1]))
    for b in range(n_boot):
        group_count = np.bincount(rng.integers(0, n_groups, size=n_groups), minlength=n_groups)
        replicates[b] = aggregate(group_count[inverse])
    return aggregate(np.ones(data.shape[0], dtype=np.int64)), replicates, names


def jackknife_profiles(rows: ArrayLike, group: ArrayLike | None = None, *, statistic: str = "median") -> FloatArray:
    """The per-distance statistic of the rows with each group left out in turn: ``[n_groups, n_r]``, in the
    order of :func:`group_index`'s labels."""
    data = np.asarray(rows, dtype=np.float64)
    inverse, names = group_index(data.shape[0], group)
    aggregate = ColumnAggregator(data, statistic)
    return np.stack([aggregate((inverse != g).astype(np.int64)) for g in range(len(names))])
