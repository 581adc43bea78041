"""Where an exponent stands: against the paper's range of ``p``, and against another run's exponent."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from green_profiles.analysis.fits import PAPER_P_RANGE


def compare_with_paper(p: float, low: float, high: float, paper: tuple[float, float] = PAPER_P_RANGE) -> str:
    """Where an exponent with its interval ``[low, high]`` stands against the paper's range of ``p``.

    "within" when the point estimate lies in the range; otherwise "overlaps" when
    the interval reaches into it, "steeper" or "shallower" when the whole interval
    lies above or below it; "no estimate" when the fit failed.
    """
    if not all(math.isfinite(value) for value in (p, low, high)):
        return "no estimate"
    if paper[0] <= p <= paper[1]:
        return "within the paper's range"
    if low > paper[1]:
        return "steeper than the paper's range"
    if high < paper[0]:
        return "shallower than the paper's range"
    return "interval overlaps the paper's range"


def compare_exponents(first: Mapping[str, Any], second: Mapping[str, Any]) -> str:
    """How the exponent ``p`` of one record (``p``, ``p_low``, ``p_high``) stands against another's.

    "steeper" or "shallower" when the two 95% intervals do not overlap, "intervals
    overlap" when they do, "no comparison" when either has no estimate.
    """
    values = [float(record[key]) for record in (first, second) for key in ("p", "p_low", "p_high")]
    if not all(math.isfinite(value) for value in values):
        return "no comparison (an exponent is missing)"
    if first["p_low"] > second["p_high"]:
        return "steeper"
    if first["p_high"] < second["p_low"]:
        return "shallower"
    return "intervals overlap"
