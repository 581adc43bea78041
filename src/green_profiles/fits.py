"""Decay-law fits of influence profiles, in log space, with model ranking and a bootstrap.

The measured profile is the median diagonal-normalized sensitivity ``Ĝ(r)`` at a
set of token distances ``r`` (dimensionless, in tokens; ``Ĝ`` is a ratio of
gradient norms, hence also dimensionless). Three decay laws are fitted by least
squares on ``log y`` (the paper's choice: the profile spans several decades, and
a linear-space fit would see only the first few distances):

``power``
    ``A (r+1)^(-p)``
``power_floor``
    ``c + A (r+1)^(-p)``; the paper's headline form, ``γ = c``, ``β = A``
``exp_floor``
    ``c + A exp(-r/ξ)``

The positive parameters are fitted through their logarithms (``logA``, ``logc``,
``logxi``) so that positivity needs no bound; the exponent is bounded to
``0 <= p <= 10``. The linear parameters are reported as derived quantities with
delta-method standard errors (``se(A) = A se(logA)``). Models are ranked by
log-space RMSE (the paper's criterion); AIC and BIC on the log residuals are
diagnostics.

Beyond the paper: :func:`bootstrap_fits` resamples windows to give percentile
intervals for ``p`` and for the RMSE gap between the exponential and the power
laws, and :func:`fit_range_scan` shows how ``p`` moves with the fitted range.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import lmfit
import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "MODEL_NAMES",
    "MODEL_FORMULAS",
    "BootstrapResult",
    "FitResult",
    "FitTable",
    "bootstrap_fits",
    "fit_decay_models",
    "fit_range_scan",
    "model_curve",
    "rmse_gap",
    "verdict",
]

MODEL_NAMES: tuple[str, ...] = ("power", "power_floor", "exp_floor")
MODEL_FORMULAS: dict[str, str] = {
    "power": "A (r+1)^(-p)",
    "power_floor": "c + A (r+1)^(-p)",
    "exp_floor": "c + A exp(-r/xi)",
}
POWER_MODELS: tuple[str, ...] = ("power", "power_floor")
P_BOUNDS: tuple[float, float] = (0.0, 10.0)
# The paper's reported range of the exponent p of the power law with floor (trained models, coherent text).
PAPER_P_RANGE: tuple[float, float] = (0.7, 0.9)

# The fitted (internal) parameters of each model, in the order the optimizer sees them.
_FIT_PARAMS: dict[str, tuple[str, ...]] = {
    "power": ("logA", "p"),
    "power_floor": ("logc", "logA", "p"),
    "exp_floor": ("logc", "logA", "logxi"),
}

FloatArray = NDArray[np.float64]


# ----------------------------------------------------------------------------------------
# Models in log space
# ----------------------------------------------------------------------------------------


def _log_model(name: str, values: Mapping[str, float], r: FloatArray) -> FloatArray:
    """``log`` of the model at distances ``r`` [n], from log-space parameters.

    ``logaddexp`` keeps ``log(c + A f(r))`` finite when either term under- or
    overflows (e.g. ``exp(-r/xi)`` at ``r = 1536`` with a small ``xi``).
    """
    if name == "power":
        return values["logA"] - values["p"] * np.log1p(r)
    if name == "power_floor":
        return np.logaddexp(values["logc"], values["logA"] - values["p"] * np.log1p(r))
    if name == "exp_floor":
        return np.logaddexp(values["logc"], values["logA"] - r * math.exp(-values["logxi"]))
    raise ValueError(f"unknown model {name!r}; expected one of {MODEL_NAMES}")


def model_curve(name: str, params: Mapping[str, float], r: ArrayLike) -> FloatArray:
    """Evaluate a fitted model at distances ``r``.

    Parameters
    ----------
    name:
        One of :data:`MODEL_NAMES`.
    params:
        Either the linear parameters (``A``, ``p``, ``c``, ``xi``) or their log-space
        versions (``logA``, ``logc``, ``logxi``); ``FitResult.params`` holds both.
    r:
        Distances in tokens, any shape.

    Returns
    -------
    ``y`` with the shape of ``r`` (dimensionless, the normalized profile's units).
    """
    r_arr = np.asarray(r, dtype=np.float64)
    values: dict[str, float] = {}
    for key in _FIT_PARAMS.get(name, ()):
        if key in params:
            values[key] = float(params[key])
        elif key.startswith("log") and key[3:] in params:
            # log of a non-positive value is -inf / nan: that is the caller's data, not ours.
            with np.errstate(divide="ignore", invalid="ignore"):
                values[key] = float(np.log(float(params[key[3:]])))
        else:
            raise KeyError(f"model {name!r} needs parameter {key!r} (or {key[3:]!r})")
    if name not in _FIT_PARAMS:
        raise ValueError(f"unknown model {name!r}; expected one of {MODEL_NAMES}")
    return np.exp(_log_model(name, values, r_arr.ravel())).reshape(r_arr.shape)


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

    @property
    def formula(self) -> str:
        """The model's formula, e.g. ``c + A (r+1)^(-p)``."""
        return MODEL_FORMULAS[self.name]

    def curve(self, r: ArrayLike) -> FloatArray:
        """The fitted model at distances ``r`` (see :func:`model_curve`)."""
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
        n_params=len(_FIT_PARAMS[name]),
        message=message,
        r_min=float(r.min()) if r.size else math.nan,
        r_max=float(r.max()) if r.size else math.nan,
    )


