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

A plateau is a test, not a reading of the bands (:func:`plateau`): a range of distances is split into three
equal thirds in ``log(r+1)``, and the range is a plateau when every change of slope between two of its thirds
is shown to lie within ``±PLATEAU_MARGIN`` (equivalence tests on the bootstrap replicates; three thirds, not
two halves, because an exponential with floor rises and then falls, which two halves can average away). The ranges tried are fixed before the data are seen (from the first distance to ends
about an octave apart, each at least two octaves wide), and each is tested at ``α/m`` for ``m`` ranges
(Bonferroni), so that taking the widest range that passes does not inflate the error. Earlier versions called
a range a plateau when one value fitted inside every point's band, which found "plateaus" in exponentials
whenever the bands were wide.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from green_profiles.analysis.fits.resampling import resampled_profiles

__all__ = ["PLATEAU_MARGIN", "LocalSlope", "Plateau", "candidate_ranges", "local_slope", "local_slopes", "plateau"]

FloatArray = NDArray[np.float64]

# A plateau must span at least this many octaves of r + 1 to be called one (an octave for each third whose
# slopes are compared): over a shorter range any smooth curve looks straight.
MIN_PLATEAU_OCTAVES = 3.0
# The most the slope may change between two thirds of a plateau (dimensionless, like p): the width of the
# paper's band of exponents. An exponential with floor changes by 0.5-1.5 over the default grid's ranges.
PLATEAU_MARGIN = 0.2


@dataclass(frozen=True)
class Plateau:
    """A range of distances over which the local slope is shown constant (:func:`plateau`).

    Attributes:
        start, stop: the first and last distance ``r`` (tokens) of the range, both included.
        level: the mean slope over the range (minus the least-squares slope of ``log Ĝ`` on ``log(r+1)``), on the
            full data.
        low, high: its percentile interval over the bootstrap replicates (at the band's level).
        change: the largest change of slope between two thirds of the range, on the full data.
        change_low, change_high: the interval of that change the equivalence test read (at ``1 − 2α/m``).
        n_ranges: ``m``, the number of ranges tried (the Bonferroni divisor).
        margin: the equivalence margin of ``change``.
    """

    start: float
    stop: float
    level: float
    low: float
    high: float
    change: float = float("nan")
    change_low: float = float("nan")
    change_high: float = float("nan")
    n_ranges: int = 1
    margin: float = PLATEAU_MARGIN

    @property
    def octaves(self) -> float:
        """The range's span in octaves of ``r + 1``."""
        return float(np.log2((self.stop + 1.0) / (self.start + 1.0)))

    @property
    def decays(self) -> bool:
        """Whether the level's interval lies above zero (a scaling range, not a floor)."""
        return bool(self.low > 0.0)


@dataclass(frozen=True)
class LocalSlope:
    """The local slope of one median profile with its bootstrap band.

    Attributes:
        distances: ``[n_c]`` the grid distances ``r`` (tokens) at which the slope is read.
        slope: ``[n_c]`` ``-d log Ĝ / d log(r+1)`` of the full data's profile (dimensionless).
        low, high: ``[n_c]`` the band: percentiles ``(1 - level)/2`` and ``(1 + level)/2`` of the replicates.
        replicates: ``[n_boot, n_c]`` the slope of each bootstrap replicate (NaN where it has no value).
        plateau: the widest range of at least ``MIN_PLATEAU_OCTAVES`` octaves over which the slope is shown
            constant (:func:`plateau`), or ``None``.
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


def candidate_ranges(distances: ArrayLike, *, min_distance: float = 1.0,
                     min_octaves: float = MIN_PLATEAU_OCTAVES) -> list[tuple[int, int]]:
    """The ranges :func:`plateau` tries, as index pairs ``(first, last)`` (both included) into ``distances``.

    Each starts at the first distance ``≥ min_distance`` and ends at the grid distance nearest to ``2^k``
    octaves beyond it (k = ``min_octaves``, ``min_octaves + 1``, ...), so the family depends on the grid alone
    and holds one range per octave of reach (7 on the default grid).
    """
    r = np.asarray(distances, dtype=np.float64)
    usable = np.nonzero(r >= min_distance)[0]
    if usable.size < 3:
        return []
    first = int(usable[0])
    octaves = np.log2((r[usable] + 1.0) / (r[first] + 1.0))
    x = np.log1p(r[usable])
    out: list[tuple[int, int]] = []
    k = min_octaves
    while k <= octaves[-1] + 0.5:
        reach = np.nonzero(octaves >= min_octaves - 1e-9)[0]
        if reach.size == 0:
            break
        nearest = int(reach[np.argmin(np.abs(octaves[reach] - k))])
        last = int(usable[nearest])
        # Each third of the range needs two grid points of its own for a slope.
        edges = np.linspace(x[0], x[nearest], 4)
        counts = [int(np.sum((x[: nearest + 1] >= edges[i] - 1e-12) & (x[: nearest + 1] <= edges[i + 1] + 1e-12)))
                  for i in range(3)]
        if (not out or out[-1][1] != last) and min(counts) >= 2:
            out.append((first, last))
        k += 1.0
    return out


def _range_fits(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Minus the slope of ``y [n, k]`` on ``x [k]`` over the whole range ``[n]``, and the changes of slope between
    its thirds in ``x`` ``[3, n]`` (middle minus first, last minus middle, last minus first); NaN where a value
    is missing."""

    def slope(mask: NDArray[np.bool_]) -> FloatArray:
        xs = x[mask] - x[mask].mean()
        ys = y[:, mask]
        return -((ys - ys.mean(axis=1, keepdims=True)) @ xs) / (xs @ xs)

    edges = np.linspace(x.min(), x.max(), 4)
    thirds = np.stack([slope((x >= edges[i] - 1e-12) & (x <= edges[i + 1] + 1e-12)) for i in range(3)])
    changes = np.stack([thirds[1] - thirds[0], thirds[2] - thirds[1], thirds[2] - thirds[0]])
    return slope(np.ones_like(x, dtype=bool)), changes


