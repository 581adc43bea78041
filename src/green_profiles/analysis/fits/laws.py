"""The three decay laws: their formulas, parameters, bounds, and their values in log space.

``power``
    ``A (r+1)^(-p)``
``power_floor``
    ``c + A (r+1)^(-p)``; the paper's headline form, ``γ = c``, ``β = A``
``exp_floor``
    ``c + A exp(-r/ξ)``

``r`` is a token distance (dimensionless, in tokens) and the value ``y`` a
normalized sensitivity ``Ĝ`` (a ratio of gradient norms, dimensionless). The
positive parameters are fitted through their logarithms (``logA``, ``logc``,
``logxi``) so that positivity needs no bound; the exponent is bounded to
``P_BOUNDS = (0, 10)``. Each law has one *shape* parameter (``p`` or ``logxi``),
the one that says how fast it decays; the others only set its level.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "FIT_PARAMS",
    "BOUND_TOLERANCE",
    "MODEL_FORMULAS",
    "MODEL_NAMES",
    "PAPER_P_RANGE",
    "POWER_MODELS",
    "P_BOUNDS",
    "SHAPE_PARAMS",
    "log_model",
    "model_curve",
    "parameter_bounds",
]

FloatArray = NDArray[np.float64]

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

# A fitted parameter this close to a bound, as a fraction of the bounds' distance, is "at the bound" (stuck):
# p within 0.1 of 0 or 10; xi within a factor of about 1.2 of 0.01 tokens or of 1000 times the largest distance.
# An optimum that close to a bound is set by the bound, not by the data (p = 9.9 is a step, not an exponent).
BOUND_TOLERANCE: float = 0.01

# Starts lie this far inside the bounds (a fraction of their distance): leastsq maps a bounded parameter
# through a sine whose derivative vanishes at the bound, and a fit started there would never move.
START_MARGIN: float = 1e-6
# A data-derived start of p is clipped into this range (strictly inside P_BOUNDS, for the same reason).
START_P_RANGE: tuple[float, float] = (0.02, 9.5)

# The fitted (internal) parameters of each model, in the order the optimizer sees them.
FIT_PARAMS: dict[str, tuple[str, ...]] = {
    "power": ("logA", "p"),
    "power_floor": ("logc", "logA", "p"),
    "exp_floor": ("logc", "logA", "logxi"),
}
# The parameter that sets how fast each law decays (as the optimizer sees it). A fit with
# this one at a bound is not a measurement of the decay (see FitResult.usable).
SHAPE_PARAMS: dict[str, str] = {"power": "p", "power_floor": "p", "exp_floor": "logxi"}


def parameter_bounds(lo: ArrayLike, hi: ArrayLike, r_max: ArrayLike) -> dict[str, tuple[ArrayLike, ArrayLike]]:
    """Lower and upper bound of every fitted parameter, from the data's scale.

    ``lo``, ``hi``: the smallest and largest ``log y`` of the fitted points; ``r_max``: the largest fitted
    distance in tokens. Scalars (one profile) or arrays of one value per profile; the bounds have their
    shape. They only guard against runaway steps (overflowing exponents): an optimum at one of them means
    the law does not describe the data, which the fits report (``at_bound``).
    """
    lo, hi, r_max = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64), np.asarray(r_max, dtype=np.float64)
    span = np.log1p(r_max) * P_BOUNDS[1] + 10.0
    return {
        "logA": (lo - 50.0, hi + span),
        "logc": (lo - 40.0, hi + 1.0),
        "p": (np.full_like(lo, P_BOUNDS[0]), np.full_like(lo, P_BOUNDS[1])),
        # xi from a hundredth of a token (a step) to far beyond the fitted range (a flat line).
        "logxi": (np.full_like(lo, math.log(1e-2)), np.log(1e3 * np.maximum(r_max, 1.0))),
    }


def log_model(name: str, values: Mapping[str, float], r: FloatArray) -> FloatArray:
    """``log y`` of model ``name`` at distances ``r`` (tokens, shape ``[n]``), from log-space parameters.

    ``values`` holds the parameters of :data:`FIT_PARAMS` ``[name]``. ``logaddexp``
    keeps ``log(c + A f(r))`` finite when either term under- or overflows (e.g.
    ``exp(-r/xi)`` at ``r = 1536`` with a small ``xi``). Returns shape ``[n]``.
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
    if name not in FIT_PARAMS:
        raise ValueError(f"unknown model {name!r}; expected one of {MODEL_NAMES}")
    r_arr = np.asarray(r, dtype=np.float64)
    values: dict[str, float] = {}
    for key in FIT_PARAMS[name]:
        if key in params:
            values[key] = float(params[key])
        elif key.startswith("log") and key[3:] in params:
            # log of a non-positive value is -inf / nan: that is the caller's data, not ours.
            with np.errstate(divide="ignore", invalid="ignore"):
                values[key] = float(np.log(float(params[key[3:]])))
        else:
            raise KeyError(f"model {name!r} needs parameter {key!r} (or {key[3:]!r})")
    return np.exp(log_model(name, values, r_arr.ravel())).reshape(r_arr.shape)