class FitTable(Sequence[FitResult]):
    """The fits of one profile, ranked by log-space RMSE (best first, failures last).

    Behaves as a read-only list of :class:`FitResult`; ``table.best`` is the top
    successful fit, ``table.get("power_floor")`` looks a model up by name.
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
        """``rmse(exp_floor) - min(rmse(power), rmse(power_floor))``; see :func:`rmse_gap`."""
        return rmse_gap(self)

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict per model, in rank order: metrics, then each parameter and ``<name>_stderr``."""
        records: list[dict[str, Any]] = []
        for rank, fit in enumerate(self):
            record: dict[str, Any] = {
                "rank": rank,
                "model": fit.name,
                "success": fit.success,
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
    """``rmse(exp_floor) - min over successful power models of rmse``.

    Positive means a power law (with or without floor) fits better than the
    exponential. NaN when ``exp_floor`` or both power models failed.
    """
    exp_fit = table.get("exp_floor")
    power_rmse = [f.rmse for name in POWER_MODELS if (f := table.get(name)) is not None and f.success]
    if exp_fit is None or not exp_fit.success or not power_rmse:
        return math.nan
    return exp_fit.rmse - min(power_rmse)


# ----------------------------------------------------------------------------------------
# Fitting
# ----------------------------------------------------------------------------------------


def _clean(
    r: ArrayLike, y: ArrayLike, weights: ArrayLike | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Keep points with ``r >= 1``, finite positive ``y`` and finite positive weight.

    Returns ``r``, ``log y`` and weights normalized to mean 1 over the kept points,
    all sorted by ``r``. Normalizing makes RSS, RMSE and AIC with weights
    comparable to the unweighted ones (equal weights change nothing).
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
        keep = (
            np.isfinite(r_arr) & (r_arr >= 1)
            & np.isfinite(y_arr) & (y_arr > 0)
            & np.isfinite(w_arr) & (w_arr > 0)
        )
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
    # Start strictly inside the bounds: leastsq maps bounded parameters through a sine,
    # whose derivative vanishes exactly at a bound, and the fit would never move.
    return float(np.clip(p, 0.02, 9.5))


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
    (e.g. a floor driven to zero on pure power data), which is reported in the
    fit message.
    """
    lo, hi = float(ly.min()), float(ly.max())
    span = float(np.log1p(r.max())) * P_BOUNDS[1] + 10.0
    bounds = {
        "logA": (lo - 50.0, hi + span),
        "logc": (lo - 40.0, hi + 1.0),
        "p": P_BOUNDS,
        # xi from a hundredth of a token (a step) to far beyond the fitted range (a flat line).
        "logxi": (math.log(1e-2), math.log(1e3 * max(float(r.max()), 1.0))),
    }
    params = lmfit.Parameters()
    for key in _FIT_PARAMS[name]:
        low, high = bounds[key]
        value = float(np.clip(start[key], low + 1e-6 * (high - low), high - 1e-6 * (high - low)))
        params.add(key, value=value, min=low, max=high)
    return params


def _residual(params: lmfit.Parameters, name: str, r: FloatArray, ly: FloatArray, sw: FloatArray) -> FloatArray:
    values = params.valuesdict()
    return sw * (_log_model(name, values, r) - ly)


def _at_bound(params: lmfit.Parameters) -> list[str]:
    hits = []
    for par in params.values():
        width = par.max - par.min
        if par.value <= par.min + 1e-6 * width or par.value >= par.max - 1e-6 * width:
            hits.append(par.name)
    return hits


def _fit_one(
    name: str,
    r: FloatArray,
    ly: FloatArray,
    w: FloatArray,
    extra_starts: Sequence[Mapping[str, float]] = (),
) -> FitResult:
    n, k = r.size, len(_FIT_PARAMS[name])
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
        except Exception as exc:  # noqa: BLE001 - a failed start must not end the search
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
    notes = []
    if hits := _at_bound(best.params):
        notes.append("at bound: " + ", ".join(hits))
    if any(math.isnan(stderr[key]) for key in _FIT_PARAMS[name]):
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
    A :class:`FitTable`, ranked by log-space RMSE, failures last.

    Notes
    -----
    Points are dropped before fitting when ``r < 1`` (``r = 0`` is 1 by
    construction of ``Ĝ`` and carries no information), when ``r`` or ``y`` is
    not finite, when ``y <= 0`` (no logarithm), or when the weight is not finite
    or not positive. ``n_points`` counts what is left. A model with fewer than
    ``k + 1`` points (``k`` parameters) or whose fit fails from every start is
    returned with ``success=False``; the function raises only for malformed input
    (lengths that differ, unknown model names).
    """
    unknown = [m for m in models if m not in _FIT_PARAMS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; expected some of {MODEL_NAMES}")
    r_k, ly, w = _clean(r, y, weights)
    extra = start_params or {}
    results = []
    for name in models:
        starts = [s for s in [extra.get(name)] if s and all(key in s for key in _FIT_PARAMS[name])]
        results.append(_fit_one(name, r_k, ly, w, starts))
    return FitTable(results)


# ----------------------------------------------------------------------------------------
# Bootstrap over windows
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapResult:
    """Window-bootstrap of the decay fits.

    ``replicates`` maps each statistic to its ``[n_boot]`` replicate values (NaN
    where the replicate's fit failed): ``p_power_floor``, ``p_power``,
    ``c_power_floor``, ``xi_exp_floor`` and ``rmse_gap`` (``rmse(exp_floor) -
    rmse(best power model)``, positive = power law wins). ``intervals`` holds the
    percentile interval of each over its finite replicates; ``point`` is the fit
    of the full-data profile. ``power_wins_fraction`` is the share of replicates
    with a finite gap in which the gap is positive.

    The RMSEs include the noise of the resampled profile, which is larger than
    that of the full-data profile, so the replicate gaps tend to sit below the
    point gap (the interval can even exclude it): the gap interval is
    conservative for the "power law wins" verdict. The ``p`` intervals showed no
    such shift on synthetic data.
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

    @property
    def point_estimates(self) -> dict[str, float]:
        """The same statistics as ``replicates``, from the full-data fit."""
        return _statistics(self.point)

    def __str__(self) -> str:
        point = self.point_estimates
        lines = [f"window bootstrap: {self.n_boot} replicates over {self.n_groups} windows, "
                 f"{self.statistic} profile, {100 * self.confidence:g}% percentile intervals"]
        for key, (lo, hi) in self.intervals.items():
            failed = self.n_failed.get(key, 0)
            lines.append(f"  {key:<14} {point[key]:.4g}  [{lo:.4g}, {hi:.4g}]"
                         + (f"  ({failed} failed)" if failed else ""))
        lines.append(f"  power law wins in {100 * self.power_wins_fraction:.1f}% of replicates")
        return "\n".join(lines)


def _statistics(table: FitTable) -> dict[str, float]:
    def param(model: str, key: str) -> float:
        fit = table.get(model)
        return fit.params.get(key, math.nan) if fit is not None and fit.success else math.nan

    return {
        "p_power_floor": param("power_floor", "p"),
        "p_power": param("power", "p"),
        "c_power_floor": param("power_floor", "c"),
        "xi_exp_floor": param("exp_floor", "xi"),
        "rmse_gap": rmse_gap(table),
    }


class _ColumnAggregator:
    """Per-distance median or mean of rows drawn with multiplicities, without copying rows.

    Each column's valid (finite, positive) values are sorted once. A bootstrap
    replicate is then a vector of row multiplicities, and the median of the
    expanded multiset is read off the cumulative counts in sorted order, which
    equals ``np.median`` of the explicitly resampled column (including the mean of
    the two middle values for an even count) at O(rows) per column instead of a
    gather and a partition.
    """

    def __init__(self, rows: FloatArray, statistic: str) -> None:
        self.statistic = statistic
        valid = np.isfinite(rows) & (rows > 0)
        self.columns: list[tuple[NDArray[np.intp], FloatArray]] = []
        for j in range(rows.shape[1]):
            idx = np.nonzero(valid[:, j])[0]
            order = np.argsort(rows[idx, j], kind="stable")
            self.columns.append((idx[order], rows[idx[order], j]))

    def __call__(self, multiplicity: NDArray[np.int64]) -> FloatArray:
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
            lo = int(np.searchsorted(cum, (total - 1) // 2, side="right"))
            hi = int(np.searchsorted(cum, total // 2, side="right"))
            out[j] = 0.5 * (values[lo] + values[hi])
        return out


def bootstrap_fits(
    r: ArrayLike,
    rows: ArrayLike,
    n_boot: int = 200,
    seed: int | None = 0,
    group: ArrayLike | None = None,
    statistic: Literal["median", "mean"] = "median",
    *,
    confidence: float = 0.95,
    weights: ArrayLike | None = None,
) -> BootstrapResult:
    """Percentile bootstrap of the decay fits, resampling whole windows.

    Rows from one window share its text, so they are not independent; resampling
    windows (not rows) keeps that correlation inside each replicate.

    Parameters
    ----------
    r:
        Distances in tokens, shape ``[n_r]`` (``r = 0`` may be included; the fit drops it).
    rows:
        Normalized profile values ``Ĝ``, shape ``[n_rows, n_r]``; NaN (or any
        non-finite or non-positive value) marks a missing entry and is ignored.
    n_boot:
        Number of bootstrap replicates.
    seed:
        Seed of the resampling; the same seed gives identical results.
    group:
        Window index of each row, shape ``[n_rows]`` (any labels); ``None`` treats
        each row as its own window.
    statistic:
        ``"median"`` (the paper's) or ``"mean"`` per distance over valid values.
    confidence:
        Coverage of the percentile intervals (0.95 gives the 2.5th-97.5th percentiles).
    weights:
        Optional per-distance fit weights ``[n_r]``, passed to :func:`fit_decay_models`.

    Returns
    -------
    A :class:`BootstrapResult` with replicate arrays ``[n_boot]``, intervals,
    the full-data fit and the fraction of replicates in which a power law wins.
    """
    r_arr = np.asarray(r, dtype=np.float64).ravel()
    data = np.asarray(rows, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != r_arr.size:
        raise ValueError(f"rows must be [n_rows, {r_arr.size}], got shape {data.shape}")
    if statistic not in ("median", "mean"):
        raise ValueError(f"statistic must be 'median' or 'mean', got {statistic!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    if group is None:
        inverse = np.arange(data.shape[0])
    else:
        labels = np.asarray(group).ravel()
        if labels.size != data.shape[0]:
            raise ValueError(f"group must have one label per row ({data.shape[0]}), got {labels.size}")
        _, inverse = np.unique(labels, return_inverse=True)
    n_groups = int(inverse.max()) + 1 if inverse.size else 0
    if n_groups == 0:
        raise ValueError("rows is empty")

    aggregate = _ColumnAggregator(data, statistic)
    point = fit_decay_models(r_arr, aggregate(np.ones(data.shape[0], dtype=np.int64)), weights)
    # Warm start every replicate from the full-data optimum: replicates are small
    # perturbations of it, so this is usually the best start and costs one fit.
    warm = {f.name: f.params for f in point if f.success}

    rng = np.random.default_rng(seed)
    keys = list(_statistics(point))
    replicates = {key: np.full(n_boot, np.nan) for key in keys}
    for b in range(n_boot):
        drawn = rng.integers(0, n_groups, size=n_groups)
        group_count = np.bincount(drawn, minlength=n_groups)
        table = fit_decay_models(r_arr, aggregate(group_count[inverse]), weights, start_params=warm)
        for key, value in _statistics(table).items():
            replicates[key][b] = value

    tail = 50.0 * (1.0 - confidence)
    intervals: dict[str, tuple[float, float]] = {}
    n_failed: dict[str, int] = {}
    for key, values in replicates.items():
        finite = values[np.isfinite(values)]
        n_failed[key] = int(n_boot - finite.size)
        if finite.size:
            lo, hi = np.percentile(finite, [tail, 100.0 - tail])
            intervals[key] = (float(lo), float(hi))
        else:
            intervals[key] = (math.nan, math.nan)
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
    )


def verdict(result: BootstrapResult) -> str:
    """One sentence on power law versus exponential, with the bootstrap evidence.

    "power law" when the whole gap interval is above zero, "exponential" when it
    is below, otherwise "undecided"; followed by ``p`` of the power law with floor
    and the numbers behind the call.
    """
    gap = result.point_estimates["rmse_gap"]
    low, high = result.intervals["rmse_gap"]
    p = result.point_estimates["p_power_floor"]
    p_low, p_high = result.intervals["p_power_floor"]
    if not math.isfinite(gap):
        winner = "undecided (a fit failed)"
    elif low > 0:
        winner = "power law"
    elif high < 0:
        winner = "exponential"
    else:
        winner = "undecided"
    level = f"{100 * result.confidence:g}%"
    return (f"{winner}: p = {p:.3f} [{p_low:.3f}, {p_high:.3f}] (power + floor), log-RMSE gap exp - power = "
            f"{gap:+.3f} [{low:+.3f}, {high:+.3f}] ({level} window bootstrap, {result.n_boot} replicates, "
            f"{result.n_groups} windows); power law better in {100 * result.power_wins_fraction:.0f}% of replicates")


# ----------------------------------------------------------------------------------------
# Sensitivity to the fitted range
# ----------------------------------------------------------------------------------------


def fit_range_scan(
    r: ArrayLike,
    y: ArrayLike,
    r_min_values: Sequence[float] | None = None,
    r_max_values: Sequence[float] | None = None,
    weights: ArrayLike | None = None,
    *,
    models: Sequence[str] = POWER_MODELS,
) -> list[dict[str, Any]]:
    """How the fitted exponent moves with the smallest or largest fitted distance.

    Two one-dimensional scans: for each ``r_min`` in ``r_min_values`` the fit uses
    ``r_min <= r`` (all larger distances kept); for each ``r_max`` in
    ``r_max_values`` it uses ``1 <= r <= r_max``. The usual cleaning of
    :func:`fit_decay_models` applies (``r >= 1``, finite positive ``y``).

    Parameters
    ----------
    r, y, weights:
        As in :func:`fit_decay_models`, shape ``[n]``.
    r_min_values:
        Lower cut-offs in tokens. Default: every distinct ``r >= 1`` that leaves at
        least 6 points.
    r_max_values:
        Upper cut-offs in tokens. Default: every distinct ``r`` that leaves at least
        6 points in ``[1, r_max]``.
    models:
        Models to fit at each cut (default: ``power`` and ``power_floor``; add
        ``exp_floor`` to scan the verdict too).

    Returns
    -------
    A tidy list of dicts, one per (scan setting, model), with keys ``scan``
    (``"r_min"`` or ``"r_max"``), ``r_min``, ``r_max`` (the requested cut),
    ``n_points``, ``model``, ``success``, ``p``, ``p_stderr``, ``rmse``, ``rank``
    (among the fitted models) and ``message``. ``pandas.DataFrame(result)`` makes
    it a table.
    """
    r_arr = np.asarray(r, dtype=np.float64).ravel()
    y_arr = np.asarray(y, dtype=np.float64).ravel()
    if r_arr.shape != y_arr.shape:
        raise ValueError(f"r and y must have the same length, got {r_arr.size} and {y_arr.size}")
    w_arr = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    usable = np.unique(r_arr[np.isfinite(r_arr) & (r_arr >= 1)])
    min_points = 6
    if r_min_values is None:
        r_min_values = [float(v) for v in usable[: max(usable.size - min_points + 1, 0)]]
    if r_max_values is None:
        r_max_values = [float(v) for v in usable[min_points - 1:]]
    r_top = float(usable.max()) if usable.size else math.inf

    settings = [("r_min", float(lo), r_top) for lo in r_min_values]
    settings += [("r_max", 1.0, float(hi)) for hi in r_max_values]
    records: list[dict[str, Any]] = []
    for scan, lo, hi in settings:
        mask = (r_arr >= lo) & (r_arr <= hi)
        table = fit_decay_models(
            r_arr[mask], y_arr[mask], None if w_arr is None else w_arr[mask], models=models
        )
        for fit in table:
            records.append({
                "scan": scan,
                "r_min": lo,
                "r_max": hi,
                "n_points": fit.n_points,
                "model": fit.name,
                "success": fit.success,
                "p": fit.params.get("p", math.nan),
                "p_stderr": fit.stderr.get("p", math.nan),
                "rmse": fit.rmse,
                "rank": table.rank(fit.name),
                "message": fit.message,
            })
    return records
