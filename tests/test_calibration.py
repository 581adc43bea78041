"""The calibrated checks (analysis/fits/calibration.py) and the verdict rule that reads them."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from green_profiles.analysis.fits import bootstrap_fits, verdict
from green_profiles.analysis.fits.batched import fit_profiles
from green_profiles.analysis.fits.calibration import (
    Calibration,
    calibrate,
    holdout_errors,
    null_scale,
    without_fitted_directions,
)
from green_profiles.analysis.fits.laws import FIT_PARAMS, log_model
from green_profiles.analysis.fits.resampling import resampled_profiles

# Distances like the default book's: r = 0, then roughly log-spaced to 511 tokens.
R = np.array([0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 511], dtype=float)


def power(r: np.ndarray) -> np.ndarray:
    return 0.01 + 0.9 * (r + 1.0) ** -0.9


def exponential(r: np.ndarray) -> np.ndarray:
    return 0.02 + 0.6 * np.exp(-r / 20.0)


def documents(law, seed: int, n_documents: int = 24, per_document: int = 4, sigma: float = 0.6):
    """Rows around ``law`` with a per-document level and per-entry log-normal noise (median = the law)."""
    rng = np.random.default_rng(seed)
    level = np.repeat(rng.normal(0.0, 0.3, n_documents), per_document)
    rows = law(R)[None, :] * np.exp(level[:, None] + rng.normal(0.0, sigma, (level.size, R.size)))
    rows[:, 0] = 1.0
    return rows, np.repeat(np.arange(n_documents), per_document)


@pytest.mark.parametrize("statistic", ["median", "mean", "geometric", "trimmed"])
def test_scaled_resamples_are_the_resamples_of_rows_whose_profile_is_the_curve(statistic):
    rows, group = documents(power, seed=0, per_document=3)  # 72 rows: an even count, the median averages two
    rows[3, 5] = np.nan  # missing stays missing
    rows[7, 6] = 0.0  # an underflowed norm stays zero, ranked lowest
    profile, replicates, _ = resampled_profiles(rows, group, n_boot=30, seed=1, statistic=statistic)
    curve = exponential(R)
    scale = null_scale(R, profile, curve)
    assert scale[0] == 1.0  # r = 0 untouched
    # What calibrate simulates (the original resamples, scaled) is what resampling the rescaled rows gives,
    # and the rescaled rows' own profile is the curve.
    new_profile, rescaled_replicates, _ = resampled_profiles(rows * scale, group, n_boot=30, seed=1,
                                                             statistic=statistic)
    np.testing.assert_allclose(new_profile[1:], curve[1:], rtol=1e-12)
    np.testing.assert_allclose(rescaled_replicates, replicates * scale, rtol=1e-12)


# Under its own truth a law's p-values are spread evenly over (0, 1) (seeds 1-5 of documents(): 0.03-0.63), so
# at any one seed they can fall below 0.05, as they should 5% of the time; these seeds sit far from it. The rates
# over many datasets are benchmarks/simulate_inference.py's to print, not a unit test's.
def test_a_power_law_rejects_the_exponential_and_not_itself():
    rows, group = documents(power, seed=4)
    checks = calibrate(R, rows, group, n_sim=200, seed=0)
    assert checks.p_exponential < 0.01 and checks.fit_p["exp_floor"] < 0.05
    assert checks.p_power > 0.05 and checks.fit_p["power_floor"] > 0.05
    assert checks.power_predicts_better and checks.holdout_power_better > 0.5


def test_an_exponential_rejects_the_power_law_and_not_itself():
    rows, group = documents(exponential, seed=2)  # p-values at seeds 1-5: 0.26-0.95
    checks = calibrate(R, rows, group, n_sim=200, seed=0)
    assert checks.p_power < 0.01
    assert checks.p_exponential > 0.05 and checks.fit_p["exp_floor"] > 0.05
    assert checks.power_predicts_better is False


def test_the_same_seed_gives_the_same_checks_and_another_seed_other_simulations():
    rows, group = documents(power, seed=3)
    first, again = (calibrate(R, rows, group, n_sim=50, seed=4) for _ in range(2))
    assert first == again
    other = calibrate(R, rows, group, n_sim=50, seed=5)
    assert other.gap == first.gap  # the observed gap does not depend on the seed
    assert other.holdout != first.holdout


def test_too_few_groups_give_no_holdout_check():
    rows, group = documents(power, seed=4, n_documents=3)
    errors, better, start = holdout_errors(R, rows, group)
    assert all(math.isnan(value) for value in errors.values()) and math.isnan(better) and math.isnan(start)
    assert calibrate(R, rows, group, n_sim=20).power_predicts_better is None


def test_the_holdout_predicts_the_last_third_of_the_distances():
    rows, group = documents(power, seed=5)
    _, _, start = holdout_errors(R, rows, group, n_splits=2)
    fitted = R[R >= 1]
    assert start == fitted[math.ceil(2 * fitted.size / 3)]


@pytest.fixture(scope="module")
def power_result():
    rows, group = documents(power, seed=6)
    return bootstrap_fits(R, rows, n_boot=100, seed=0, group=group, group_name="document", n_sim=100)


def _with(result, **changes):
    checks = dataclasses.replace(result.calibration, **changes)
    return verdict(dataclasses.replace(result, calibration=checks))


def test_the_verdict_reads_the_calibrated_checks(power_result):
    call = verdict(power_result)
    assert call.winner == "power law" and call.calibration is power_result.calibration
    assert "p-value against exp+floor" in str(call)
    fit_ok = {"power_floor": 0.5, "exp_floor": 0.5}
    holdout = {"holdout_power_better": 0.8}
    # Each branch of the rule, on the same bootstrap.
    assert _with(power_result, p_exponential=0.01, p_power=0.5, fit_p=fit_ok, **holdout).winner == "power law"
    assert _with(power_result, p_exponential=0.5, p_power=0.01, fit_p=fit_ok,
                 holdout_power_better=0.2).winner == "exponential"
    assert _with(power_result, p_exponential=0.01, p_power=0.01, fit_p=fit_ok, **holdout).winner == "neither"
    # A law that fits worse than its own simulations is rejected too.
    misfit = _with(power_result, p_exponential=0.01, p_power=0.5, fit_p={"power_floor": 0.01, "exp_floor": 0.5},
                   **holdout)
    assert misfit.winner == "neither" and misfit.note == "both laws rejected at 0.05"
    none = _with(power_result, p_exponential=0.2, p_power=0.5, fit_p=fit_ok, **holdout)
    assert none.winner == "undecided" and none.note == "neither law rejected at 0.05"
    disagree = _with(power_result, p_exponential=0.01, p_power=0.5, fit_p=fit_ok,
                     holdout_power_better=0.3)
    assert disagree.winner == "undecided" and disagree.note == "the exponential predicts the held-out distances better"
    # No held-out check (too few groups): the two null simulations decide.
    alone = _with(power_result, p_exponential=0.01, p_power=0.5, fit_p=fit_ok,
                  holdout_power_better=math.nan)
    assert alone.winner == "power law"


def test_an_exponential_profile_is_called_exponential():
    rows, group = documents(exponential, seed=7)
    call = verdict(bootstrap_fits(R, rows, n_boot=100, seed=0, group=group, n_sim=100))
    assert call.winner == "exponential"


def test_calibration_is_recorded_in_the_result_and_skipped_with_n_sim_0(power_result):
    assert isinstance(power_result.calibration, Calibration) and power_result.calibration.n_sim == 100
    rows, group = documents(power, seed=6)
    assert bootstrap_fits(R, rows, n_boot=20, seed=0, group=group, n_sim=0).calibration is None


def test_simulated_profiles_lose_only_what_the_laws_parameters_could_absorb():
    fit = fit_profiles(R, power(R)[None, :], models=("power_floor",))["power_floor"]
    # A small change of the law's own parameters only is removed: the fitted curve comes back (to first order).
    moved = dict(zip(FIT_PARAMS["power_floor"], fit.values[0] + np.array([0.05, -0.03, 0.02])))
    along = np.exp(log_model("power_floor", moved, R))[None, :]
    np.testing.assert_allclose(without_fitted_directions(fit, R, along)[0, 1:], power(R)[1:], rtol=2e-3)
    # Noise keeps the part the law cannot absorb: refitting the projected profile gives the fit back.
    noisy = power(R)[None, :] * np.exp(np.random.default_rng(8).normal(0, 0.2, (1, R.size)))
    projected = without_fitted_directions(fit, R, noisy)
    refit = fit_profiles(R, projected, models=("power_floor",))["power_floor"]
    np.testing.assert_allclose(refit.values[0], fit.values[0], atol=2e-3)
    assert not np.allclose(projected, power(R)[None, :], rtol=1e-3)


def test_too_few_simulations_to_reach_alpha_leave_the_decision_to_the_gap_interval(power_result):
    few = _with(power_result, n_sim=10, p_exponential=1 / 11, p_power=1.0, fit_p={"power_floor": 0.5, "exp_floor": 0.5})
    assert few.winner == "power law"  # the gap interval lies above zero
    assert few.note == "10 simulations cannot give a p-value below 0.05: the gap's interval decided"
    nineteen = _with(power_result, n_sim=19, p_exponential=1 / 20, p_power=1.0,
                     fit_p={"power_floor": 0.5, "exp_floor": 0.5})
    assert nineteen.winner == "power law" and "19 simulations cannot" in nineteen.note  # 1/20 is not below 0.05
    enough = _with(power_result, n_sim=20, p_exponential=0.05, p_power=1.0, fit_p={"power_floor": 0.5, "exp_floor": 0.5})
    assert enough.winner == "undecided" and enough.note == "neither law rejected at 0.05"  # 1/21 could be
