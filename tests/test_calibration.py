"""The null simulations (analysis/fits/calibration.py) and the verdict rule that reads them; the rule's error
rates over noise models and truths are benchmarks/error_rates.py's, read by tests/test_error_rates.py."""

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


# Under its own truth a law's p-values are spread over (0, 1), so at any one seed they can fall below the level,
# as they should a few percent of the time; these seeds sit far from it.
def test_a_power_law_rejects_the_exponential_and_not_itself():
    rows, group = documents(power, seed=4)
    checks = calibrate(R, rows, group, n_sim=200, seed=0)
    assert checks.p_exponential < 0.01
    assert checks.p_power > 0.05


def test_an_exponential_rejects_the_power_law_and_not_itself():
    rows, group = documents(exponential, seed=2)
    checks = calibrate(R, rows, group, n_sim=200, seed=0)
    assert checks.p_power < 0.01
    assert checks.p_exponential > 0.05


def test_the_same_seed_gives_the_same_checks_and_another_seed_other_simulations():
    rows, group = documents(power, seed=3)
    first, again = (calibrate(R, rows, group, n_sim=300, seed=4) for _ in range(2))
    assert first == again
    other = calibrate(R, rows, group, n_sim=300, seed=5)
    assert other.gap == first.gap  # the observed gap does not depend on the seed
    assert (other.p_exponential, other.p_power) != (first.p_exponential, first.p_power)


@pytest.fixture(scope="module")
def power_result():
    rows, group = documents(power, seed=6)
    return bootstrap_fits(R, rows, n_boot=100, seed=0, group=group, group_name="document", n_sim=100)


def _with(result, **changes):
    checks = dataclasses.replace(result.calibration, **changes)
    return verdict(dataclasses.replace(result, calibration=checks))


def test_the_verdict_reads_the_null_simulations_at_half_alpha(power_result):
    call = verdict(power_result)
    assert call.winner == "power law" and call.calibration is power_result.calibration
    assert call.level == 0.025 and "against exp+floor" in str(call) and "(descriptive)" in str(call)
    # Each branch of the rule, on the same bootstrap: a law is rejected below α/2 = 0.025, not below 0.05.
    assert _with(power_result, p_exponential=0.01, p_power=0.5).winner == "power law"
    assert _with(power_result, p_exponential=0.5, p_power=0.01).winner == "exponential"
    both = _with(power_result, p_exponential=0.01, p_power=0.01)
    assert both.winner == "neither" and both.note == "both laws rejected at 0.025"
    none = _with(power_result, p_exponential=0.03, p_power=0.5)  # below 0.05, not below 0.025: the old rule's call
    assert none.winner == "undecided" and none.note == "neither law rejected at 0.025"


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


def test_too_few_simulations_to_reach_the_level_leave_the_decision_to_the_gap_interval(power_result):
    few = _with(power_result, n_sim=10, p_exponential=1 / 11, p_power=1.0)
    assert few.winner == "power law"  # the gap interval lies above zero
    assert few.note.startswith("10 simulations cannot give a p-value below 0.025: the gap's interval decided")
    thirty_nine = _with(power_result, n_sim=39, p_exponential=1 / 40, p_power=1.0)
    assert thirty_nine.winner == "power law" and "39 simulations cannot" in thirty_nine.note  # 1/40 is not below
    enough = _with(power_result, n_sim=40, p_exponential=0.025, p_power=1.0)
    assert enough.winner == "undecided" and enough.note == "neither law rejected at 0.025"  # 1/41 could be


def test_the_decay_trend_reads_every_distance_where_the_endpoints_read_two():
    # A profile that drops 0.3 nats between r = 1 and r = 384 with its endpoints' noise added on top: the trend
    # over all distances is resolved where the endpoints' drop is not.
    rng = np.random.default_rng(0)
    drop = 0.3 * (R + 1.0) ** -(0.3 / np.log(385.0 / 2.0))
    rows = drop[None, :] * np.exp(rng.normal(0.0, 1.0, (64, R.size)))
    rows[:, 0] = 1.0
    result = bootstrap_fits(R, rows, n_boot=400, seed=0, group=np.repeat(np.arange(32), 2), n_sim=0)
    low, high = result.intervals["trend"]
    assert low > 0
    flat_rows = np.full(R.size, 0.3)[None, :] * np.exp(rng.normal(0.0, 1.0, (64, R.size)))
    flat_rows[:, 0] = 1.0
    flat = verdict(bootstrap_fits(R, flat_rows, n_boot=400, seed=0, group=np.repeat(np.arange(32), 2), n_sim=0))
    assert flat.winner == "flat" and flat.trend_low <= 0 <= flat.trend_high


def test_with_plenty_of_data_a_clean_power_law_with_floor_is_called_a_power_law():
    """1,024 documents x 16 rows (the paper's 16,384), i.i.d. log-normal noise around c + A (r+1)^-0.9: the old
    rule (each law's two tests combined by "or" at 0.05) said "neither" in 2 of 6 such runs."""
    from green_profiles.analysis.synthetic import synthetic_run

    calls = []
    for seed in range(6):
        run = synthetic_run("power_floor", "iid", 1024, per_document=16, seed=seed)
        call = verdict(bootstrap_fits(run.distances, run.rows, n_boot=200, seed=seed, group=run.group, n_sim=200))
        calls.append(call.winner)
        assert call.p == pytest.approx(0.9, abs=0.02)
    assert calls.count("power law") >= 5, calls
