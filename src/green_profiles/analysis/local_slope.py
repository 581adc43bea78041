"""The local slope of a profile, ``-d log Ĝ / d log(r+1)``, read without fitting any law.

A power law ``(r+1)^-p`` has the same local slope ``p`` at every distance, so a scaling range shows
as a plateau; a floor makes the slope fall towards zero where the profile flattens; an exponential
``exp(-r/ξ)`` has a slope that grows like ``(r+1)/ξ``. Reading the slope this way does not depend on
the trade-off between floor and exponent that a three-parameter fit makes (methods page, "The local
slope").

The slope at a grid distance ``c`` is the least-squares slope of ``log Ĝ`` against ``log(r+1)`` over
the grid points within ``width/2`` octaves of it (``|log2((r+1)/(c+1))| <= width/2``; 1.5 octaves by
default, the narrowest window that holds three points of the paper's grid, whose steps reach a factor
1.5), so a grid that is denser somewhere gives a steadier reading there and no slope rests on two points.
Its band is the percentile interval over document-bootstrap replicates of the median profile
(:func:`~green_profiles.analysis.fits.resampling.resampled_profiles`), the same draws as the fits'.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from green_profiles.analysis.fits.resampling import resampled_profiles

__all__ = ["LocalSlope", "Plateau", "local_slope", "local_slopes", "plateau"]

FloatArray = NDArray[np.float64]

# A plateau must span at least this many octaves of r + 1 to be called one: over a shorter range any smooth
# curve looks straight.
MIN_PLATEAU_OCTAVES = 2.0


@dataclass(frozen=True)
class Plateau:
    """A range of distances over which one slope lies inside every local slope's band.

    Attributes:
        start, stop: the first and last distance ``r`` (tokens) of the range, both included.
        level: the mean local slope over the range, on the full data.
        low, high: its percentile interval over the bootstrap replicates.
    """

    start: float
    stop: float
    level: float
    low: float
    high: float

    @property
    def octaves(self) -> float:
        """The range's span in octaves of ``r + 1``."""
        return float(np.log2((self.stop + 1.0) / (self.start + 1.0)))


@dataclass(frozen=True)
class LocalSlope:
    """The local slope of one median profile with its bootstrap band.

    Attributes:
        distances: ``[n_c]`` the grid distances ``r`` (tokens) at which the slope is read.
        slope: ``[n_c]`` ``-d log Ĝ / d log(r+1)`` of the full data's profile (dimensionless).
        low, high: ``[n_c]`` the band: percentiles ``(1 - level)/2`` and ``(1 + level)/2`` of the replicates.
        replicates: ``[n_boot, n_c]`` the slope of each bootstrap replicate (NaN where it has no value).
        plateau: the widest range of at least ``MIN_PLATEAU_OCTAVES`` octaves on which one slope lies in
            every band, or ``None``.
    """

    distances: FloatArray
    slope: FloatArray
    low: FloatArray
    high: FloatArray
    replicates: FloatArray
    plateau: Plateau | None


