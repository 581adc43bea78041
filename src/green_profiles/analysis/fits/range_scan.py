"""How the fitted exponent depends on the range of distances it is read from.

:func:`fit_range_scan` refits with the smallest or the largest fitted distance
moved, one cut at a time, and returns a tidy table of the fitted ``p`` per cut:
a law that describes the profile gives a ``p`` that does not drift with the range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from green_profiles.analysis.fits.fitting import fit_decay_models
from green_profiles.analysis.fits.laws import POWER_MODELS

__all__ = ["fit_range_scan"]


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
    :func:`fit_decay_models` applies (``r >= 1``, valid ``y``).

    Parameters
    ----------
    r, y, weights:
        As in :func:`fit_decay_models`: distances in tokens, profile values
        (dimensionless) and optional weights, each shape ``[n]``.
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
    ``n_points``, ``model``, ``success``, ``usable``, ``flat``, ``at_bound``
    (comma-separated parameter names), ``p``, ``p_stderr``, ``rmse``, ``rank``
    (among the fitted models) and ``message``. ``pandas.DataFrame(result)`` makes
    it a table.
    """
    r_arr = np.asarray(r, dtype=np.float64).ravel()
    y_arr = np.asarray(y, dtype=np.float64).ravel()
    if r_arr.shape != y_arr.shape:
        raise ValueError(f"r and y must have the same length, got {r_arr.size} and {y_arr.size}")
    w_arr = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    fitted = np.unique(r_arr[np.isfinite(r_arr) & (r_arr >= 1)])
    min_points = 6
    if r_min_values is None:
        r_min_values = [float(v) for v in fitted[: max(fitted.size - min_points + 1, 0)]]
    if r_max_values is None:
        r_max_values = [float(v) for v in fitted[min_points - 1:]]
    r_top = float(fitted.max()) if fitted.size else math.inf

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
                "usable": fit.usable,
                "flat": fit.flat,
                "at_bound": ", ".join(fit.at_bound),
                "p": fit.params.get("p", math.nan),
                "p_stderr": fit.stderr.get("p", math.nan),
                "rmse": fit.rmse,
                "rank": table.rank(fit.name),
                "message": fit.message,
            })
    return records
