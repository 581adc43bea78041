"""Where an exponent stands: against the paper's range of ``p``, and against another run's exponent
(paired over the same documents where the two runs share them, by their intervals where only records are left)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from green_profiles.analysis.fits import PAPER_P_RANGE, BootstrapResult, paired_difference


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


def compare_runs(first: BootstrapResult, second: BootstrapResult, key: str = "p_power_floor") -> str:
    """How ``key`` (default: ``p`` of the power law with floor) of one bootstrap stands against another's.

    From :func:`~green_profiles.analysis.fits.paired_difference`: "steeper by +0.12 [+0.05, +0.19] (paired)"
    or "shallower by ..." when the interval of the difference excludes zero, "no difference resolved:
    +0.02 [-0.04, +0.08] (paired)" when it does not ("unpaired" where the runs resample different
    text), "no comparison" when either has no estimate.
    """
    difference = paired_difference(first, second, key)
    if not (math.isfinite(difference.difference) and math.isfinite(difference.low)):
        return "no comparison (an exponent is missing)"
    numbers = (f"{difference.difference:+.2f} [{difference.low:+.2f}, {difference.high:+.2f}] "
               f"({'paired' if difference.paired else 'unpaired'})")
    if difference.low > 0:
        return f"steeper by {numbers}"
    if difference.high < 0:
        return f"shallower by {numbers}"
    return f"no difference resolved: {numbers}"