def local_slopes(distances: ArrayLike, profiles: ArrayLike, *, width: float = 1.5,
                 min_distance: int = 1) -> tuple[FloatArray, FloatArray]:
    """The local slope of one or many profiles on a grid.

    Args:
        distances: ``[n_r]`` grid distances ``r`` (tokens), increasing.
        profiles: ``[n_r]`` or ``[n_boot, n_r]`` positive values of ``Ĝ`` at those distances.
        width: the window in octaves of ``r + 1`` over which each slope is fitted (centred on its distance).
        min_distance: the smallest distance used (``Ĝ(0) = 1`` by the normalization, so 1 by default).

    Returns:
        ``(centres [n_c], slopes [..., n_c])``: the distances with at least 3 grid points in their window,
        and ``-d log Ĝ / d log(r+1)`` there. A window with a non-positive or missing value gives NaN.
    """
    r = np.asarray(distances, dtype=np.float64)
    values = np.asarray(profiles, dtype=np.float64)
    keep = r >= min_distance
    r, values = r[keep], values[..., keep]
    x = np.log(r + 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(values > 0, np.log(values), np.nan)
    half = width / 2 * np.log(2.0) + 1e-12
    centres, slopes = [], []
    for i, centre in enumerate(x):
        inside = np.abs(x - centre) <= half
        if inside.sum() < 3:
            continue
        xs = x[inside] - x[inside].mean()
        ys = y[..., inside]
        slope = (ys - ys.mean(axis=-1, keepdims=True)) @ xs / (xs @ xs)
        centres.append(r[i])
        slopes.append(-slope)
    if not centres:
        return np.empty(0), np.empty(values.shape[:-1] + (0,))
    return np.asarray(centres), np.stack(slopes, axis=-1)


def plateau(distances: ArrayLike, slope: ArrayLike, low: ArrayLike, high: ArrayLike, replicates: ArrayLike, *,
            level: float = 0.95, min_octaves: float = MIN_PLATEAU_OCTAVES) -> Plateau | None:
    """The widest contiguous range (in octaves) on which one value lies inside every point's band.

    Args:
        distances: ``[n_c]`` where the slopes are read; slope, low, high: ``[n_c]``; replicates:
            ``[n_boot, n_c]``.
        level: of the level's interval.
        min_octaves: the shortest span called a plateau.

    Returns:
        the :class:`Plateau`, or ``None`` when no range of ``min_octaves`` qualifies.
    """
    r = np.asarray(distances, dtype=np.float64)
    lo, hi = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    best: tuple[float, int, int] | None = None
    for i in range(len(r)):
        floor, ceiling = -np.inf, np.inf
        for j in range(i, len(r)):
            if not (np.isfinite(lo[j]) and np.isfinite(hi[j])):
                break
            floor, ceiling = max(floor, lo[j]), min(ceiling, hi[j])
            if floor > ceiling:
                break
            span = np.log2((r[j] + 1.0) / (r[i] + 1.0))
            if span >= min_octaves and (best is None or span > best[0]):
                best = (float(span), i, j)
    if best is None:
        return None
    _, i, j = best
    levels = np.nanmean(np.asarray(replicates, dtype=np.float64)[:, i:j + 1], axis=1)
    tail = (1.0 - level) / 2 * 100
    return Plateau(start=float(r[i]), stop=float(r[j]), level=float(np.mean(np.asarray(slope)[i:j + 1])),
                   low=float(np.nanpercentile(levels, tail)), high=float(np.nanpercentile(levels, 100 - tail)))


def local_slope(distances: ArrayLike, rows: ArrayLike, group: ArrayLike | None = None, *, n_boot: int = 2000,
                seed: int = 0, level: float = 0.95, width: float = 1.5, statistic: str = "median") -> LocalSlope:
    """The local slope of the rows' median profile, with a band from resampling whole groups.

    Args:
        distances: ``[n_r]`` grid distances (tokens).
        rows: ``[n_rows, n_r]`` normalized norms ``Ĝ`` (one row per target).
        group: one label per row (documents): the bootstrap's unit (``None``: rows).
        n_boot: bootstrap replicates.
        seed: seeds the draws (the same seed and groups draw the same replicates as the fits' bootstrap).
        level: of the band and of the plateau level's interval.
        width: octaves per slope window (:func:`local_slopes`).
        statistic: ``"median"`` or ``"mean"`` per distance.
    """
    full, replicates, _ = resampled_profiles(rows, group, n_boot=n_boot, seed=seed, statistic=statistic)
    centres, slope = local_slopes(distances, full, width=width)
    _, replicate_slopes = local_slopes(distances, replicates, width=width)
    tail = (1.0 - level) / 2 * 100
    with np.errstate(all="ignore"):
        low = np.nanpercentile(replicate_slopes, tail, axis=0) if n_boot else np.full_like(slope, np.nan)
        high = np.nanpercentile(replicate_slopes, 100 - tail, axis=0) if n_boot else np.full_like(slope, np.nan)
    found = plateau(centres, slope, low, high, replicate_slopes, level=level) if n_boot else None
    return LocalSlope(distances=centres, slope=slope, low=low, high=high, replicates=replicate_slopes,
                      plateau=found)
