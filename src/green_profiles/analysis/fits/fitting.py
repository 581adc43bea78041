"""Least-squares fits of the decay laws to one profile in log space, ranked by log-RMSE.

Each law of :mod:`green_profiles.analysis.fits.laws` is fitted to ``log y`` (the paper's
choice: the profile spans several decades, and a linear-space fit would see only
the first few distances) with ``lmfit``'s Levenberg-Marquardt, from the
data-derived starts of :func:`_starts`, keeping the best. The fits of one
profile form a :class:`FitTable` ranked by the RMSE of the log residuals (the
paper's criterion); AIC and BIC on the same residuals are diagnostics.

A fit can converge and still not measure a decay. :class:`FitResult` says so:
``at_bound`` names the parameters pinned at a bound, ``flat`` marks a fitted
curve that barely changes over the fitted distances, and ``usable`` is
``success`` without either on the decay itself. :func:`rmse_gap` compares the
two three-parameter laws, power with floor against exponential with floor.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import lmfit
import numpy as np
from numpy.typing import ArrayLike

from green_profiles.analysis.fits.laws import (
    BOUND_TOLERANCE,
    FIT_PARAMS,
    MODEL_FORMULAS,
    MODEL_NAMES,
    SHAPE_PARAMS,
    START_MARGIN,
    START_P_RANGE,
    FloatArray,
    log_model,
    model_curve,
    parameter_bounds,
)
from green_profiles.kernel.counts import valid_mask

__all__ = ["FLAT_LOG_SPREAD", "FitResult", "FitTable", "fit_decay_models", "rmse_gap"]

# A fitted curve whose log varies by less than this (RMS over the fitted distances, in nats:
# y moves by about 5% around its mean) is "flat": no decay. Measured profiles of trained models
# spread by 1-3 nats over 1 <= r <= 384, and a median over a few hundred rows has ~0.02-0.05 nats
# of noise per distance, which an unconstrained law can partly fit (a spurious slope of about that
# size appeared on constant synthetic profiles). The RMS, not the end-to-end drop, is used so that
# a single noisy point at r = 1, which a law can follow with a step (p at its bound of 10), does not
# count as decay: a step of 0.25 nats at one of 24 distances has an RMS spread of 0.05.
FLAT_LOG_SPREAD: float = 0.05

# What lmfit / scipy / numpy raise when a fit goes wrong on the data (NaN residuals: ValueError
# from lmfit's nan_policy="raise"; a singular matrix; an overflowing exponent). Anything else
# (TypeError, KeyError, AttributeError, ...) is a programming error and propagates.
FIT_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    FloatingPointError,
    OverflowError,
    ZeroDivisionError,
    np.linalg.LinAlgError,
)


# ----------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitResult:
    """One model fitted to one profile.

    ``params`` holds the fitted log-space parameters (``logA``, ``logc``, ``logxi``),
    ``p`` and the derived linear ones (``A``, ``c``, ``xi``); ``stderr`` has the same
    keys (NaN where the covariance could not be estimated). For ``power_floor``,
    ``gamma = c`` and ``beta = A`` in the paper's notation.

    ``rmse`` is ``sqrt(RSS / n)`` of the (weighted) log residuals
    ``log model - log y``; ``aic = n ln(RSS/n) + 2k`` and ``bic = n ln(RSS/n) + k ln n``
    with ``k`` fitted parameters. A failed fit has ``success=False``, ``rmse = aic =
    bic = inf``, empty ``params`` and the reason in ``message``.

    Quality flags of a successful fit: ``at_bound`` names the fitted parameters
    (``p``, ``logA``, ``logc``, ``logxi``) that ended at a bound; ``log_spread`` is
    the RMS deviation of the fitted ``log y`` about its mean over the fitted
    distances (nats); ``flat`` is ``log_spread < FLAT_LOG_SPREAD``; ``usable`` is
    ``success`` and neither ``flat`` nor the shape parameter (``p`` or ``logxi``)
    at a bound. Only a usable fit measures a decay.
    """

    name: str
    success: bool
    params: dict[str, float]
    stderr: dict[str, float]
    rmse: float
    aic: float
    bic: float
    rss: float
    n_points: int
    n_params: int
    message: str = ""
    r_min: float = math.nan
    r_max: float = math.nan
    at_bound: tuple[str, ...] = ()
    log_spread: float = math.nan

    @property
    def formula(self) -> str:
        """The model's formula, e.g. ``c + A (r+1)^(-p)``."""
        return MODEL_FORMULAS[self.name]

    @property
    def shape_at_bound(self) -> bool:
        """Whether the parameter that sets the decay (``p``, or ``logxi`` for ``exp_floor``) is at a bound."""
        return SHAPE_PARAMS[self.name] in self.at_bound

    @property
    def flat(self) -> bool:
        """A successful fit whose curve barely changes over the fitted range (``log_spread < FLAT_LOG_SPREAD``)."""
        return self.success and self.log_spread < FLAT_LOG_SPREAD

    @property
    def usable(self) -> bool:
        """Converged, not flat, shape parameter not at a bound: the fit measures a decay."""
        return self.success and not self.flat and not self.shape_at_bound

    @property
    def issue(self) -> str:
        """Why the fit is not usable (``"failed"``, ``"flat"``, ``"at bound: p"``), ``""`` when it is."""
        if not self.success:
            return "failed"
        if self.flat:
            return "flat"
        if self.shape_at_bound:
            return f"at bound: {SHAPE_PARAMS[self.name]}"
        return ""

    def curve(self, r: ArrayLike) -> FloatArray:
        """The fitted model at distances ``r`` in tokens, any shape (see :func:`model_curve`)."""
        if not self.success:
            raise ValueError(f"fit {self.name!r} failed ({self.message}); nothing to evaluate")
        return model_curve(self.name, self.params, r)


