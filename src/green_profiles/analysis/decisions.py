"""Readings of bootstrap results as tests with a known error rate: agreement with a band, and many differences.

Two readings the book makes are decisions, and each is made here as a test at a stated level α
(``1 − confidence`` of the bootstrap, 0.05 by default):

- **Is ``p`` in the paper's band?** Lakens' two one-sided tests (TOST) of equivalence: ``p`` is shown
  *inside* the band when the ``1 − 2α`` (90%) interval of its replicates lies inside it (each of the two
  one-sided tests rejects "``p`` is beyond that edge" at α); it is shown *outside* when the ``1 − α``
  (95%) interval lies entirely above or below it. Otherwise the data cannot tell (*inconclusive*): with
  an interval wider than the band, no outcome but "inconclusive" or "outside" is possible. A point
  estimate inside the band, or an interval that reaches into it, shows nothing
  (:func:`band_test`, :class:`BandTest`).
- **Which of many differences are resolved?** Each difference's bootstrap p-value (the two-sided
  p-value of "the difference is zero" that inverts the percentile interval: :func:`bootstrap_pvalue`)
  and Holm's step-down adjustment over the family read together (:func:`holm`), so that the chance of
  calling any true zero difference resolved is at most α over the whole family, not α for each.

Units: ``p`` is dimensionless (the exponent of ``c + A (r+1)^-p``); p-values are probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from green_profiles.analysis.fits.bootstrap import BootstrapResult, small_sample_method
from green_profiles.analysis.fits.intervals import IntervalMethod, interval
from green_profiles.analysis.fits.laws import PAPER_P_RANGE

__all__ = ["BAND_VERDICTS", "INCONCLUSIVE", "INSIDE", "NO_ESTIMATE", "OUTSIDE", "BandTest", "band_decision",
           "band_test", "bootstrap_pvalue", "difference_pvalue", "holm", "holm_text"]

INSIDE = "inside the paper's band"
OUTSIDE = "outside the paper's band"
INCONCLUSIVE = "inconclusive"
NO_ESTIMATE = "no estimate"
# The outcomes of a band test, in the order pages count them.
BAND_VERDICTS: tuple[str, ...] = (INSIDE, OUTSIDE, INCONCLUSIVE, NO_ESTIMATE)


def holm(pvalues: ArrayLike) -> NDArray[np.float64]:
    """Holm's step-down adjusted p-values of a family of tests, in the input's order and shape.

    With the ``m`` finite p-values sorted, ``p_(1) <= ... <= p_(m)``, the adjusted value of ``p_(i)`` is
    ``max_{j <= i} min(1, (m − j + 1) p_(j))``: monotone in the raw p-values, never below them, capped
    at 1. Rejecting where the adjusted p-value is below α keeps the chance of any false rejection in the
    family at most α, whatever the dependence between the tests. A NaN (no test) stays NaN and does not
    count towards ``m``.

    Raises:
        ValueError: a finite p-value outside [0, 1].
    """
    values = np.asarray(pvalues, dtype=np.float64)
    flat = values.ravel()
    finite = np.isfinite(flat)
    if np.any((flat[finite] < 0.0) | (flat[finite] > 1.0)):
        raise ValueError(f"p-values must lie in [0, 1], got {flat[finite].min()}–{flat[finite].max()}")
    out = np.full(flat.shape, np.nan)
    where = np.flatnonzero(finite)
    m = where.size
    if m:
        order = np.argsort(flat[where], kind="stable")
        ranked = flat[where][order]
        adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * ranked))
        out[where[order]] = adjusted
    return out.reshape(values.shape)


def bootstrap_pvalue(replicates: ArrayLike, null: float = 0.0) -> float:
    """The two-sided bootstrap p-value of "the statistic equals ``null``", from replicates of it.

    The smallest α at which the percentile interval of the replicates excludes ``null``:
    ``min(1, 2 min(1 + #(x <= null), 1 + #(x >= null)) / (1 + n))`` over the ``n`` finite replicates
    (the ``+1`` keeps it above zero: with 2,000 replicates it is at least about 0.001). NaN when no
    replicate is finite. For a difference of two runs pass the replicate-wise differences
    (:func:`difference_pvalue`).
    """
    values = np.asarray(replicates, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan
    below = 1 + int(np.sum(values <= null))
    above = 1 + int(np.sum(values >= null))
    return float(min(1.0, 2.0 * min(below, above) / (1 + values.size)))


def difference_pvalue(a: BootstrapResult, b: BootstrapResult, key: str = "p_power_floor") -> float:
    """:func:`bootstrap_pvalue` of ``key`` of ``a`` minus ``key`` of ``b``, from their replicate-wise differences.

    The differences are those :func:`~green_profiles.analysis.fits.paired_difference` reads its interval
    from (``a.replicates[key][:n] − b.replicates[key][:n]``, ``n`` the smaller number of replicates): paired
    where both bootstraps resampled the same groups, unpaired otherwise. NaN when no difference is finite.
    """
    n = min(a.n_boot, b.n_boot)
    return bootstrap_pvalue(a.replicates[key][:n] - b.replicates[key][:n])


def holm_text(adjusted: float, over: str) -> str:
    """``"Holm-adjusted p = 0.012 over 20 specifications"``: an adjusted p-value and the family it was corrected
    over (``over``: ``"20 specifications"``), or ``"no p-value"`` where it is NaN."""
    if not math.isfinite(adjusted):
        return "no p-value"
    return f"Holm-adjusted p = {adjusted:.2g}" + (f" over {over}" if over else "")


@dataclass(frozen=True)
class BandTest:
    """Where an exponent stands against a band (by default the paper's ``p`` of 0.7–0.9), as a test.

    Attributes:
        verdict: ``"inside the paper's band"`` (the ``1 − 2α`` interval lies inside the band: equivalence
            shown by two one-sided tests at α), ``"outside the paper's band"`` (the ``1 − α`` interval lies
            entirely above or below it), ``"inconclusive"`` (neither; or more than α/2 of the replicates were
            left out), ``"no estimate"`` (the point estimate is NaN).
        p: the point estimate (dimensionless).
        low90, high90: the ``1 − 2α`` interval (90% at α = 0.05); NaN where no replicate is finite.
        low95, high95: the ``1 − α`` interval (95%).
        band: the band, ``(low, high)``.
        alpha: the level of each test (``1 − confidence`` of the bootstrap).
        left_out: the share of replicates left out of the intervals (failed, flat or at a bound).
    """

    verdict: str
    p: float
    low90: float
    high90: float
    low95: float
    high95: float
    band: tuple[float, float] = PAPER_P_RANGE
    alpha: float = 0.05
    left_out: float = 0.0

    @property
    def band_text(self) -> str:
        return f"{self.band[0]:g}–{self.band[1]:g}"

    def __str__(self) -> str:
        narrow, wide = f"{100 * (1 - 2 * self.alpha):g}%", f"{100 * (1 - self.alpha):g}%"
        inner = f"{narrow} interval [{self.low90:.2f}, {self.high90:.2f}]"
        if self.verdict == NO_ESTIMATE:
            return NO_ESTIMATE
        if self.verdict == INSIDE:
            return f"{INSIDE} (equivalence test: {inner} inside {self.band_text})"
        if self.verdict == OUTSIDE:
            side = "above" if self.low95 > self.band[1] else "below"
            return f"{OUTSIDE} ({wide} interval [{self.low95:.2f}, {self.high95:.2f}] {side} it)"
        if self.left_out > self.alpha / 2:
            return (f"{INCONCLUSIVE}: {100 * self.left_out:.1f}% of the bootstrap replicates were left out of the "
                    f"interval of p, more than {100 * self.alpha / 2:g}%")
        if not (math.isfinite(self.low90) and math.isfinite(self.high90)):
            return f"{INCONCLUSIVE}: no replicate with a usable p"
        if self.high90 - self.low90 > self.band[1] - self.band[0]:
            why = "the interval is wider than the band"
        elif self.low90 < self.band[0] <= self.high90 or self.low90 <= self.band[1] < self.high90:
            edge = self.band[0] if self.low90 < self.band[0] <= self.high90 else self.band[1]
            why = f"it straddles the band's edge at {edge:g}"
        else:
            why = f"the {wide} interval [{self.low95:.2f}, {self.high95:.2f}] reaches into it"
        return f"{INCONCLUSIVE}: {inner} is not inside {self.band_text} ({why})"


def band_decision(point: float, replicates: ArrayLike, *, confidence: float = 0.95, n_groups: int = 0,
                  method: IntervalMethod = "percentile", left_out: float = 0.0,
                  band: tuple[float, float] = PAPER_P_RANGE) -> BandTest:
    """The band test of :func:`band_test` from its parts: a point estimate and its bootstrap replicates.

    Args:
        point: the full-data estimate (NaN: "no estimate").
        replicates: ``[n_boot]`` replicate values; non-finite ones are left out.
        confidence: ``1 − α`` of the bootstrap: the inside test reads the ``1 − 2α`` interval, the outside
            test the ``1 − α`` interval.
        n_groups, method: how the intervals are read (:func:`~green_profiles.analysis.fits.intervals.interval`).
        left_out: the share of replicates left out (failed, flat or at a bound); above α/2 the result is
            "inconclusive".
        band: ``(low, high)``, with ``low < high``.
    """
    if not band[0] < band[1]:
        raise ValueError(f"band must be (low, high) with low < high, got {band}")
    alpha = round(1.0 - confidence, 12)  # 1 - 0.95 is 0.05000000000000004 in floats
    values = np.asarray(replicates, dtype=np.float64)
    low90, high90 = interval(values, 1.0 - 2.0 * alpha, method, n_groups=n_groups)
    low95, high95 = interval(values, 1.0 - alpha, method, n_groups=n_groups)
    parts = dict(p=float(point), low90=low90, high90=high90, low95=low95, high95=high95, band=tuple(band),
                 alpha=alpha, left_out=float(left_out))
    if not math.isfinite(point):
        return BandTest(verdict=NO_ESTIMATE, **parts)
    if left_out > alpha / 2 or not (math.isfinite(low95) and math.isfinite(high95)):
        return BandTest(verdict=INCONCLUSIVE, **parts)
    if band[0] <= low90 and high90 <= band[1]:
        return BandTest(verdict=INSIDE, **parts)
    if low95 > band[1] or high95 < band[0]:
        return BandTest(verdict=OUTSIDE, **parts)
    return BandTest(verdict=INCONCLUSIVE, **parts)


def band_test(result: BootstrapResult, band: tuple[float, float] = PAPER_P_RANGE,
              key: str = "p_power_floor") -> BandTest:
    """Whether statistic ``key`` of a bootstrap (default ``p`` of ``c + A (r+1)^-p``) is shown inside ``band``,
    shown outside it, or neither: Lakens' TOST at α = ``1 − result.confidence``.

    "inside the paper's band" when the ``1 − 2α`` (90%) interval of the replicates lies inside the band;
    "outside the paper's band" when the ``1 − α`` (95%) interval lies entirely above or below it;
    "inconclusive" otherwise, and also when more than α/2 of the replicates were left out of the statistic
    (``result.left_out(key)``); "no estimate" when the full-data estimate is NaN. Each claim is wrong at
    most α of the time at its edge of the band (a true ``p`` of exactly 0.9 reads "inside" at most 5% of the
    time). The intervals are read as the book reads the bootstrap's: the result's own method (the
    percentile interval, expanded below :data:`~green_profiles.analysis.fits.bootstrap.SMALL_SAMPLE_GROUPS`
    groups: :func:`~green_profiles.analysis.fits.bootstrap.small_sample_method`).
    """
    method = result.interval_method if result.interval_method in ("percentile", "expanded") \
        else small_sample_method(result.n_groups)
    return band_decision(result.point_estimates[key], result.replicates[key], confidence=result.confidence,
                         n_groups=result.n_groups, method=method, left_out=result.left_out(key), band=band)