def plateau(distances: ArrayLike, profile: ArrayLike, replicates: ArrayLike, *, level: float = 0.95,
            margin: float = PLATEAU_MARGIN, min_octaves: float = MIN_PLATEAU_OCTAVES,
            min_distance: float = 1.0) -> Plateau | None:
    """The widest of the :func:`candidate_ranges` over which the local slope is shown constant, or ``None``.

    Args:
        distances: ``[n_r]`` grid distances (tokens); profile: ``[n_r]`` the full data's profile ``Ĝ``;
            replicates: ``[n_boot, n_r]`` its bootstrap replicates.
        level: ``1 − α``; each of the ``m`` ranges is tested at ``α/m``.
        margin: the largest change of the local slope across a range that still counts as constant.
        min_octaves: the narrowest range tried; min_distance: where the ranges start.

    Returns:
        the widest range whose change of slope has its ``1 − 2α/m`` interval (percentiles of the replicates)
        inside ``±margin`` (two one-sided tests at ``α/m``), as a :class:`Plateau` with its level; ``None`` when
        no range passes.
    """
    r = np.asarray(distances, dtype=np.float64)
    full = np.asarray(profile, dtype=np.float64)
    boot = np.asarray(replicates, dtype=np.float64)
    ranges = candidate_ranges(r, min_distance=min_distance, min_octaves=min_octaves)
    if not ranges or boot.shape[0] == 0:
        return None
    alpha = 1.0 - level
    each = alpha / len(ranges)
    best: Plateau | None = None
    for first, last in ranges:
        columns = np.arange(first, last + 1)
        x = np.log1p(r[columns])
        with np.errstate(divide="ignore", invalid="ignore"):
            y_full = np.log(np.where(full[columns] > 0, full[columns], np.nan))[None, :]
            y_boot = np.log(np.where(boot[:, columns] > 0, boot[:, columns], np.nan))
        if not np.isfinite(y_full).all():
            continue
        complete = np.isfinite(y_boot).all(axis=1)
        if complete.mean() < 1.0 - each:  # too many replicates without a value to read the tail at α/m
            continue
        level_full, change_full = _range_fits(x, y_full)
        levels, changes = _range_fits(x, y_boot[complete])
        # Every change between thirds must be shown within the margin: an intersection of tests, which needs no
        # correction within the range.
        lows = np.percentile(changes, 100 * each, axis=1)
        highs = np.percentile(changes, 100 * (1 - each), axis=1)
        if not (np.all(-margin < lows) and np.all(highs < margin)):
            continue
        worst = int(np.argmax(np.maximum(np.abs(lows), np.abs(highs))))
        low, high = np.percentile(levels, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        best = Plateau(start=float(r[first]), stop=float(r[last]), level=float(level_full[0]), low=float(low),
                       high=float(high), change=float(change_full[worst, 0]), change_low=float(lows[worst]),
                       change_high=float(highs[worst]), n_ranges=len(ranges), margin=margin)
    return best


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
    found = plateau(distances, full, replicates, level=level) if n_boot else None
    return LocalSlope(distances=centres, slope=slope, low=low, high=high, replicates=replicate_slopes,
                      plateau=found)
