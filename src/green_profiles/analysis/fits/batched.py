"""The decay laws fitted to many profiles at once: a vectorized Levenberg-Marquardt over ``[n_profiles, n_r]``.

A bootstrap refits the three laws to thousands of resampled profiles. One lmfit
call per profile and law costs milliseconds of Python; here every profile (and
every start) is one row of the same arrays, and each iteration of the solver is
a handful of numpy operations on all rows together. The problem solved is
:func:`~green_profiles.analysis.fits.fitting.fit_decay_models`'s: least squares
of the weighted log residuals, the same parameters, bounds and data-derived
starts, the best of several starts kept. lmfit remains the fitter of a reported
point estimate (standard errors, AIC, BIC); this module gives the replicates'
optima, which the tests check against lmfit's.

The solver: Levenberg-Marquardt with Marquardt's diagonal scaling and analytic
Jacobians; a bound is handled by projection (a parameter at a bound whose
gradient pushes it outward is held there, the step is solved for the others,
then clipped into the box). A row stops when an accepted step lowers its
objective by less than a relative ``1e-12``, or when its damping grows past
``1e10`` (no step lowers it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from green_profiles.analysis.fits.fitting import FLAT_LOG_SPREAD
from green_profiles.analysis.fits.laws import (
    BOUND_TOLERANCE,
    FIT_PARAMS,
    MODEL_NAMES,
    SHAPE_PARAMS,
    START_MARGIN,
    START_P_RANGE,
    FloatArray,
    parameter_bounds,
)
from green_profiles.kernel.counts import valid_mask

__all__ = ["BatchFit", "fit_profiles"]

BoolArray = NDArray[np.bool_]

# Start fractions of the tail minimum for the floor (as fitting._starts), and the solver's limits.
_FLOOR_FRACTIONS: tuple[float, ...] = (0.9, 0.5, 0.05)
_GRID_FRACTION = 0.5  # the floor fraction that the grids of exponents and decay lengths start from
_EXPONENTS: tuple[float, ...] = (0.25, 1.0, 3.0, 9.0)  # extra starts of power_floor's p
_DECAY_LENGTHS: tuple[float, ...] = (1.0, 4.0, 16.0, 64.0, 256.0)  # extra starts of exp_floor's xi, in tokens
_MAX_ITERATIONS = 500
_SCREEN_ITERATIONS = 8  # iterations from every start before only the best _KEPT_STARTS of a profile go on
_KEPT_STARTS = 6
_RELATIVE_DECREASE = 1e-12
_MAX_DAMPING = 1e10


@dataclass(frozen=True)
class BatchFit:
    """One law fitted to ``n`` profiles: arrays with one entry (row) per profile.

    ``values`` ``[n, k]`` holds the fitted log-space parameters in the order of
    :data:`~green_profiles.analysis.fits.laws.FIT_PARAMS` ``[name]``; ``rss``
    ``[n]`` the weighted sum of squared log residuals (nats²) and ``n_points``
    ``[n]`` how many distances each fit used; ``success`` ``[n]`` is False where
    a profile had too few valid points or no start gave a finite objective
    (its values and ``rss`` are NaN/inf). ``at_bound`` ``[n, k]`` marks
    parameters within :data:`~green_profiles.analysis.fits.laws.BOUND_TOLERANCE`
    of their bound width from a bound; ``log_spread`` ``[n]`` is the RMS
    deviation of the fitted ``log y`` about its mean over the fitted distances
    (nats), as in :class:`~green_profiles.analysis.fits.fitting.FitResult`.
    """

    name: str
    values: FloatArray
    rss: FloatArray
    n_points: NDArray[np.int64]
    success: BoolArray
    at_bound: BoolArray
    log_spread: FloatArray

    @property
    def rmse(self) -> FloatArray:
        """``sqrt(rss / n_points)`` ``[n]`` (inf where the fit failed)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.success, np.sqrt(self.rss / np.maximum(self.n_points, 1)), np.inf)

    def param(self, key: str) -> FloatArray:
        """A parameter ``[n]`` by name: a fitted one (``p``, ``logA``...) or its linear form (``A``, ``c``, ``xi``)."""
        names = FIT_PARAMS[self.name]
        if key in names:
            return self.values[:, names.index(key)]
        if f"log{key}" in names:
            return np.exp(self.values[:, names.index(f"log{key}")])
        raise KeyError(f"{self.name} has no parameter {key!r}")

    @property
    def shape_at_bound(self) -> BoolArray:
        """Whether the shape parameter (``p`` or ``logxi``) is at a bound, ``[n]``."""
        return self.at_bound[:, FIT_PARAMS[self.name].index(SHAPE_PARAMS[self.name])]

    @property
    def flat(self) -> BoolArray:
        """Successful fits whose curve barely changes (``log_spread < FLAT_LOG_SPREAD``), ``[n]``."""
        return self.success & (np.nan_to_num(self.log_spread, nan=np.inf) < FLAT_LOG_SPREAD)

    @property
    def usable(self) -> BoolArray:
        """Converged, not flat, shape parameter not at a bound, ``[n]`` (as ``FitResult.usable``)."""
        return self.success & ~self.flat & ~self.shape_at_bound


