"""Calibrated checks of power law against exponential: could either law have produced the observed gap, does
the winner fit as well as it would if it were true, and which law predicts distances it was not fitted to.

The gap's bootstrap interval says how precisely the gap is measured; these checks
say what it means. Each works on the rows themselves, grouped by document:

- **Null simulation of a law.** The rows are rescaled, distance by distance, so
  that their median (or mean) is the law's full-data fit (:func:`null_scale`); each row keeps its
  deviation from the profile, so the noise, its skew and its correlation within a
  document are the data's own. Whole groups are resampled and both laws refitted:
  the gaps ``rmse(exp_floor) − rmse(power_floor)`` this gives are what that law
  would produce. The p-value against the exponential is the share of its simulated
  gaps at least as large as the observed one; against the power law, the share of
  its simulated gaps at most as large.
- **Goodness of fit.** Under its own null, the share of simulated RMSEs of a law at
  least as large as its observed RMSE: a small value means the law misses the
  profile by more than the noise explains.
- **Held out.** The groups are split in random halves; one half's profile, fitted
  on the first two thirds of the fitted distances, predicts the other half's at
  the remaining third (log-RMSE of the prediction, nats), and the roles swap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from green_profiles.analysis.fits.batched import BatchFit, fit_profiles
from green_profiles.analysis.fits.laws import FIT_PARAMS, FloatArray, log_model
from green_profiles.analysis.fits.resampling import ColumnAggregator, group_index, resampled_profiles
from green_profiles.kernel.counts import valid_mask

__all__ = ["LAWS", "N_SIM", "N_SPLITS", "Calibration", "calibrate", "holdout_errors", "null_scale",
           "without_fitted_directions"]

# The two laws the verdict compares.
LAWS: tuple[str, str] = ("power_floor", "exp_floor")
# Simulated profiles per law: a p-value near 0.05 then rests on about 25 exceedances.
N_SIM: int = 500
# Random half-splits of the groups for the held-out check (each used both ways).
N_SPLITS: int = 20
# The share of the fitted distances (by count, from the shortest) that the held-out check fits.
HOLDOUT_FIT_SHARE: float = 2.0 / 3.0
# Fewer groups than this give no held-out check (halves of one document say nothing).
MIN_HOLDOUT_GROUPS: int = 4


@dataclass(frozen=True)
class Calibration:
    """The calibrated checks of one profile (see the module docstring).

    ``gap`` is the observed ``rmse(exp_floor) − rmse(power_floor)`` (nats) by the
    same fitter as the simulations; ``p_exponential`` the p-value against "the truth
    is an exponential with floor", ``p_power`` against "a power law with floor";
    ``fit_p`` each law's goodness-of-fit p-value; ``rmse`` each law's observed
    log-RMSE. ``holdout`` holds each law's median held-out log-RMSE over the halves
    (nats; NaN with fewer than :data:`MIN_HOLDOUT_GROUPS` groups),
    ``holdout_power_better`` the share of held-out halves the power law predicted
    better (a median or a share, not a mean: one half's wild extrapolation must not
    decide), ``holdout_from`` the first
    predicted distance (tokens). ``n_sim`` simulated profiles per law, ``n_splits``
    half-splits.
    """

    gap: float
    p_exponential: float
    p_power: float
    fit_p: dict[str, float]
    rmse: dict[str, float]
    holdout: dict[str, float]
    holdout_power_better: float
    holdout_from: float
    n_sim: int
    n_splits: int

    @property
    def power_predicts_better(self) -> bool | None:
        """Whether the power law predicted most held-out halves better; ``None`` without a held-out check or
        on a tie."""
        share = self.holdout_power_better
        if not math.isfinite(share) or share == 0.5:
            return None
        return share > 0.5

    def __str__(self) -> str:
        held = (f"held out r ≥ {self.holdout_from:g}: power better in {100 * self.holdout_power_better:.0f}% of "
                f"halves (median log-RMSE power {self.holdout['power_floor']:.3f}, exp {self.holdout['exp_floor']:.3f})"
                if math.isfinite(self.holdout_power_better) else "no held-out check (too few groups)")
        return (f"p-value against exp+floor {self.p_exponential:.3f}, against power+floor {self.p_power:.3f}; "
                f"fit p-values power {self.fit_p['power_floor']:.3f}, exp {self.fit_p['exp_floor']:.3f}; {held}")


def null_scale(r: ArrayLike, profile: ArrayLike, curve: ArrayLike) -> FloatArray:
    """The factor per distance ``[n_r]`` that moves a profile onto ``curve``: ``curve / profile`` where both are
    valid and ``r ≥ 1``, 1 elsewhere.

    A median or a mean of positive values scales with its column, so the rows multiplied column by column by
    this factor have ``curve`` as their profile, and every resample of them is the same resample of the
    original rows times the factor: the null simulations scale the original replicates instead of
    resampling rescaled rows.
    """
    r_arr = np.asarray(r, dtype=np.float64).ravel()
    profile_arr = np.asarray(profile, dtype=np.float64).ravel()
    curve_arr = np.asarray(curve, dtype=np.float64).ravel()
    usable = (r_arr >= 1) & valid_mask(profile_arr) & valid_mask(curve_arr)
    return np.where(usable, curve_arr / np.where(usable, profile_arr, 1.0), 1.0)


def without_fitted_directions(fit: BatchFit, r: FloatArray, simulated: FloatArray,
                              weights: ArrayLike | None = None) -> FloatArray:
    """Simulated profiles ``[n_sim, n_r]`` around a fitted curve, with the part of their log deviation
    that the law's own parameters could absorb removed (over the fitted distances, ``r ≥ 1``).

    The observed profile is the truth plus noise, and its fit already moved the curve by the noise's
    component along the law's parameters; what is left is the noise's other part. A simulated profile
    ``fit + noise*`` would carry the first component twice (once in the fit, once in ``noise*``), so the
    simulated curves would scatter more along the law than the data can, which inflates the other law's
    misfit and rejects a true law too often. Projecting ``log(profile) − log(fit)`` off the (weighted)
    tangent space of the law at the fit leaves ``fit + (I − P) noise*``, distributed like the observation.
    """
    names = FIT_PARAMS[fit.name]
    theta = fit.values[0]
    columns = np.nonzero(np.isfinite(r) & (r >= 1))[0]
    rk = r[columns]
    base = _log_curve(fit, 0, rk)
    step = 1e-6
    jacobian = np.empty((rk.size, len(names)))
    for i, name in enumerate(names):
        up, down = theta.copy(), theta.copy()
        up[i] += step
        down[i] -= step
        jacobian[:, i] = (log_model(fit.name, dict(zip(names, up)), rk)
                          - log_model(fit.name, dict(zip(names, down)), rk)) / (2 * step)
    w = np.ones(rk.size) if weights is None else np.asarray(weights, dtype=np.float64).ravel()[columns]
    # The weighted least-squares projection onto the tangent space: P = J (Jᵀ W J)⁻¹ Jᵀ W.
    gram = jacobian.T @ (w[:, None] * jacobian)
    solve = np.linalg.pinv(gram) @ (jacobian.T * w[None, :])
    out = simulated.copy()
    values = simulated[:, columns]
    valid = valid_mask(values)
    deviation = np.where(valid, np.log(np.where(valid, values, 1.0)) - base[None, :], 0.0)
    deviation = deviation - (deviation @ solve.T) @ jacobian.T
    out[:, columns] = np.where(valid, np.exp(base[None, :] + deviation), values)
    return out


def calibrate(
    r: ArrayLike,
    rows: ArrayLike,
    group: ArrayLike | None,
    *,
    n_sim: int = N_SIM,
    n_splits: int = N_SPLITS,
    seed: int | None = 0,
    statistic: str = "median",
    weights: ArrayLike | None = None,
    start_params: dict[str, dict[str, float]] | None = None,
) -> Calibration:
    """The null simulations of both laws, their goodness of fit and the held-out check for one profile.

    Args:
        r: distances ``[n_r]`` in tokens.
        rows: ``[n_rows, n_r]`` normalized values ``Ĝ`` (see :func:`~green_profiles.analysis.fits.bootstrap_fits`).
        group: one group label per row (documents); ``None``: each row its own group.
        n_sim: simulated profiles per law.
        n_splits: random half-splits for the held-out check.
        seed: seeds the simulations and the splits (the same seed gives the same result).
        statistic: ``"median"`` or ``"mean"`` per distance.
        weights: per-distance fit weights ``[n_r]``.
        start_params: extra starts per law (e.g. the full-data lmfit optimum).

    Returns:
        a :class:`Calibration`; its p-values are NaN where a law's full-data fit failed.
    """
    r_arr = np.asarray(r, dtype=np.float64).ravel()
    data = np.asarray(rows, dtype=np.float64)
    # One set of resamples serves both laws (the same draws: common random numbers), each scaled onto its fit.
    profile, resampled, _ = resampled_profiles(data, group, n_boot=n_sim, seed=_stream(seed, 1), statistic=statistic)
    observed = fit_profiles(r_arr, profile[None, :], weights, models=LAWS, start_params=start_params)
    rmse = {law: float(observed[law].rmse[0]) for law in LAWS}
    gap = rmse["exp_floor"] - rmse["power_floor"]
    fit_p = dict.fromkeys(LAWS, math.nan)
    tail = dict.fromkeys(LAWS, math.nan)
    for law in LAWS:
        if not observed[law].success[0]:
            continue
        curve = np.exp(_log_curve(observed[law], 0, r_arr))
        simulated = resampled * null_scale(r_arr, profile, curve)[None, :]
        simulated = without_fitted_directions(observed[law], r_arr, simulated, weights)
        fits = fit_profiles(r_arr, simulated, weights, models=LAWS, start_params=start_params)
        with np.errstate(invalid="ignore"):
            gaps = fits["exp_floor"].rmse - fits["power_floor"].rmse
        gaps = gaps[np.isfinite(gaps)]
        own = fits[law].rmse[np.isfinite(fits[law].rmse)]
        # Exceedances counted with the observed value itself (+1): a p-value is never exactly 0.
        extreme = gaps >= gap if law == "exp_floor" else gaps <= gap
        tail[law] = (1 + int(extreme.sum())) / (1 + gaps.size)
        fit_p[law] = (1 + int((own >= rmse[law]).sum())) / (1 + own.size)
    holdout, power_better, start = holdout_errors(r_arr, data, group, n_splits=n_splits, seed=_stream(seed, 2),
                                                  statistic=statistic, weights=weights, start_params=start_params)
    return Calibration(gap=gap, p_exponential=tail["exp_floor"], p_power=tail["power_floor"], fit_p=fit_p,
                       rmse=rmse, holdout=holdout, holdout_power_better=power_better, holdout_from=start,
                       n_sim=n_sim, n_splits=n_splits)


def holdout_errors(
    r: ArrayLike,
    rows: ArrayLike,
    group: ArrayLike | None,
    *,
    n_splits: int = N_SPLITS,
    seed: int | list[int] | None = 0,
    statistic: str = "median",
    weights: ArrayLike | None = None,
    start_params: dict[str, dict[str, float]] | None = None,
) -> tuple[dict[str, float], float, float]:
    """Each law's median held-out log-RMSE (nats), the share of halves the power law predicted better, and the
    first predicted distance (tokens).

    Each split draws a random half of the groups; the profile of one half is fitted over the first
    :data:`HOLDOUT_FIT_SHARE` of the fitted distances and predicts the other half's profile at the
    rest, then the halves swap. NaN (and a NaN share) with fewer than :data:`MIN_HOLDOUT_GROUPS` groups
    or fewer than two distances on either side.
    """
    r_arr = np.asarray(r, dtype=np.float64).ravel()
    data = np.asarray(rows, dtype=np.float64)
    inverse, names = group_index(data.shape[0], group)
    aggregate = ColumnAggregator(data, statistic)
    full = aggregate(np.ones(data.shape[0], dtype=np.int64))
    columns = np.nonzero((r_arr >= 1) & valid_mask(full))[0]
    columns = columns[np.argsort(r_arr[columns], kind="stable")]
    n_fit = int(math.ceil(HOLDOUT_FIT_SHARE * columns.size))
    nothing = (dict.fromkeys(LAWS, math.nan), math.nan, math.nan)
    if len(names) < MIN_HOLDOUT_GROUPS or n_fit < 3 or columns.size - n_fit < 2:
        return nothing
    fitted, predicted = columns[:n_fit], columns[n_fit:]
    rng = np.random.default_rng(seed)
    halves = []
    for _ in range(n_splits):
        order = rng.permutation(len(names))
        first = np.isin(inverse, order[: len(names) // 2]).astype(np.int64)
        halves.append((aggregate(first), aggregate(1 - first)))
        halves.append(halves[-1][::-1])
    train = np.stack([a for a, _ in halves])
    test = np.stack([b for _, b in halves])
    fit_weights = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()[fitted]
    fits = fit_profiles(r_arr[fitted], train[:, fitted], fit_weights, models=LAWS, start_params=start_params)
    errors = {}
    target = test[:, predicted]
    ok = valid_mask(target)
    log_target = np.log(np.where(ok, target, 1.0))
    for law in LAWS:
        per_half = np.full(len(halves), np.nan)
        for i in range(len(halves)):
            if fits[law].success[i] and ok[i].any():
                residual = _log_curve(fits[law], i, r_arr[predicted]) - log_target[i]
                per_half[i] = math.sqrt(float(np.mean(residual[ok[i]] ** 2)))
        errors[law] = per_half
    both = np.isfinite(errors["power_floor"]) & np.isfinite(errors["exp_floor"])
    if not both.any():
        return nothing
    better = float(np.mean(errors["power_floor"][both] < errors["exp_floor"][both]))
    return ({law: float(np.median(errors[law][both])) for law in LAWS}, better, float(r_arr[predicted[0]]))


def _log_curve(fit: BatchFit, index: int, r: FloatArray) -> FloatArray:
    """``log y`` of profile ``index``'s fitted law at distances ``r``."""
    return log_model(fit.name, dict(zip(FIT_PARAMS[fit.name], fit.values[index])), r)


def _stream(seed: int | None, stream: int) -> list[int] | None:
    """A seed of its own for each use of one seed (the simulations, the splits), independent of the bootstrap's."""
    return None if seed is None else [int(seed), 7919, stream]