def _failed(name: str, message: str, n_points: int, r: FloatArray) -> FitResult:
    return FitResult(
        name=name,
        success=False,
        params={},
        stderr={},
        rmse=math.inf,
        aic=math.inf,
        bic=math.inf,
        rss=math.inf,
        n_points=n_points,
        n_params=len(FIT_PARAMS[name]),
        message=message,
        r_min=float(r.min()) if r.size else math.nan,
        r_max=float(r.max()) if r.size else math.nan,
    )


class FitTable(Sequence[FitResult]):
    """The fits of one profile, ranked by log-space RMSE (best first, failures last).

    Behaves as a read-only list of :class:`FitResult`; ``table.best`` is the top
    successful fit, ``table.get("power_floor")`` looks a model up by name. The
    ranking is the paper's table and ignores the quality flags.
    """

    def __init__(self, results: Sequence[FitResult]) -> None:
        order = {name: i for i, name in enumerate(MODEL_NAMES)}
        # Stable ranking: RMSE first, then failures last (rmse = inf), then the fixed
        # model order so ties (e.g. power vs power_floor on pure power data) are reproducible.
        self._results: tuple[FitResult, ...] = tuple(
            sorted(results, key=lambda f: (not f.success, f.rmse, order.get(f.name, len(order))))
        )

    @overload
    def __getitem__(self, index: int) -> FitResult: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[FitResult, ...]: ...
    def __getitem__(self, index: int | slice) -> FitResult | tuple[FitResult, ...]:
        return self._results[index]

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[FitResult]:
        return iter(self._results)

    def __repr__(self) -> str:
        ranked = ", ".join(f"{f.name}={f.rmse:.4g}" if f.success else f"{f.name}=failed" for f in self)
        return f"FitTable({ranked})"

    @property
    def names(self) -> tuple[str, ...]:
        """Model names in rank order."""
        return tuple(f.name for f in self)

    @property
    def best(self) -> FitResult | None:
        """The lowest-RMSE successful fit, or ``None`` when every fit failed."""
        for fit in self:
            if fit.success:
                return fit
        return None

    def get(self, name: str) -> FitResult | None:
        """The fit of model ``name``, or ``None`` if it is not in the table."""
        for fit in self:
            if fit.name == name:
                return fit
        return None

    def rank(self, name: str) -> int | None:
        """0-based rank of model ``name`` (``None`` if absent)."""
        for i, fit in enumerate(self):
            if fit.name == name:
                return i
        return None

    def rmse_gap(self) -> float:
        """``rmse(exp_floor) - rmse(power_floor)``; see :func:`rmse_gap`."""
        return rmse_gap(self)

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict per model, in rank order: metrics, flags, then each parameter and ``<name>_stderr``."""
        records: list[dict[str, Any]] = []
        for rank, fit in enumerate(self):
            record: dict[str, Any] = {
                "rank": rank,
                "model": fit.name,
                "success": fit.success,
                "usable": fit.usable,
                "flat": fit.flat,
                "at_bound": ", ".join(fit.at_bound),
                "log_spread": fit.log_spread,
                "rmse": fit.rmse,
                "aic": fit.aic,
                "bic": fit.bic,
                "n_points": fit.n_points,
                "n_params": fit.n_params,
            }
            for key in ("p", "A", "c", "xi"):
                record[key] = fit.params.get(key, math.nan)
                record[f"{key}_stderr"] = fit.stderr.get(key, math.nan)
            record["message"] = fit.message
            records.append(record)
        return records

    def to_dataframe(self) -> Any:
        """The table as a ``pandas.DataFrame`` (one row per model, rank order).

        pandas is imported here, not at module level, because it is only an indirect
        dependency of the project (it arrives with ``datasets``).
        """
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas ships with datasets
            raise ImportError("FitTable.to_dataframe needs pandas; use to_records() instead") from exc
        return pd.DataFrame.from_records(self.to_records())

    def __str__(self) -> str:
        def fmt(fit: FitResult, key: str) -> str:
            if key not in fit.params:
                return ""
            value, err = fit.params[key], fit.stderr.get(key, math.nan)
            return f"{value:.4g} ± {err:.2g}" if math.isfinite(err) else f"{value:.4g}"

        header = ["rank", "model", "log-RMSE", "AIC", "BIC", "n", "p", "xi", "c", "A", "note"]
        lines = []
        for rank, fit in enumerate(self):
            if fit.success:
                lines.append([
                    str(rank), fit.name, f"{fit.rmse:.4g}", f"{fit.aic:.2f}", f"{fit.bic:.2f}",
                    str(fit.n_points), fmt(fit, "p"), fmt(fit, "xi"), fmt(fit, "c"), fmt(fit, "A"),
                    fit.message if fit.message != "ok" else "",
                ])
            else:
                lines.append([str(rank), fit.name, "failed", "", "", str(fit.n_points),
                              "", "", "", "", fit.message])
        widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(header)]
        out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
        out.append("  ".join("-" * w for w in widths))
        out.extend("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines)
        return "\n".join(out)


def rmse_gap(table: FitTable) -> float:
    """``rmse(exp_floor) - rmse(power_floor)``: log-RMSE gap between the two three-parameter laws.

    Like is compared with like: both laws have a floor and three parameters, so
    the gap does not favour either by a parameter count (the better of ``power``
    and ``power_floor`` against ``exp_floor`` would lean toward "power law").
    Positive means the power law with floor fits better. In nats of log
    residual; NaN when either fit failed or is missing. The quality flags are not
    applied here (see :func:`~green_profiles.analysis.fits.bootstrap_fits`, which leaves
    out fits that are flat or at a bound).
    """
    exp_fit, power_fit = table.get("exp_floor"), table.get("power_floor")
    if exp_fit is None or power_fit is None or not exp_fit.success or not power_fit.success:
        return math.nan
    return exp_fit.rmse - power_fit.rmse


# ----------------------------------------------------------------------------------------
# Fitting
# ----------------------------------------------------------------------------------------


def _clean(
    r: ArrayLike, y: ArrayLike, weights: ArrayLike | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Keep points with finite ``r >= 1``, valid ``y`` and a valid weight (:func:`valid_mask`).

    Returns ``r``, ``log y`` and weights normalized to mean 1 over the kept points,
    all ``[n_kept]`` and sorted by ``r``. Normalizing makes RSS, RMSE and AIC with
    weights comparable to the unweighted ones (equal weights change nothing).
    """
    r_arr = np.asarray(r, dtype=np.float64).ravel()
    y_arr = np.asarray(y, dtype=np.float64).ravel()
    if r_arr.shape != y_arr.shape:
        raise ValueError(f"r and y must have the same length, got {r_arr.size} and {y_arr.size}")
    if weights is None:
        w_arr = np.ones_like(y_arr)
    else:
        w_arr = np.asarray(weights, dtype=np.float64).ravel()
        if w_arr.shape != y_arr.shape:
            raise ValueError(f"weights must match y in length, got {w_arr.size} and {y_arr.size}")
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(r_arr) & (r_arr >= 1) & valid_mask(y_arr) & valid_mask(w_arr)
    order = np.argsort(r_arr[keep], kind="stable")
    r_k, y_k, w_k = r_arr[keep][order], y_arr[keep][order], w_arr[keep][order]
    if w_k.size:
        w_k = w_k / w_k.mean()
    return r_k, np.log(y_k), w_k