def fit_profiles(
    r: ArrayLike,
    profiles: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    models: Sequence[str] = MODEL_NAMES,
    start_params: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, BatchFit]:
    """Fit the decay laws to each of ``n`` profiles in log space, all profiles at once.

    Parameters
    ----------
    r:
        Distances in tokens, shape ``[n_r]``; ``r < 1`` and non-finite ``r`` are left out.
    profiles:
        Profile values (dimensionless ``Ĝ``), shape ``[n, n_r]``; an invalid value
        (:func:`~green_profiles.kernel.counts.valid_mask`) leaves that distance out of that
        profile's fit, as :func:`~green_profiles.analysis.fits.fitting.fit_decay_models` does.
    weights:
        Optional per-distance weights ``[n_r]`` on the squared log residuals, normalized to
        mean 1 over each profile's kept distances.
    models:
        Which of :data:`~green_profiles.analysis.fits.laws.MODEL_NAMES` to fit.
    start_params:
        Optional extra start per model (log-space parameters, e.g. a full-data fit's
        ``params``), tried for every profile beside the data-derived starts.

    Returns
    -------
    ``{name: BatchFit}`` for each requested model.
    """
    unknown = [m for m in models if m not in FIT_PARAMS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; expected some of {MODEL_NAMES}")
    r_arr = np.asarray(r, dtype=np.float64).ravel()
    y = np.asarray(profiles, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != r_arr.size:
        raise ValueError(f"profiles must be [n, {r_arr.size}], got shape {y.shape}")
    base = np.ones(r_arr.size) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if base.shape != r_arr.shape:
        raise ValueError(f"weights must have one value per distance ({r_arr.size}), got {base.size}")
    with np.errstate(invalid="ignore"):
        column = np.isfinite(r_arr) & (r_arr >= 1) & valid_mask(base)
    order = np.argsort(np.where(column, r_arr, np.inf), kind="stable")[: int(column.sum())]
    r_k, base = r_arr[order], base[order]
    y = y[:, order]
    kept = valid_mask(y)
    ly = np.log(np.where(kept, y, 1.0))
    count = kept.sum(axis=1)
    w = np.where(kept, base, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = w / np.where(count > 0, w.sum(axis=1) / np.maximum(count, 1), 1.0)[:, None]
    extra = start_params or {}
    return {name: _fit_law(name, r_k, ly, w, kept, count, extra.get(name)) for name in models}


# ----------------------------------------------------------------------------------------
# The laws in log space, with their Jacobians
# ----------------------------------------------------------------------------------------


def _log_model_and_jacobian(name: str, theta: FloatArray, r: FloatArray, x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``log y`` ``[m, n_r]`` of law ``name`` at parameters ``theta`` ``[m, k]``, and its Jacobian ``[k, m, n_r]``."""
    if name == "power":
        model = theta[:, :1] - theta[:, 1:2] * x
        return model, np.stack([np.ones_like(model), np.broadcast_to(-x, model.shape)])
    logc = theta[:, :1]
    if name == "power_floor":
        decay = theta[:, 1:2] - theta[:, 2:3] * x
    else:
        rate = np.exp(-theta[:, 2:3])
        decay = theta[:, 1:2] - r * rate
    # log(c + A f) = max + log1p(exp(-|difference|)), with the decay's share A f / (c + A f) from the
    # same exponential: one exp and one log1p per entry (logaddexp and two shares would need four).
    difference = decay - logc
    small = np.exp(-np.abs(difference))
    model = np.maximum(decay, logc) + np.log1p(small)
    denominator = 1.0 + small
    decay_share = np.where(difference > 0, 1.0, small) / denominator
    floor_share = np.where(difference > 0, small, 1.0) / denominator
    if name == "power_floor":
        third = -x * decay_share
    else:
        third = r * rate * decay_share
    return model, np.stack([floor_share, decay_share, third])


# ----------------------------------------------------------------------------------------
# Starts and bounds, as fitting._starts and fitting._parameters, for all profiles at once
# ----------------------------------------------------------------------------------------


def _weighted_line(xs: FloatArray, ys: FloatArray, w: FloatArray) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Per row, the weighted straight line ``ys ≈ a + b xs`` (``w = 0`` leaves a point out); ``a, b, ok`` ``[m]``."""
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (w * xs).sum(axis=1) / total
        my = (w * np.where(w > 0, ys, 0.0)).sum(axis=1) / total
        dx = np.where(w > 0, xs - mx[:, None], 0.0)
        sxx = (w * dx * dx).sum(axis=1)
        b = (w * dx * np.where(w > 0, ys - my[:, None], 0.0)).sum(axis=1) / sxx
    ok = ((w > 0).sum(axis=1) >= 2) & (sxx > 0)
    b = np.where(ok, b, 0.0)
    return my - b * mx, b, ok


def _starts(name: str, r: FloatArray, x: FloatArray, ly: FloatArray, w: FloatArray,
            kept: BoolArray, count: NDArray[np.int64]) -> list[tuple[FloatArray, BoolArray]]:
    """Data-derived starts: a list of (``[n, k]`` values, ``[n]`` whether that start exists for the profile)."""
    a, b, _ = _weighted_line(np.broadcast_to(x, ly.shape), ly, w)
    if name == "power":
        return [(np.stack([a, np.clip(-b, *START_P_RANGE)], axis=1), count >= 1)]
    y = np.where(kept, np.exp(ly), np.nan)
    # The tail: each profile's last max(3, n // 4) kept distances.
    from_end = np.cumsum(kept[:, ::-1], axis=1)[:, ::-1]
    tail = kept & (from_end <= np.maximum(3, count // 4)[:, None])
    tail_min = np.nanmin(np.where(tail, y, np.nan), axis=1, initial=np.inf)
    rows = np.arange(ly.shape[0])
    starts = []
    for fraction in _FLOOR_FRACTIONS:
        c0 = fraction * tail_min
        with np.errstate(invalid="ignore", divide="ignore"):
            excess = y - c0[:, None]
            ok = kept & (excess > 0)
            lex = np.log(np.where(ok, excess, 1.0))
        enough = ok.sum(axis=1) >= 2
        ww = np.where(ok, w, 0.0)
        logc0 = np.log(np.where(enough, c0, 1.0))
        head = np.argmax(ok, axis=1)
        lex_first, r_first = lex[rows, head], r[head]
        if name == "power_floor":
            a0, b0, _ = _weighted_line(np.broadcast_to(x, ly.shape), lex, ww)
            starts.append((np.stack([logc0, a0, np.clip(-b0, *START_P_RANGE)], axis=1), enough))
            # A grid of exponents through the first point: on a nearly flat profile the regression's
            # start leads to p = 0, and a better optimum (a drop over the first points) lies elsewhere.
            for p0 in _EXPONENTS if fraction == _GRID_FRACTION else ():
                starts.append((np.stack([logc0, lex_first + p0 * x[head], np.full_like(c0, p0)], axis=1), enough))
            continue
        _, b0, _ = _weighted_line(np.broadcast_to(r, ly.shape), lex, ww)
        r_ok = np.where(ok, r, np.nan)
        with np.errstate(invalid="ignore"):
            spread = np.nanmax(r_ok, axis=1, initial=-np.inf) - np.nanmin(r_ok, axis=1, initial=np.inf)
        spread = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
        with np.errstate(divide="ignore"):
            xi_regression = np.where(b0 < 0, -1.0 / np.where(b0 < 0, b0, -1.0), spread)
        # e-folding distance of the excess from its first kept point (robust on power-law profiles).
        below = ok & (lex <= lex_first[:, None] - 1.0)
        has_below = below.any(axis=1)
        xi_efold = np.where(has_below, r[np.argmax(below, axis=1)] - r_first, spread)
        # Beside lmfit's two estimates, a grid of decay lengths: the exponential's objective has local
        # optima (a fast drop over the first points, or a slow one over the whole range).
        grid = [np.full_like(spread, scale) for scale in (_DECAY_LENGTHS if fraction == _GRID_FRACTION else ())]
        for xi0 in (np.maximum(xi_regression, 1e-2), np.maximum(xi_efold, 1e-2), *grid):
            amplitude = lex_first + r_first / xi0
            starts.append((np.stack([logc0, amplitude, np.log(xi0)], axis=1), enough))
    fallback_shape = 1.0 if name == "power_floor" else 0.0
    lo = np.nanmin(np.where(kept, ly, np.nan), axis=1, initial=np.inf)
    hi = np.nanmax(np.where(kept, ly, np.nan), axis=1, initial=-np.inf)
    none = ~np.any([exists for _, exists in starts], axis=0)
    starts.append((np.stack([lo - 1.0, hi, np.full_like(lo, fallback_shape)], axis=1), none & (count >= 1)))
    return starts


def _bounds(name: str, r: FloatArray, ly: FloatArray, kept: BoolArray) -> tuple[FloatArray, FloatArray]:
    """Lower and upper bounds ``[n, k]`` of each profile's parameters (as fitting._parameters)."""
    lo = np.nanmin(np.where(kept, ly, np.nan), axis=1, initial=np.inf)
    hi = np.nanmax(np.where(kept, ly, np.nan), axis=1, initial=-np.inf)
    table = parameter_bounds(lo, hi, np.nanmax(np.where(kept, r, np.nan), axis=1, initial=1.0))
    lower = np.stack([table[key][0] for key in FIT_PARAMS[name]], axis=1)
    upper = np.stack([table[key][1] for key in FIT_PARAMS[name]], axis=1)
    return lower, upper


# ----------------------------------------------------------------------------------------
# The solver
# ----------------------------------------------------------------------------------------


def _objective(name: str, theta: FloatArray, r: FloatArray, x: FloatArray, ly: FloatArray,
               sw: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    model, jac = _log_model_and_jacobian(name, theta, r, x)
    residual = sw * (model - ly)
    cost = np.einsum("ij,ij->i", residual, residual)
    return residual, sw * jac, np.where(np.isfinite(cost), cost, np.inf)


def _levenberg_marquardt(name: str, theta: FloatArray, lower: FloatArray, upper: FloatArray, r: FloatArray,
                         x: FloatArray, ly: FloatArray, sw: FloatArray,
                         iterations: int = _MAX_ITERATIONS) -> tuple[FloatArray, FloatArray]:
    """Minimize each row's weighted squared log residuals from ``theta`` ``[m, k]``; returns (theta, cost ``[m]``)."""
    theta = np.clip(theta, lower, upper)
    residual, jac, cost = _objective(name, theta, r, x, ly, sw)
    # Nielsen's damping: shrink after a step that the quadratic model predicted well, grow (ever
    # faster) after a rejected one; it crosses the narrow curved valleys of the floor laws (c and A
    # trade off when p is small) without the zigzag of fixed factors.
    damping = np.full(theta.shape[0], 1e-3)
    growth = np.full(theta.shape[0], 2.0)
    active = np.nonzero(np.isfinite(cost))[0]
    k = theta.shape[1]
    eye = np.eye(k)
    for _ in range(iterations):
        if active.size == 0:
            break
        t, lo, hi = theta[active], lower[active], upper[active]
        jj = jac[:, active]
        # J^T J and J^T residual, one [m] entry at a time: k is 2 or 3, and this is much faster
        # than a batched matrix product over such small matrices.
        hess = np.empty((active.size, k, k))
        for a in range(k):
            for b in range(a, k):
                hess[:, a, b] = hess[:, b, a] = np.einsum("mn,mn->m", jj[a], jj[b])
        grad = np.einsum("kmn,mn->mk", jj, residual[active])
        # A parameter at a bound that the descent direction (-grad) would push outward stays there.
        held = ((t <= lo) & (grad > 0)) | ((t >= hi) & (grad < 0))
        free = ~held
        scale = np.maximum(np.diagonal(hess, axis1=1, axis2=2), 1e-12)
        system = hess + (damping[active][:, None] * scale)[:, :, None] * eye
        system = np.where(free[:, :, None] & free[:, None, :], system, eye)
        rhs = np.where(free, -grad, 0.0)
        try:
            step = np.linalg.solve(system, rhs[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = np.stack([np.linalg.lstsq(a, b, rcond=None)[0] for a, b in zip(system, rhs)])
        trial = np.clip(t + step, lo, hi)
        step = trial - t
        predicted = -(2.0 * np.einsum("mk,mk->m", grad, step) + np.einsum("mk,mkl,ml->m", step, hess, step))
        trial_residual, trial_jac, trial_cost = _objective(name, trial, r, x, ly[active], sw[active])
        old = cost[active]
        better = trial_cost < old
        accepted = active[better]
        theta[accepted] = trial[better]
        residual[accepted] = trial_residual[better]
        jac[:, accepted] = trial_jac[:, better]
        cost[accepted] = trial_cost[better]
        with np.errstate(invalid="ignore", divide="ignore"):
            gain = np.where(predicted > 0, (old - trial_cost) / predicted, 0.0)
        shrink = np.maximum(1.0 / 3.0, 1.0 - (2.0 * np.clip(gain, 0.0, 1.0) - 1.0) ** 3)
        d, g = damping[active], growth[active]
        damping[active] = np.where(better, np.maximum(d * shrink, 1e-15), d * g)
        growth[active] = np.where(better, 2.0, g * 2.0)
        small = better & (old - trial_cost <= _RELATIVE_DECREASE * old)
        stuck = ~better & (damping[active] > _MAX_DAMPING)
        active = active[~(small | stuck)]
    return theta, cost


def _fit_law(name: str, r: FloatArray, ly: FloatArray, w: FloatArray, kept: BoolArray,
             count: NDArray[np.int64], extra: Mapping[str, float] | None) -> BatchFit:
    n, k = ly.shape[0], len(FIT_PARAMS[name])
    x = np.log1p(r)
    enough = count >= k + 1
    lower, upper = _bounds(name, r, ly, kept)
    starts = _starts(name, r, x, ly, w, kept, count)
    if extra and all(key in extra for key in FIT_PARAMS[name]):
        warm = np.array([float(extra[key]) for key in FIT_PARAMS[name]])
        starts.insert(0, (np.broadcast_to(warm, (n, k)).copy(), np.ones(n, dtype=bool)))
    width = upper - lower
    candidates, owners = [], []
    for values, exists in starts:
        use = exists & enough & np.all(np.isfinite(values), axis=1)
        inside = np.clip(values[use], lower[use] + START_MARGIN * width[use], upper[use] - START_MARGIN * width[use])
        candidates.append(inside)
        owners.append(np.nonzero(use)[0])
    owner = np.concatenate(owners)
    theta0 = np.concatenate(candidates) if candidates else np.empty((0, k))
    sw = np.sqrt(w)
    if len(starts) > _KEPT_STARTS:
        # Many starts (exp_floor's grid): a few iterations from each, then only each profile's most
        # promising ones are followed to convergence.
        theta0, screened = _levenberg_marquardt(name, theta0, lower[owner], upper[owner], r, x, ly[owner],
                                                sw[owner], iterations=_SCREEN_ITERATIONS)
        order = np.lexsort((screened, owner))
        position = np.arange(order.size) - np.searchsorted(owner[order], owner[order])
        keep = np.sort(order[position < _KEPT_STARTS])
        theta0, owner = theta0[keep], owner[keep]
    theta, cost = _levenberg_marquardt(name, theta0, lower[owner], upper[owner], r, x, ly[owner], sw[owner])
    # Keep each profile's best start.
    best_cost = np.full(n, np.inf)
    np.minimum.at(best_cost, owner, cost)
    winner = np.full(n, -1)
    is_best = cost == best_cost[owner]
    winner[owner[is_best]] = np.nonzero(is_best)[0]
    success = np.isfinite(best_cost)
    values = np.full((n, k), np.nan)
    values[success] = theta[winner[success]]
    rss = np.where(success, best_cost, np.inf)
    with np.errstate(invalid="ignore"):  # inf - inf in the bounds of a profile with no valid value
        tolerance = BOUND_TOLERANCE * width
        at_bound = success[:, None] & ((values <= lower + tolerance) | (values >= upper - tolerance))
    model, _ = _log_model_and_jacobian(name, np.where(success[:, None], values, 0.0), r, x)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(kept, model, 0.0).sum(axis=1) / np.maximum(count, 1)
        spread = np.sqrt(np.where(kept, (model - mean[:, None]) ** 2, 0.0).sum(axis=1) / np.maximum(count, 1))
    return BatchFit(name=name, values=values, rss=rss, n_points=count.astype(np.int64), success=success,
                    at_bound=at_bound, log_spread=np.where(success, spread, np.nan))
