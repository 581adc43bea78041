"""Bootstrap over groups of rows (windows, documents) of the decay fits, and the verdict it supports.

Rows that share a window (or a document) share its text, so they are not
independent; :func:`bootstrap_fits` resamples whole groups, recomputes the
per-distance median (or mean) profile and refits, giving intervals for ``p`` and
for the log-RMSE gap between the exponential and the power law, both with floor
(percentile intervals, expanded below :data:`SMALL_SAMPLE_GROUPS` groups). A
replicate whose fit is flat or has its shape parameter at a bound measures no
decay: it is left out of that statistic's interval (and of the gap) and counted,
and a verdict resting on an interval that left out more than α/2 of the
replicates is undecided. Whether the profile decays at all is tested without a
model: the interval of its decay trend (minus the slope of ``log Ĝ`` on ``log(r+1)``
over every fitted distance) must lie above zero. Which law it follows is decided by
the null simulations of :mod:`.calibration`. :func:`verdict` turns the result into a :class:`Verdict`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from green_profiles.analysis.fits.batched import BatchFit, fit_profiles
from green_profiles.analysis.fits.calibration import N_SIM, Calibration, calibrate
from green_profiles.analysis.fits.fitting import FitResult, FitTable, fit_decay_models, rmse_gap
from green_profiles.analysis.fits.intervals import IntervalMethod, interval
from green_profiles.analysis.fits.laws import FloatArray
from green_profiles.analysis.fits.resampling import STATISTICS, resampled_profiles
from green_profiles.kernel.counts import valid_mask

__all__ = ["N_BOOT", "NO_DECAY", "RULE_VERSION", "BootstrapResult", "PairedDifference", "Verdict", "Winner", "bootstrap_fits",
           "decay_trend", "fit_replicates", "paired_difference", "verdict"]

# Below this many resampled groups (documents) intervals are read as expanded percentiles, where the percentile
# interval under-covers; from here on it holds (the coverage simulation: book/methods.md, "Few documents").
SMALL_SAMPLE_GROUPS: int = 8

# Replicates of a bootstrap unless asked otherwise: the 2.5% endpoint of a 95% interval then rests on 50
# replicates, and two seeds move it by a few hundredths of p (the methods page says how much).
N_BOOT: int = 2000

# Bumped whenever the verdict's rule, its tests or their defaults change: benchmarks/error_rates.py records it
# with the error rates it measured, and a test refuses tables measured under another rule.
RULE_VERSION: int = 2

Winner = Literal["power law", "exponential", "neither", "undecided", "flat", "rising", "failed"]
# The verdicts that say the profile does not decay (no law is compared, no exponent shown).
NO_DECAY: tuple[str, ...] = ("flat", "rising")

# Each bootstrap statistic: the models whose fits it needs, and how to read it off a table.
_STATISTIC_MODELS: dict[str, tuple[str, ...]] = {
    "p_power_floor": ("power_floor",),
    "p_power": ("power",),
    "c_power_floor": ("power_floor",),
    "xi_exp_floor": ("exp_floor",),
    "rmse_gap": ("power_floor", "exp_floor"),
}
_STATISTIC_PARAM: dict[str, str] = {"p_power_floor": "p", "p_power": "p", "c_power_floor": "c", "xi_exp_floor": "xi"}


def _statistics(table: FitTable) -> dict[str, tuple[float, str]]:
    """Each statistic's value and its status: ``""`` (usable), ``"failed"`` or the issue that excludes it.

    The value is NaN unless every fit the statistic needs is usable
    (:attr:`FitResult.usable`). The gap is ``rmse(exp_floor) - rmse(power_floor)``.
    """
    out: dict[str, tuple[float, str]] = {}
    for key, models in _STATISTIC_MODELS.items():
        found = {name: table.get(name) for name in models}
        failed = [name for name, fit in found.items() if fit is None or not fit.success]
        if failed:
            out[key] = (math.nan, "failed: " + ", ".join(failed))
            continue
        fits: list[FitResult] = [fit for fit in found.values() if fit is not None]
        issue = "; ".join(f"{fit.name}: {fit.issue}" for fit in fits if fit.issue)
        if issue:
            out[key] = (math.nan, issue)
        elif key == "rmse_gap":
            out[key] = (rmse_gap(table), "")
        else:
            out[key] = (float(fits[0].params[_STATISTIC_PARAM[key]]), "")
    return out


def _replicate_statistics(fits: dict[str, BatchFit]) -> tuple[dict[str, FloatArray], dict[str, int], dict[str, int]]:
    """:func:`_statistics` for every replicate at once: values ``[n_boot]`` (NaN where left out), and the
    counts of replicates left out because a fit failed and because one was not usable."""
    values: dict[str, FloatArray] = {}
    n_failed: dict[str, int] = {}
    n_excluded: dict[str, int] = {}
    for key, models in _STATISTIC_MODELS.items():
        needed = [fits[name] for name in models]
        failed = ~np.logical_and.reduce([fit.success for fit in needed])
        usable = np.logical_and.reduce([fit.usable for fit in needed])
        if key == "rmse_gap":
            with np.errstate(invalid="ignore"):
                value = fits["exp_floor"].rmse - fits["power_floor"].rmse
        else:
            value = needed[0].param(_STATISTIC_PARAM[key])
        values[key] = np.where(usable, value, np.nan)
        n_failed[key] = int(failed.sum())
        n_excluded[key] = int((~failed & ~usable).sum())
    return values, n_failed, n_excluded


@dataclass(frozen=True)
class BootstrapResult:
    """Group bootstrap of the decay fits (groups are windows unless ``unit`` says otherwise).

    ``replicates`` maps each statistic to its ``[n_boot]`` replicate values:
    ``p_power_floor``, ``p_power``, ``c_power_floor``, ``xi_exp_floor`` and
    ``rmse_gap`` (``rmse(exp_floor) - rmse(power_floor)``, log-RMSE in nats,
    positive = power law wins). A replicate value is NaN where a fit it needs
    failed (counted in ``n_failed``) or is not usable, i.e. flat or with its shape
    parameter at a bound (counted in ``n_excluded``). ``intervals`` holds the
    percentile interval of each over its finite replicates (NaN, NaN when none).
    ``point`` is the full fit table of the full-data profile;
    ``point_estimates`` applies the same exclusions to it and ``point_issues``
    says why a point value is NaN. ``power_wins_fraction`` is the share of
    replicates with a finite gap in which the gap is positive. ``groups`` are the
    resampled groups' labels in the order the draws index them (empty when the
    replicates were resampled elsewhere): two results with the same groups, seed
    and ``n_boot`` resampled the same groups in every replicate, which
    :func:`paired_difference` uses. ``interval_method`` says how the intervals were read
    (``"percentile"``, or ``"expanded"`` with fewer than :data:`SMALL_SAMPLE_GROUPS`
    groups). ``calibration`` holds the null simulations (:mod:`.calibration`) when they were run;
    ``trend`` is the full-data decay trend (:func:`decay_trend`), whose replicates are ``replicates["trend"]``.

    The RMSEs include the noise of the resampled profile, which is larger than
    that of the full-data profile, so the replicate gaps tend to sit below the
    point gap (the interval can even exclude it): the gap's interval estimates no
    fixed quantity, and the verdict does not read it where the null simulations ran.
    The ``p`` intervals showed no such shift on synthetic data. Leaving out unusable replicates makes an
    interval conditional on a usable fit; the counts say how much was left out.
    """

    point: FitTable
    replicates: dict[str, FloatArray]
    intervals: dict[str, tuple[float, float]]
    power_wins_fraction: float
    n_boot: int
    n_groups: int
    confidence: float
    statistic: str
    seed: int | None
    n_failed: dict[str, int] = field(default_factory=dict)
    n_excluded: dict[str, int] = field(default_factory=dict)
    unit: str = "window"
    log_drop: float = math.nan
    drop_distances: tuple[float, float] = (math.nan, math.nan)
    groups: tuple[str, ...] = ()
    calibration: Calibration | None = None
    interval_method: str = "percentile"
    trend: float = math.nan

    @property
    def point_estimates(self) -> dict[str, float]:
        """The same statistics as ``replicates`` from the full-data fit (NaN where failed or not usable)."""
        return {**{key: value for key, (value, _) in _statistics(self.point).items()}, "log_drop": self.log_drop,
                "trend": self.trend}

    @property
    def point_issues(self) -> dict[str, str]:
        """Why each point estimate is NaN (``"power_floor: flat"``, ``"failed: ..."``), ``""`` where it is usable."""
        drop = "" if math.isfinite(self.log_drop) else "fewer than two valid distances"
        return {**{key: issue for key, (_, issue) in _statistics(self.point).items()}, "log_drop": drop,
                "trend": drop}

    def left_out(self, key: str) -> float:
        """The share of replicates left out of statistic ``key``'s interval (failed, flat or at a bound)."""
        return (self.n_failed.get(key, 0) + self.n_excluded.get(key, 0)) / self.n_boot

    def __str__(self) -> str:
        point, issues = self.point_estimates, self.point_issues
        groups = f"{self.n_groups} {_plural(self.unit, self.n_groups)}"
        lines = [f"{self.unit} bootstrap: {self.n_boot} replicates over {groups}, "
                 f"{self.statistic} profile, {100 * self.confidence:g}% {_method_text(self.interval_method)} intervals"]
        for key, (lo, hi) in self.intervals.items():
            counts = [f"{n} {what}" for what, n in (("failed", self.n_failed.get(key, 0)),
                                                    ("excluded", self.n_excluded.get(key, 0))) if n]
            if counts:
                counts.append(f"{100 * self.left_out(key):.1f}% left out")
            lines.append(f"  {key:<14} {point[key]:.4g}  [{lo:.4g}, {hi:.4g}]"
                         + (f"  ({', '.join(counts)})" if counts else "")
                         + (f"  point fit: {issues[key]}" if issues[key] else ""))
        if math.isfinite(self.power_wins_fraction):
            lines.append(f"  power law wins in {100 * self.power_wins_fraction:.1f}% of replicates")
        else:
            lines.append("  power law wins: no replicate with a usable gap")
        return "\n".join(lines)


