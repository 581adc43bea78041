"""Which measured values count: one definition of a valid value of ``Ĝ``.

A value of the (normalized) sensitivity ``Ĝ`` is usable when it is finite and
strictly positive: only then does it have a logarithm, which the log-space fits
and the log-log plots need. NaN marks a missing entry (a distance a row does
not reach, a failed gradient), and zero or a negative number cannot come from a
ratio of gradient norms except through underflow or an error. Every place that
filters values (the fits' input cleaning, the bootstrap's per-distance median,
the profile aggregation) uses :func:`valid_mask`, so that they agree on what
"finite, positive" means.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["valid_mask"]


def valid_mask(values: ArrayLike) -> NDArray[np.bool_]:
    """``True`` where a value is finite and ``> 0``.

    Parameters
    ----------
    values:
        Any real array-like (dimensionless ``Ĝ`` values, weights, ...), any shape.

    Returns
    -------
    A boolean array of the same shape. NaN, ``±inf``, zero and negative values are
    ``False``; no warning is raised for NaN.
    """
    arr = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(arr) & (arr > 0)
