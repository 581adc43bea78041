"""Where an exponent stands: against the paper's range of ``p``, and against another run's exponent
(paired over the same documents where the two runs share them, by their intervals where only records are left).

Agreement with the paper's band is an equivalence test (:func:`~green_profiles.analysis.decisions.band_test`);
a difference read among many is decided by its Holm-adjusted bootstrap p-value (:func:`compare_many`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from green_profiles.analysis.decisions import band_test, difference_pvalue, holm, holm_text
from green_profiles.analysis.fits import NO_DECAY, PAPER_P_RANGE, BootstrapResult, paired_difference, verdict

K = TypeVar("K", bound=Hashable)


def compare_with_paper(result: BootstrapResult, band: tuple[float, float] = PAPER_P_RANGE,
                       key: str = "p_power_floor") -> str:
    """Where a run's exponent stands against the paper's band of ``p``, as a test (a sentence for a page).

    Args:
        result: the run's bootstrap (its ``key`` replicates, ``[n_boot]``, and full-data estimate).
        band: ``(low, high)`` of the exponent (dimensionless); the paper's 0.7–0.9 by default.
        key: the statistic (``p`` of the power law with floor by default).

    Returns:
        The :class:`~green_profiles.analysis.decisions.BandTest` in words: "inside the paper's band
        (equivalence test: 90% interval [0.74, 0.86] inside 0.7–0.9)" when the 90% interval lies inside
        the band; "outside the paper's band (95% interval [0.95, 1.30] above it)" when the 95% interval
        lies above or below it; "inconclusive: 90% interval [...] is not inside 0.7–0.9 (...)" otherwise;
        "no estimate" when the fit failed, and "no exponent (flat — no decay)" (or rising) for a profile
        whose verdict says it does not decay. A point estimate inside the band, or an interval that
        reaches into it, is not agreement.
    """
    winner = verdict(result).winner
    if winner in NO_DECAY:
        return f"no exponent ({winner} — no decay)"
    return str(band_test(result, band, key))


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


def compare_runs(first: BootstrapResult, second: BootstrapResult, key: str = "p_power_floor", *,
                 adjusted: float | None = None, over: str = "") -> str:
    """How ``key`` (default: ``p`` of the power law with floor) of one bootstrap stands against another's.

    From :func:`~green_profiles.analysis.fits.paired_difference`: "steeper by +0.12 [+0.05, +0.19] (paired)"
    or "shallower by ..." when the interval of the difference excludes zero, "no difference resolved:
    +0.02 [-0.04, +0.08] (paired)" when it does not ("unpaired" where the runs resample different
    text), "no comparison" when either has no estimate.

    Read as one of a family of comparisons, pass its Holm-adjusted p-value (``adjusted``, as
    :func:`compare_many` computes it) and the family (``over``, e.g. ``"10 block inputs"``): the difference
    is then resolved when the adjusted p-value is below α = ``1 − confidence``, whatever its own interval
    says: "steeper by +0.12 [+0.05, +0.19] (paired), Holm-adjusted p = 0.012 over 10 block inputs", or
    "no difference resolved: +0.10 [+0.01, +0.20] (paired), Holm-adjusted p = 0.4 over 10 block inputs".
    """
    difference = paired_difference(first, second, key)
    if not (math.isfinite(difference.difference) and math.isfinite(difference.low)):
        return "no comparison (an exponent is missing)"
    numbers = (f"{difference.difference:+.2f} [{difference.low:+.2f}, {difference.high:+.2f}] "
               f"({'paired' if difference.paired else 'unpaired'})")
    tested = numbers if adjusted is None else f"{numbers}, {holm_text(adjusted, over)}"
    if difference.left_out > difference.max_left_out:
        return (f"no difference resolved: {tested}; {100 * difference.left_out:.1f}% of the replicates left out, "
                f"more than {100 * difference.max_left_out:g}%")
    resolved = difference.resolved if adjusted is None else difference.resolved_by(adjusted)
    if resolved and difference.difference != 0.0:
        return f"{'steeper' if difference.difference > 0 else 'shallower'} by {tested}"
    return f"no difference resolved: {tested}"


@dataclass(frozen=True)
class RunComparison:
    """One comparison of a family read with Holm's correction (:func:`compare_many`).

    Attributes:
        text: :func:`compare_runs` with the adjusted p-value ("steeper by ..., Holm-adjusted p = ... over ...").
        pvalue: the comparison's own bootstrap p-value of a zero difference (NaN: no comparison).
        adjusted: its Holm-adjusted p-value over the family.
        n_tests: the comparisons in the family that have a p-value.
    """

    text: str
    pvalue: float
    adjusted: float
    n_tests: int

    def __str__(self) -> str:
        return self.text


def compare_many(pairs: Mapping[K, tuple[BootstrapResult, BootstrapResult]], what: str,
                 key: str = "p_power_floor") -> dict[K, RunComparison]:
    """A family of comparisons ``first − second`` of ``key``, each with its bootstrap p-value, Holm-adjusted
    over the family so that the chance of any zero difference read as resolved is at most α.

    Args:
        pairs: label -> ``(first, second)`` bootstraps (e.g. each block input against the embeddings).
        what: what the family's members are, plural (``"block inputs"``, ``"checkpoints"``): the text says
            "Holm-adjusted p = ... over N {what}".
        key: the statistic compared.

    Returns:
        label -> :class:`RunComparison`, in the order of ``pairs``.
    """
    labels = list(pairs)
    raw = np.array([difference_pvalue(first, second, key) for first, second in pairs.values()], dtype=np.float64)
    adjusted = holm(raw)
    count = int(np.isfinite(raw).sum())
    what = what if count != 1 else what.removesuffix("s")  # "1 block input"
    return {label: RunComparison(text=compare_runs(*pairs[label], key, adjusted=float(adjusted[index]),
                                                   over=f"{count} {what}"),
                                 pvalue=float(raw[index]), adjusted=float(adjusted[index]), n_tests=count)
            for index, label in enumerate(labels)}