def _linear_fit(x: FloatArray, ly: FloatArray, w: FloatArray) -> tuple[float, float]:
    """Weighted straight line ``ly ≈ a + b x``; returns ``(a, b)``."""
    if x.size < 2 or np.ptp(x) == 0:
        return float(np.average(ly, weights=w)) if x.size else 0.0, 0.0
    b, a = np.polyfit(x, ly, 1, w=np.sqrt(w))
    return float(a), float(b)


def _clip_p(p: float) -> float:
    return float(np.clip(p, *START_P_RANGE))


def _starts(name: str, r: FloatArray, ly: FloatArray, w: FloatArray) -> list[dict[str, float]]:
    """Data-derived starting values (log-space parameters) for model ``name``.

    ``power``: the log-log regression, which *is* the least-squares optimum when
    ``p`` is inside its bounds. Floor models: a floor at a few fractions of the
    tail minimum (the floor must sit below the tail), then the excess over that
    floor regressed on ``log(r+1)`` (power) or on ``r`` (exponential; plus the
    distance over which the excess falls by ``e``) for the remaining parameters.
    """
    y = np.exp(ly)
    logr1 = np.log1p(r)
    a, b = _linear_fit(logr1, ly, w)
    if name == "power":
        return [{"logA": a, "p": _clip_p(-b)}]

    tail = y[-max(3, y.size // 4):]
    starts: list[dict[str, float]] = []
    for frac in (0.9, 0.5, 0.05):
        c0 = frac * float(tail.min())
        excess = y - c0
        ok = excess > 0
        if ok.sum() < 2:
            continue
        lex, rr, ww = np.log(excess[ok]), r[ok], w[ok]
        if name == "power_floor":
            a0, b0 = _linear_fit(np.log1p(rr), lex, ww)
            starts.append({"logc": math.log(c0), "logA": a0, "p": _clip_p(-b0)})
        else:
            a0, b0 = _linear_fit(rr, lex, ww)
            xi_reg = -1.0 / b0 if b0 < 0 else float(np.ptp(r)) or 1.0
            # e-folding distance of the excess: robust when the log-excess is not a line
            # (a power-law profile), where the regression slope is dominated by the tail.
            below = np.nonzero(lex <= lex[0] - 1.0)[0]
            xi_e = float(rr[below[0]] - rr[0]) if below.size else float(np.ptp(rr)) or 1.0
            for xi0 in {max(xi_reg, 1e-2), max(xi_e, 1e-2)}:
                a_xi = float(lex[0] + rr[0] / xi0)  # amplitude at r = 0 through the first point
                starts.append({"logc": math.log(c0), "logA": a_xi, "logxi": math.log(xi0)})
    if not starts:  # degenerate data (e.g. constant): any finite start; the fit decides
        starts.append({"logc": float(ly.min()) - 1.0, "logA": float(ly.max()), "p": 1.0}
                      if name == "power_floor" else
                      {"logc": float(ly.min()) - 1.0, "logA": float(ly.max()), "logxi": 0.0})
    return starts


def _parameters(name: str, start: Mapping[str, float], r: FloatArray, ly: FloatArray) -> lmfit.Parameters:
    """lmfit parameters with generous bounds derived from the data scale.

    The bounds only guard against runaway steps (overflowing exponents); an
    optimum at one of them means the model does not describe the data
    (e.g. a floor driven to zero on pure power data), which is reported in
    ``FitResult.at_bound`` and the fit message.
    """
    bounds = parameter_bounds(float(ly.min()), float(ly.max()), float(r.max()))
    params = lmfit.Parameters()
    for key in FIT_PARAMS[name]:
        low, high = float(bounds[key][0]), float(bounds[key][1])
        value = float(np.clip(start[key], low + START_MARGIN * (high - low), high - START_MARGIN * (high - low)))
        params.add(key, value=value, min=low, max=high)
    return params


def _residual(params: lmfit.Parameters, name: str, r: FloatArray, ly: FloatArray, sw: FloatArray) -> FloatArray:
    values = params.valuesdict()
    return sw * (log_model(name, values, r) - ly)


def _at_bound(params: lmfit.Parameters) -> tuple[str, ...]:
    hits = []
    for par in params.values():
        width = par.max - par.min
        if par.value <= par.min + BOUND_TOLERANCE * width or par.value >= par.max - BOUND_TOLERANCE * width:
            hits.append(par.name)
    return tuple(hits)


def _fit_one(
    name: str,
    r: FloatArray,
    ly: FloatArray,
    w: FloatArray,
    extra_starts: Sequence[Mapping[str, float]] = (),
) -> FitResult:
    n, k = r.size, len(FIT_PARAMS[name])
    if n < k + 1:
        return _failed(name, f"too few points: {n} usable, {name} needs at least {k + 1} "
                             f"({k} parameters + 1)", n, r)
    sw = np.sqrt(w)
    best: lmfit.minimizer.MinimizerResult | None = None
    errors: list[str] = []
    for start in [*extra_starts, *_starts(name, r, ly, w)]:
        try:
            params = _parameters(name, start, r, ly)
            with warnings.catch_warnings():
                # Covariance warnings on degenerate starts are expected; the best start decides.
                warnings.simplefilter("ignore")
                out = lmfit.minimize(_residual, params, args=(name, r, ly, sw), method="leastsq")
        except FIT_ERRORS as exc:  # a start that fails on the data must not end the search
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        if not out.success or not np.isfinite(out.chisqr):
            errors.append(str(out.message))
            continue
        if best is None or out.chisqr < best.chisqr:
            best = out
    if best is None:
        reason = errors[0] if errors else "no usable start"
        return _failed(name, f"fit did not converge from any start ({reason})", n, r)

    rss = float(best.chisqr)
    values = {key: float(par.value) for key, par in best.params.items()}
    stderr = {
        key: float(par.stderr) if par.stderr is not None and np.isfinite(par.stderr) else math.nan
        for key, par in best.params.items()
    }
    # Derived linear parameters; delta method: d exp(u) = exp(u) du.
    for log_key in ("logA", "logc", "logxi"):
        if log_key in values:
            lin = math.exp(values[log_key])
            values[log_key[3:]] = lin
            stderr[log_key[3:]] = lin * stderr[log_key]
    # RSS can be exactly 0 on noiseless data evaluated exactly; ln(0) -> -inf is the honest AIC.
    with np.errstate(divide="ignore"):
        log_term = n * float(np.log(rss / n))
    log_spread = float(np.std(log_model(name, values, r)))
    notes = []
    if hits := _at_bound(best.params):
        notes.append("at bound: " + ", ".join(hits))
    if log_spread < FLAT_LOG_SPREAD:
        notes.append(f"flat: log spread {log_spread:.2g} < {FLAT_LOG_SPREAD:g}")
    if any(math.isnan(stderr[key]) for key in FIT_PARAMS[name]):
        notes.append("standard errors unavailable")
    return FitResult(
        name=name,
        success=True,
        params=values,
        stderr=stderr,
        rmse=math.sqrt(rss / n),
        aic=log_term + 2 * k,
        bic=log_term + k * math.log(n),
        rss=rss,
        n_points=n,
        n_params=k,
        message="; ".join(notes) if notes else "ok",
        r_min=float(r.min()),
        r_max=float(r.max()),
        at_bound=hits,
        log_spread=log_spread,
    )


def fit_decay_models(
    r: ArrayLike,
    y: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    models: Sequence[str] = MODEL_NAMES,
    start_params: Mapping[str, Mapping[str, float]] | None = None,
) -> FitTable:
    """Fit the decay laws to one profile in log space and rank them by log-RMSE.

    Parameters
    ----------
    r:
        Distances in tokens, shape ``[n]``.
    y:
        Profile values at those distances (dimensionless, e.g. the median of
        ``Ĝ``), shape ``[n]``.
    weights:
        Optional per-point weights ``[n]`` on the squared log residuals (e.g. the
        number of rows behind each median). Normalized to mean 1 over the kept
        points, so they change the fit, not the scale of RSS/RMSE/AIC.
    models:
        Which of :data:`MODEL_NAMES` to fit.
    start_params:
        Optional extra starting values per model (log-space parameters, e.g. the
        ``params`` of an earlier fit), tried before the data-derived starts.

    Returns
    -------
    A :class:`FitTable`, ranked by log-space RMSE, failures last; each fit carries
    its quality flags (``at_bound``, ``flat``, ``usable``).

    Notes
    -----
    Points are dropped before fitting when ``r < 1`` (``r = 0`` is 1 by
    construction of ``Ĝ`` and carries no information), when ``r`` is not finite,
    when ``y`` is not valid (:func:`~green_profiles.kernel.counts.valid_mask`: not finite
    or ``<= 0``, no logarithm), or when the weight is not valid. ``n_points``
    counts what is left. A model with fewer than ``k + 1`` points (``k``
    parameters) or whose fit fails on the data from every start (the numerical
    errors of :data:`FIT_ERRORS`) is returned with ``success=False``. The function
    raises for malformed input (lengths that differ, unknown model names), and
    any other exception inside a fit (a programming error) propagates.
    """
    unknown = [m for m in models if m not in FIT_PARAMS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; expected some of {MODEL_NAMES}")
    r_k, ly, w = _clean(r, y, weights)
    extra = start_params or {}
    results = []
    for name in models:
        starts = [s for s in [extra.get(name)] if s and all(key in s for key in FIT_PARAMS[name])]
        results.append(_fit_one(name, r_k, ly, w, starts))
    return FitTable(results)
