"""Decay-law fits of influence profiles, in log space, with model ranking and a bootstrap.

The measured profile is the median diagonal-normalized sensitivity ``Ĝ(r)`` at a
set of token distances ``r`` (dimensionless, in tokens; ``Ĝ`` is a ratio of
gradient norms, hence also dimensionless). One module per idea:

:mod:`~green_profiles.analysis.fits.laws`
    The three decay laws (``power``, ``power_floor``, ``exp_floor``), their
    parameters and bounds, and :func:`model_curve`.
:mod:`~green_profiles.analysis.fits.fitting`
    Least squares on ``log y``, ranked by log-RMSE (:func:`fit_decay_models`,
    :class:`FitTable`, :class:`FitResult` with its quality flags ``at_bound``,
    ``flat``, ``usable``) and :func:`rmse_gap`, exponential minus power law, both
    with floor.
:mod:`~green_profiles.analysis.fits.resampling`
    Whole groups of rows (documents, windows) resampled into per-distance profiles.
:mod:`~green_profiles.analysis.fits.batched`
    All replicates' fits at once (a vectorized Levenberg–Marquardt).
:mod:`~green_profiles.analysis.fits.intervals`
    Percentile, expanded-percentile and BCa intervals from replicate values.
:mod:`~green_profiles.analysis.fits.calibration`
    The calibrated checks of a verdict: each law's null simulation, goodness of
    fit, and held-out distances.
:mod:`~green_profiles.analysis.fits.bootstrap`
    Resampling whole windows (or documents) for intervals of ``p``
    and of the gap (:func:`bootstrap_fits`; :func:`fit_replicates` for profiles
    resampled elsewhere), and the :class:`Verdict` they support (:func:`verdict`).
:mod:`~green_profiles.analysis.fits.range_scan`
    How ``p`` moves with the fitted range (:func:`fit_range_scan`).
"""

from green_profiles.analysis.fits.bootstrap import (
    N_BOOT,
    NO_DECAY,
    BootstrapResult,
    PairedDifference,
    Verdict,
    bootstrap_fits,
    fit_replicates,
    paired_difference,
    verdict,
)
from green_profiles.analysis.fits.fitting import FLAT_LOG_SPREAD, FitResult, FitTable, fit_decay_models, rmse_gap
from green_profiles.analysis.fits.laws import (
    MODEL_FORMULAS,
    MODEL_NAMES,
    P_BOUNDS,
    PAPER_P_RANGE,
    POWER_MODELS,
    model_curve,
)
from green_profiles.analysis.fits.range_scan import fit_range_scan

__all__ = [
    "FLAT_LOG_SPREAD",
    "MODEL_FORMULAS",
    "NO_DECAY",
    "N_BOOT",
    "MODEL_NAMES",
    "PAPER_P_RANGE",
    "POWER_MODELS",
    "P_BOUNDS",
    "BootstrapResult",
    "FitResult",
    "FitTable",
    "PairedDifference",
    "Verdict",
    "bootstrap_fits",
    "fit_decay_models",
    "fit_range_scan",
    "fit_replicates",
    "model_curve",
    "paired_difference",
    "rmse_gap",
    "verdict",
]