def _method_text(method: str) -> str:
    return f"expanded percentile (fewer than {SMALL_SAMPLE_GROUPS} groups)" if method == "expanded" else method


def small_sample_method(n_groups: int) -> IntervalMethod:
    """``"expanded"`` below :data:`SMALL_SAMPLE_GROUPS` groups, ``"percentile"`` from there on."""
    return "expanded" if n_groups < SMALL_SAMPLE_GROUPS else "percentile"


def _plural(unit: str, count: int) -> str:
    return unit if count == 1 else f"{unit}s"


def bootstrap_fits(
    r: ArrayLike,
    rows: ArrayLike,
    n_boot: int = N_BOOT,
    seed: int | None = 0,
    group: ArrayLike | None = None,
    statistic: Literal["median", "mean", "geometric", "trimmed"] = "median",
    *,
    confidence: float = 0.95,
    weights: ArrayLike | None = None,
    group_name: str = "window",
    n_sim: int | None = None,
) -> BootstrapResult:
    """Percentile bootstrap of the decay fits, resampling whole groups of rows, and the calibrated checks.

    Rows from one window (or document) share its text, so they are not
    independent; resampling groups (not rows) keeps that correlation inside each
    replicate.

    Parameters
    ----------
    r:
        Distances in tokens, shape ``[n_r]`` (``r = 0`` may be included; the fit drops it).
    rows:
        Normalized profile values ``Ĝ`` (dimensionless), shape ``[n_rows, n_r]``;
        NaN, ``±inf`` or a negative value marks a missing entry and is ignored; a zero (a
        norm below the dtype's range) ranks lowest (:func:`~green_profiles.kernel.counts.measured_mask`).
    n_boot:
        Number of bootstrap replicates.
    seed:
        Seed of the resampling; the same seed gives identical results.
    group:
        Group label of each row, shape ``[n_rows]`` (any labels); ``None`` treats
        each row as its own group.
    statistic:
        ``"median"`` (the paper's), ``"mean"``, ``"geometric"`` (mean of logs) or ``"trimmed"`` (10%
        trimmed mean) per distance over valid values (:data:`~.resampling.STATISTICS`).
    confidence:
        Coverage of the percentile intervals (0.95 gives the 2.5th-97.5th percentiles).
    weights:
        Optional per-distance fit weights ``[n_r]``, passed to :func:`fit_decay_models`.
    group_name:
        What a group is (``"window"``, ``"document"``), recorded as ``unit`` and
        used in the printed result and the verdict sentence.
    n_sim:
        Simulated profiles per law for :func:`~green_profiles.analysis.fits.calibration.calibrate`
        (0: no calibration; the verdict then rests on the gap's interval alone); ``None``:
        ``min(N_SIM, n_boot)``, so that a quick look with few replicates stays quick.

    Returns
    -------
    A :class:`BootstrapResult` with replicate arrays ``[n_boot]`` (NaN where a fit
    failed or is flat or at a bound), intervals, per-statistic counts of failed and
    excluded replicates, the full-data fit and the fraction of replicates in which
    the power law wins.
    """
    r_arr = np.asarray(r, dtype=np.float64).ravel()
    data = np.asarray(rows, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != r_arr.size:
        raise ValueError(f"rows must be [n_rows, {r_arr.size}], got shape {data.shape}")
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    profile, replicates, names = resampled_profiles(data, group, n_boot=n_boot, seed=seed, statistic=statistic)
    result = fit_replicates(r_arr, profile, replicates, n_groups=len(names), weights=weights, confidence=confidence,
                            seed=seed, statistic=statistic, group_name=group_name)
    checks = None
    n_sim = min(N_SIM, n_boot) if n_sim is None else n_sim
    if n_sim > 0:
        checks = calibrate(r_arr, data, group, n_sim=n_sim, seed=seed, statistic=statistic, weights=weights,
                           start_params={f.name: f.params for f in result.point if f.success})
    return dataclasses.replace(result, groups=names, calibration=checks)


def fit_replicates(
    r: ArrayLike,
    profile: ArrayLike,
    replicate_profiles: ArrayLike,
    *,
    n_groups: int,
    weights: ArrayLike | None = None,
    confidence: float = 0.95,
    seed: int | None = None,
    statistic: str = "median",
    group_name: str = "window",
    interval_method: IntervalMethod | Literal["auto"] = "auto",
) -> BootstrapResult:
    """Fit a profile and its bootstrap replicates, and summarize them as a :class:`BootstrapResult`.

    The fitting half of :func:`bootstrap_fits`, for profiles resampled elsewhere
    (e.g. the mutual information of :mod:`green_profiles.analysis.text_statistics`, whose
    replicates resample documents). The full-data profile is fitted with lmfit
    (:func:`fit_decay_models`); the replicates all at once with
    :func:`~green_profiles.analysis.fits.batched.fit_profiles`, which also starts each from the
    full-data optimum; values that are not valid (:func:`~green_profiles.kernel.counts.valid_mask`)
    are left out of that replicate's fit, as in :func:`fit_decay_models`.

    Parameters
    ----------
    r:
        Distances in tokens, shape ``[n_r]``.
    profile:
        The full-data profile ``[n_r]`` (positive values; the units of the fitted law).
    replicate_profiles:
        One resampled profile per row, shape ``[n_boot, n_r]``.
    n_groups:
        How many groups (windows, documents) each replicate resampled; recorded.
    weights, confidence:
        As in :func:`bootstrap_fits`.
    seed, statistic, group_name:
        Recorded in the result (``statistic`` names what the profile is, e.g. ``"median"``).
    interval_method:
        How intervals are read off the replicates (:mod:`.intervals`); ``"auto"``: the expanded
        percentile below :data:`SMALL_SAMPLE_GROUPS` groups, the percentile interval otherwise
        (:func:`small_sample_method`). Replicates that are not a bootstrap (half-samples) say
        ``"percentile"``.

    Returns
    -------
    A :class:`BootstrapResult` (see :func:`bootstrap_fits`).
    """
    r_arr = np.asarray(r, dtype=np.float64).ravel()
    profiles = np.asarray(replicate_profiles, dtype=np.float64)
    if profiles.ndim != 2 or profiles.shape[1] != r_arr.size:
        raise ValueError(f"replicate_profiles must be [n_boot, {r_arr.size}], got shape {profiles.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n_boot = profiles.shape[0]
    if n_boot < 1:
        raise ValueError("replicate_profiles has no replicate")
    point = fit_decay_models(r_arr, profile, weights)
    # Warm start every replicate from the full-data optimum: replicates are small
    # perturbations of it, so this is usually the best start and costs one fit.
    warm = {f.name: f.params for f in point if f.success}

    # The replicates all at once (batched.fit_profiles: the same least squares as fit_decay_models,
    # checked against it in the tests), each also started from the full-data optimum.
    replicates, n_failed, n_excluded = _replicate_statistics(
        fit_profiles(r_arr, profiles, weights, start_params=warm))
    # The model-free test of decay: the total log drop between the first and the last fitted distance.
    point_profile = np.asarray(profile, dtype=np.float64).ravel()
    columns = np.nonzero((r_arr >= 1) & valid_mask(point_profile))[0]
    log_drop, drop_distances = math.nan, (math.nan, math.nan)
    replicates["log_drop"] = np.full(n_boot, np.nan)
    if columns.size >= 2:
        first, last = int(columns[0]), int(columns[-1])
        log_drop = float(np.log(point_profile[first]) - np.log(point_profile[last]))
        drop_distances = (float(r_arr[first]), float(r_arr[last]))
        ends = profiles[:, [first, last]]
        valid = valid_mask(ends).all(axis=1)
        safe = np.where(valid[:, None], ends, 1.0)
        replicates["log_drop"] = np.where(valid, np.log(safe[:, 0]) - np.log(safe[:, 1]), np.nan)
    n_failed["log_drop"] = int(np.isnan(replicates["log_drop"]).sum())
    n_excluded["log_drop"] = 0
    # The model-free test of decay that the verdict reads: the trend of log Ĝ against log(r+1) over every fitted
    # distance (the endpoints alone gave a test with little power).
    trend = decay_trend(r_arr[columns], point_profile[None, columns])[0] if columns.size >= 2 else math.nan
    replicates["trend"] = (decay_trend(r_arr[columns], profiles[:, columns]) if columns.size >= 2
                           else np.full(n_boot, np.nan))
    n_failed["trend"] = int(np.isnan(replicates["trend"]).sum())
    n_excluded["trend"] = 0

    method = interval_method if interval_method != "auto" else small_sample_method(n_groups)
    intervals = {key: interval(values, confidence, method, n_groups=n_groups) for key, values in replicates.items()}
    gaps = replicates["rmse_gap"][np.isfinite(replicates["rmse_gap"])]
    wins = float(np.mean(gaps > 0)) if gaps.size else math.nan
    return BootstrapResult(
        point=point,
        replicates=replicates,
        intervals=intervals,
        power_wins_fraction=wins,
        n_boot=n_boot,
        n_groups=n_groups,
        confidence=confidence,
        statistic=statistic,
        seed=seed,
        n_failed=n_failed,
        n_excluded=n_excluded,
        unit=group_name,
        log_drop=log_drop,
        drop_distances=drop_distances,
        interval_method=method,
        trend=trend,
    )


def decay_trend(r: ArrayLike, profiles: ArrayLike) -> FloatArray:
    """The decay trend of each profile: minus the least-squares slope of ``log Ĝ`` on ``log(r+1)`` (dimensionless).

    Args:
        r: ``[n_r]`` distances (tokens), the fitted ones (``r ≥ 1``).
        profiles: ``[n, n_r]`` positive values; an invalid value is left out of its profile's slope.

    Returns:
        ``[n]``: positive for a decaying profile (a power law ``(r+1)^-p`` gives ``p``), zero for a flat one, NaN
        where fewer than two values are valid.
    """
    x = np.log1p(np.asarray(r, dtype=np.float64).ravel())
    values = np.asarray(profiles, dtype=np.float64)
    valid = valid_mask(values)
    y = np.log(np.where(valid, values, 1.0))
    w = valid.astype(np.float64)
    count = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        x_mean = (w * x).sum(axis=1) / count
        y_mean = (w * y).sum(axis=1) / count
        dx = x[None, :] - x_mean[:, None]
        slope = (w * dx * (y - y_mean[:, None])).sum(axis=1) / (w * dx * dx).sum(axis=1)
    return np.where(count >= 2, -slope, np.nan)


# ----------------------------------------------------------------------------------------
# Verdict
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Power law versus exponential (both with floor) for one profile, with the bootstrap evidence.

    ``winner``, by the rules of :func:`verdict`: ``"power law"``, ``"exponential"``,
    ``"neither"`` (both laws rejected by their null simulations), ``"undecided"``
    (neither law rejected, the gap could not be measured, or too many replicates
    were left out: see ``note``), ``"flat"`` (the interval of the decay trend
    contains zero: no decay is measured), ``"rising"`` (it lies below zero: the
    profile grows with distance) or ``"failed"`` (the full-data
    power or exponential fit with floor failed). ``p`` is the exponent of the power
    law with floor and ``p_low``, ``p_high`` its interval (NaN when the full-data
    fit is not usable). ``trend`` is minus the slope of ``log Ĝ`` on ``log(r+1)`` over the fitted distances
    (:func:`decay_trend`), with its interval; the rule reads it. ``gap`` = ``rmse(exp_floor) - rmse(power_floor)``
    in nats of log residual, with its interval: a description, not a test (it shrinks as the noise grows, so
    its interval covers no fixed quantity); ``drop`` = ``log Ĝ(r_first) - log Ĝ(r_last)`` over the fitted
    distances ``drop_distances`` (nats), with its interval, likewise descriptive.
    ``power_wins_fraction`` is the share of usable replicates with a positive gap.
    ``n_excluded`` and ``n_failed`` count the replicates left out of the gap
    interval (flat or at a bound; failed) and ``gap_left_out`` is their share;
    ``p_excluded`` and ``p_left_out`` the same for ``p``. ``unit`` is what was
    resampled (``"window"``, ``"document"``). ``calibration`` holds the null simulations the rule read
    (``None``: the rule read the gap's interval alone); ``level`` the level each law's test is read at.
    ``str(verdict)`` is one sentence beginning with the winner.
    """

    winner: Winner
    p: float
    p_low: float
    p_high: float
    gap: float
    gap_low: float
    gap_high: float
    power_wins_fraction: float
    confidence: float
    n_boot: int
    n_groups: int
    unit: str = "window"
    n_excluded: int = 0
    n_failed: int = 0
    p_excluded: int = 0
    note: str = ""
    drop: float = math.nan
    drop_low: float = math.nan
    drop_high: float = math.nan
    drop_distances: tuple[float, float] = (math.nan, math.nan)
    gap_left_out: float = 0.0
    p_left_out: float = 0.0
    calibration: Calibration | None = None
    interval_method: str = "percentile"
    trend: float = math.nan
    trend_low: float = math.nan
    trend_high: float = math.nan
    level: float = math.nan

    @property
    def drop_text(self) -> str:
        """The total log drop with its interval and distances, e.g. ``log drop r=1→384: 2.41 [2.30, 2.52] nats``."""
        first, last = self.drop_distances
        if not math.isfinite(self.drop):
            return "log drop not measured"
        return (f"log drop r={first:g}→{last:g}: {self.drop:.3g} "
                f"[{self.drop_low:.3g}, {self.drop_high:.3g}] nats")

    @property
    def trend_text(self) -> str:
        """The decay trend with its interval, e.g. ``decay trend 0.62 [0.55, 0.70] (−slope of log Ĝ on log(r+1))``."""
        if not math.isfinite(self.trend):
            return "decay trend not measured"
        return (f"decay trend {self.trend:.3g} [{self.trend_low:.3g}, {self.trend_high:.3g}] "
                "(−slope of log Ĝ on log(r+1))")

    def __str__(self) -> str:
        level = f"{100 * self.confidence:g}%"
        small = (f"; expanded intervals: fewer than {SMALL_SAMPLE_GROUPS} {self.unit}s"
                 if self.interval_method == "expanded" else "")
        evidence = (f"({level} {self.unit} bootstrap, {self.n_boot} replicates, "
                    f"{self.n_groups} {_plural(self.unit, self.n_groups)}{small})")
        if self.winner == "flat":
            return f"flat — no decay measured: {self.trend_text}, {self.drop_text} {evidence}"
        if self.winner == "rising":
            return f"rising — no decay, the profile grows with distance: {self.trend_text} {evidence}"
        if self.winner == "failed":
            return f"failed: {self.note} {evidence}"
        if math.isfinite(self.p):
            p_text = f"p = {self.p:.3f} [{self.p_low:.3f}, {self.p_high:.3f}] (power + floor)"
        else:
            p_text = "p not estimated"
        text = f"{self.winner}: {p_text}"
        if self.calibration is not None:
            text += f"; {self.calibration}, each read at {self.level:g}"
        if math.isfinite(self.gap):
            text += (f"; log-RMSE gap exp - power (both with floor) {self.gap:+.3f} "
                     f"[{self.gap_low:+.3f}, {self.gap_high:+.3f}] (descriptive)")
        text += f"; {self.trend_text} {evidence}"
        left_out = [f"{n} {what}" for what, n in (("failed", self.n_failed), ("flat or at a bound", self.n_excluded))
                    if n]
        if left_out:
            text += f"; left out of the gap: {', '.join(left_out)} ({100 * self.gap_left_out:.1f}%)"
        if self.p_excluded:
            text += f"; left out of p: {self.p_excluded} ({100 * self.p_left_out:.1f}%)"
        if self.note:
            text += f"; {self.note}"
        return text


def verdict(result: BootstrapResult) -> Verdict:
    """The :class:`Verdict` of a bootstrap: power law, exponential, neither, undecided, flat, rising or failed.

    Rules, in order, with ``α = 1 - confidence``:

    1. ``"failed"`` when the full-data ``power_floor`` or ``exp_floor`` fit failed;
    2. ``"flat"`` when the interval of the decay trend (minus the slope of ``log Ĝ`` on ``log(r+1)`` over every
       fitted distance, a model-free statistic) contains zero, ``"rising"`` when it lies below zero;
    3. ``"undecided"`` when the full-data gap is not usable (a fit flat or at a
       bound), when no replicate has a usable gap, or when more than ``α/2`` of the
       replicates were left out of the gap's interval (an interval conditional on a
       usable fit could then hide a tail as large as the one it cuts);
    4. with the null simulations (``result.calibration``; :mod:`.calibration`): a law is *rejected* when its
       p-value is below ``α/2``. The two tests read opposite tails of one statistic (the gap), so this is a
       two-sided test split evenly: the verdict names a law that is false at most ``α`` of the time in all,
       where each test holds its size. ``"neither"`` when both are rejected, ``"power law"`` when only the
       exponential is, ``"exponential"`` when only the power law is, ``"undecided"`` when neither is;
    5. without them, or with too few simulations for a p-value below ``α/2``
       (``1/(n_sim + 1) ≥ α/2``, as in quick looks with a few replicates; a note says so):
       ``"power law"`` when the whole gap interval is above zero, ``"exponential"`` when
       it is below, ``"undecided"`` otherwise.

    A ``p`` interval with more than ``α/2`` of its replicates left out is reported
    with a note saying so. The error rates of this rule, by simulation over noise models, numbers of documents
    and truths, are on the methods page (``benchmarks/error_rates.py``).
    """
    point = result.point_estimates
    issues = result.point_issues
    gap = point["rmse_gap"]
    gap_low, gap_high = result.intervals["rmse_gap"]
    p = point["p_power_floor"]
    p_low, p_high = result.intervals["p_power_floor"] if math.isfinite(p) else (math.nan, math.nan)
    drop_low, drop_high = result.intervals.get("log_drop", (math.nan, math.nan))
    trend_low, trend_high = result.intervals.get("trend", (math.nan, math.nan))
    alpha = round(1.0 - result.confidence, 12)  # 1 - 0.95 is 0.05000000000000004 in floats: p = 0.05 is not below it
    half_alpha = alpha / 2.0
    gap_left_out, p_left_out = result.left_out("rmse_gap"), result.left_out("p_power_floor")
    fits = {name: result.point.get(name) for name in ("power_floor", "exp_floor")}
    failed = [name for name, fit in fits.items() if fit is None or not fit.success]
    checks = result.calibration
    # Fewer than 2/α - 1 simulations cannot put any observation in a tail below α/2: the tests cannot decide.
    decisive = checks is not None and 1.0 / (checks.n_sim + 1) < half_alpha
    notes = []
    winner: Winner
    if failed:
        winner = "failed"
        notes.append("; ".join(f"{name} fit failed ({fit.message if fit is not None else 'not fitted'})"
                               for name, fit in fits.items() if name in failed))
    elif trend_high < 0:
        winner = "rising"
    elif not trend_low > 0:
        winner = "flat"
    elif not math.isfinite(gap):
        winner = "undecided"
        notes.append(f"full-data fit not usable ({issues['rmse_gap']})")
    elif not (math.isfinite(gap_low) and math.isfinite(gap_high)):
        winner = "undecided"
        notes.append("no replicate with usable fits")
    elif gap_left_out > half_alpha:
        winner = "undecided"
        notes.append(f"{100 * gap_left_out:.1f}% of the replicates left out of the gap, more than "
                     f"{100 * half_alpha:g}%")
    elif decisive and math.isfinite(checks.p_exponential) and math.isfinite(checks.p_power):
        winner = _calibrated_winner(checks, half_alpha, notes)
    else:
        winner = "power law" if gap_low > 0 else "exponential" if gap_high < 0 else "undecided"
        if checks is not None and not decisive:
            notes.append(f"{checks.n_sim} simulations cannot give a p-value below {half_alpha:g}: the gap's "
                         "interval decided (a reading whose error rate is not measured)")
        elif checks is None:
            notes.append("no null simulation: the gap's interval decided (a reading whose error rate is not "
                         "measured)")
    if winner != "failed" and winner not in NO_DECAY and math.isfinite(p) and p_left_out > half_alpha:
        notes.append(f"the p interval leaves out {100 * p_left_out:.1f}% of the replicates, more than "
                     f"{100 * half_alpha:g}%")
    return Verdict(
        winner=winner,
        p=p,
        p_low=p_low,
        p_high=p_high,
        gap=gap,
        gap_low=gap_low,
        gap_high=gap_high,
        power_wins_fraction=result.power_wins_fraction,
        confidence=result.confidence,
        n_boot=result.n_boot,
        n_groups=result.n_groups,
        unit=result.unit,
        n_excluded=result.n_excluded.get("rmse_gap", 0),
        n_failed=result.n_failed.get("rmse_gap", 0),
        p_excluded=result.n_excluded.get("p_power_floor", 0) + result.n_failed.get("p_power_floor", 0),
        note="; ".join(notes),
        drop=point["log_drop"],
        drop_low=drop_low,
        drop_high=drop_high,
        drop_distances=result.drop_distances,
        gap_left_out=gap_left_out,
        p_left_out=p_left_out,
        calibration=checks,
        interval_method=result.interval_method,
        trend=point["trend"],
        trend_low=trend_low,
        trend_high=trend_high,
        level=half_alpha,
    )


def _calibrated_winner(checks: Calibration, level: float, notes: list[str]) -> Winner:
    """Rule 4 of :func:`verdict`, each law's test read at ``level``; appends the reason of an ``"undecided"``."""
    exp_rejected = checks.p_exponential < level
    power_rejected = checks.p_power < level
    if exp_rejected and power_rejected:
        notes.append(f"both laws rejected at {level:g}")
        return "neither"
    if exp_rejected:
        return "power law"
    if power_rejected:
        return "exponential"
    notes.append(f"neither law rejected at {level:g}")
    return "undecided"


# ----------------------------------------------------------------------------------------
# Two runs compared
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedDifference:
    """A statistic of run ``a`` minus the same of run ``b``, with its bootstrap interval.

    ``paired`` is True when both bootstraps resampled the same groups (documents,
    windows) in every replicate: the interval is then the percentile interval of the
    replicate-wise differences, in which what the two runs share (the text) cancels.
    Otherwise the replicates are independent draws and the interval, of the same
    differences, is an unpaired one (``paired`` False; wider, as it should be).
    ``n_pairs`` counts replicates where both values are usable; ``left_out`` is the
    share that is not. ``resolved`` says whether the interval excludes zero with at most
    ``(1 − confidence) / 2`` of the replicates left out (:attr:`resolved`).
    """

    key: str
    difference: float
    low: float
    high: float
    paired: bool
    n_pairs: int
    n_boot: int
    confidence: float
    left_out: float
    unit: str = "window"

    @property
    def max_left_out(self) -> float:
        """The largest share of replicates an interval may leave out and still resolve, ``(1 − confidence) / 2``."""
        return (1.0 - self.confidence) / 2

    @property
    def resolved(self) -> bool:
        """The interval lies entirely above or below zero, and left out at most :attr:`max_left_out` of the
        replicates: the replicates left out (a fit failed, flat or at a bound) could all lie on the side of
        zero, and more of them than one tail of the interval could reach across it."""
        return ((self.low > 0 or self.high < 0) and math.isfinite(self.difference)
                and self.left_out <= self.max_left_out)

    def resolved_by(self, adjusted: float) -> bool:
        """Resolved as one of a family: its (Holm-)adjusted p-value below α = ``1 − confidence``, with at most
        :attr:`max_left_out` of the replicates left out."""
        alpha = round(1.0 - self.confidence, 12)  # 1 - 0.95 is 0.05000000000000004 in floats
        return (math.isfinite(self.difference) and math.isfinite(adjusted) and adjusted < alpha
                and self.left_out <= self.max_left_out)

    def __str__(self) -> str:
        kind = f"paired over the same {self.unit}s" if self.paired else "unpaired: the runs resample different text"
        if not math.isfinite(self.difference):
            return f"no comparison ({self.key} missing in a run)"
        text = (f"{self.difference:+.3f} [{self.low:+.3f}, {self.high:+.3f}] ({100 * self.confidence:g}% bootstrap, "
                f"{kind}, {self.n_pairs} of {self.n_boot} replicates)")
        if self.left_out > self.max_left_out:
            text += (f"; {100 * self.left_out:.1f}% of the replicates left out, more than "
                     f"{100 * self.max_left_out:g}%: not resolved")
        return text


def paired_difference(a: BootstrapResult, b: BootstrapResult, key: str = "p_power_floor") -> PairedDifference:
    """``key`` of ``a`` minus ``key`` of ``b`` (e.g. ``p`` of two layers, checkpoints or models), with an interval.

    Paired when both bootstraps drew the same groups in every replicate (the same group labels, seed and
    number of replicates); unpaired otherwise. :meth:`ProfileRun.bootstrap` labels a group by the identity of
    its text (:attr:`ProfileRun.document_identity`: the corpus' checksum and the document's place in it,
    hashed), not by an index, so runs that hold the same documents pair whatever numbered them, and runs
    over different texts never pair. The point difference is of the full-data estimates (NaN when either is
    not usable).
    """
    if a.confidence != b.confidence:
        raise ValueError(f"the two bootstraps have different confidence levels ({a.confidence}, {b.confidence})")
    paired = bool(a.groups) and a.groups == b.groups and a.seed == b.seed and a.n_boot == b.n_boot \
        and a.seed is not None
    n = min(a.n_boot, b.n_boot)
    differences = a.replicates[key][:n] - b.replicates[key][:n]
    usable = differences[np.isfinite(differences)]
    n_groups = min(a.n_groups, b.n_groups)
    low, high = interval(usable, a.confidence, small_sample_method(n_groups), n_groups=n_groups)
    return PairedDifference(key=key, difference=float(a.point_estimates[key] - b.point_estimates[key]),
                            low=float(low), high=float(high), paired=paired, n_pairs=int(usable.size), n_boot=n,
                            confidence=a.confidence, left_out=1.0 - usable.size / n, unit=a.unit)
