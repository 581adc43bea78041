"""Which measured values count: one definition of a valid value of ``Ĝ``, and a count of those lost.

A value of the (normalized) sensitivity ``Ĝ`` is usable when it is finite and
strictly positive: only then does it have a logarithm, which the log-space fits
and the log-log plots need. NaN marks a missing entry (a distance a row does
not reach, a failed gradient), and zero or a negative number cannot come from a
ratio of gradient norms except through underflow or an error. Every place that
filters values (the fits' input cleaning, the bootstrap's per-distance median,
the profile aggregation) uses :func:`valid_mask`, so that they agree on what
"finite, positive" means. :func:`count_norms` counts the raw norms that this
rule drops (zeros from underflow, non-finite values), so that a run can say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["NormCounts", "count_norms", "measured_mask", "valid_mask"]


def valid_mask(values: ArrayLike) -> NDArray[np.bool_]:
    """``True`` where a value is finite and ``> 0``.

    Parameters
    ----------
    values:
        Any real array-like (dimensionless ``Ĝ`` values, weights, ...), any shape.

    Returns
    -------
    A boolean array of the same shape. NaN, ``±inf``, zero and negative values are
    ``False``; no warning is raised for NaN.
    """
    arr = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(arr) & (arr > 0)


def measured_mask(values: ArrayLike) -> NDArray[np.bool_]:
    """``True`` where a value is finite and ``>= 0``: what a median over rows ranks.

    A norm of exactly zero is a measurement (a gradient below the dtype's smallest number), the
    lowest value of its column, not a missing one: dropping it would move a median up. NaN and
    ``±inf`` are missing. Same shapes as :func:`valid_mask`.
    """
    arr = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(arr) & (arr >= 0)


@dataclass(frozen=True, eq=False)  # arrays: no element-wise __eq__
class NormCounts:
    """Gradient norms that came out exactly zero or not finite, among those that should be positive.

    Each field is an int64 array of the same shape: one count per row (``[R]``,
    ``[B, T]``, ...), or a 0-d array for a whole run. A causal model's norm from a
    source at or left of its target is positive in exact arithmetic; zero means
    underflow, and medians and fits leave such values out (:func:`valid_mask`).

    Attributes:
        zero: norms that are exactly ``0.0``.
        non_finite: norms that are NaN or infinite.
        total: norms counted.
    """

    zero: np.ndarray
    non_finite: np.ndarray
    total: np.ndarray

    def summed(self) -> dict[str, int]:
        """The counts over all rows: ``{"zero": ..., "non_finite": ..., "total": ...}``."""
        return {name: int(np.sum(getattr(self, name))) for name in ("zero", "non_finite", "total")}

    @property
    def zero_fraction(self) -> float:
        """Share of the counted norms that are zero, over all rows (0 when nothing was counted)."""
        summed = self.summed()
        return summed["zero"] / summed["total"] if summed["total"] else 0.0

    @property
    def non_finite_fraction(self) -> float:
        """Share of the counted norms that are NaN or infinite, over all rows."""
        summed = self.summed()
        return summed["non_finite"] / summed["total"] if summed["total"] else 0.0


def count_norms(
    norms: ArrayLike,
    targets: ArrayLike | None = None,
    *,
    min_source: int = 0,
) -> NormCounts:
    """Count zero and non-finite norms per row.

    Args:
        norms: ``[..., n]`` norms (an array or a CPU tensor; units do not matter). With
            ``targets``, full kernel rows ``[..., T, L]`` indexed by source position;
            without, values that all should be positive (a run's norms at its grid
            distances, every one of them a causal source).
        targets: target position ``j`` of each row, ``[T]`` (shared) or ``[..., T]``;
            then only sources ``min_source <= s <= j`` count: right of ``j`` the norm
            is zero by causality, left of ``min_source`` NaN by request.
        min_source: leftmost source counted (with ``targets``).

    Returns:
        :class:`NormCounts` with one count per row, shape ``norms.shape[:-1]``.
    """
    values = np.asarray(norms)
    counted = np.ones(values.shape, dtype=bool)
    if targets is not None:
        j = np.asarray(targets, dtype=np.int64)
        source = np.arange(values.shape[-1])
        counted = (source >= min_source) & (source <= j[..., None])
        counted = np.broadcast_to(counted, values.shape)
    zero = counted & (values == 0)
    non_finite = counted & ~np.isfinite(values)
    return NormCounts(zero.sum(-1), non_finite.sum(-1), counted.sum(-1))
