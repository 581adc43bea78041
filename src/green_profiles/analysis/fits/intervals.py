"""Bootstrap confidence intervals from replicate values: percentile, expanded percentile and BCa.

With many groups (documents) the percentile interval covers as it should; with few
it is too narrow, because a resample of ``n`` groups spreads like ``(n − 1)/n`` of
the data's own variance and cannot draw anything the ``n`` groups do not show. Two
remedies, compared by ``benchmarks/simulate_inference.py coverage``:

- **expanded percentile**: the percentile interval read at wider quantiles,
  ``Φ(±sqrt(n/(n−1)) · t_{n−1}(1 − α/2))`` instead of ``α/2`` and ``1 − α/2``, which
  undoes the narrowness of a mean's bootstrap of ``n`` values;
- **BCa**: bias-corrected and accelerated, with the acceleration from the
  leave-one-group-out (jackknife) estimates.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

__all__ = ["IntervalMethod", "bca_interval", "expanded_levels", "interval", "percentile_interval"]

IntervalMethod = Literal["percentile", "expanded", "bca"]


def percentile_interval(values: ArrayLike, confidence: float) -> tuple[float, float]:
    """The ``(1 − confidence)/2`` and ``(1 + confidence)/2`` quantiles of the finite values (NaN, NaN if none)."""
    return _quantiles(values, (1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0)


def expanded_levels(confidence: float, n_groups: int) -> tuple[float, float]:
    """The quantile levels of the expanded percentile interval for ``n_groups`` resampled groups.

    ``Φ(∓ sqrt(n/(n−1)) t_{n−1, (1+confidence)/2})``: with ``n = 5`` and 95%, about 0.001 and 0.999; with 15,
    0.013 and 0.987.
    Fewer than two groups give the plain levels.
    """
    tail = (1.0 - confidence) / 2.0
    if n_groups < 2:
        return tail, 1.0 - tail
    widened = math.sqrt(n_groups / (n_groups - 1)) * float(stats.t.ppf(1.0 - tail, n_groups - 1))
    low = float(stats.norm.cdf(-widened))
    return low, 1.0 - low


def bca_interval(values: ArrayLike, point: float, jackknife: ArrayLike, confidence: float) -> tuple[float, float]:
    """The BCa interval of replicate ``values`` around ``point``, with leave-one-group-out estimates ``jackknife``.

    Bias correction ``z0 = Φ⁻¹(share of replicates below the point)`` (ties count half); acceleration
    ``a = Σ d³ / (6 (Σ d²)^{3/2})`` with ``d = mean(jackknife) − jackknife``. NaN, NaN where the point, fewer
    than two jackknife values or no replicate is finite, or all replicates lie on one side of the point.
    """
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    jack = np.asarray(jackknife, dtype=np.float64)
    jack = jack[np.isfinite(jack)]
    if not math.isfinite(point) or finite.size == 0 or jack.size < 2:
        return math.nan, math.nan
    below = (np.sum(finite < point) + 0.5 * np.sum(finite == point)) / finite.size
    if not 0.0 < below < 1.0:
        return math.nan, math.nan
    z0 = float(stats.norm.ppf(below))
    d = jack.mean() - jack
    denominator = 6.0 * float(np.sum(d**2)) ** 1.5
    a = float(np.sum(d**3)) / denominator if denominator > 0 else 0.0
    levels = []
    for z in stats.norm.ppf([(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0]):
        shifted = z0 + (z0 + z) / (1.0 - a * (z0 + z))
        levels.append(float(stats.norm.cdf(shifted)))
    return _quantiles(finite, *levels)


def interval(values: ArrayLike, confidence: float, method: IntervalMethod = "percentile", *, n_groups: int = 0,
             point: float = math.nan, jackknife: ArrayLike | None = None) -> tuple[float, float]:
    """The ``confidence`` interval of replicate ``values`` by ``method`` (see the module docstring).

    ``n_groups`` is needed by ``"expanded"``, ``point`` and ``jackknife`` by ``"bca"``.
    """
    if method == "percentile":
        return percentile_interval(values, confidence)
    if method == "expanded":
        return _quantiles(values, *expanded_levels(confidence, n_groups))
    if method == "bca":
        return bca_interval(values, point, np.asarray([] if jackknife is None else jackknife), confidence)
    raise ValueError(f"unknown interval method {method!r}; expected percentile, expanded or bca")


def _quantiles(values: ArrayLike, low: float, high: float) -> tuple[float, float]:
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(finite, [100.0 * low, 100.0 * high])
    return float(lo), float(hi)
