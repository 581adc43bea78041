"""The synthetic runs the error rates are measured on (green_profiles.analysis.synthetic): each truth is what
its name says, every noise model leaves the truth as the population's median profile, and a draw repeats."""

from __future__ import annotations

import numpy as np
import pytest

from green_profiles.analysis.fits import fit_decay_models
from green_profiles.analysis.synthetic import (
    DEFAULT_DISTANCES,
    NOISE_MODELS,
    TRUTHS,
    BorrowedNoise,
    synthetic_run,
    truth_curve,
)

R = DEFAULT_DISTANCES


def test_each_truth_is_its_law():
    power = fit_decay_models(R, truth_curve("power_floor")).get("power_floor")
    assert power.params["p"] == pytest.approx(0.9, abs=1e-4) and power.params["c"] == pytest.approx(0.01, rel=1e-3)
    exponential = fit_decay_models(R, truth_curve("exp_floor"))
    assert exponential.get("exp_floor").rmse < 1e-6 < exponential.get("power_floor").rmse
    pure = fit_decay_models(R, truth_curve("pure_power")).get("power")
    assert pure.params["p"] == pytest.approx(0.8, abs=1e-6)
    small = truth_curve("small_drop")
    assert np.log(small[R == 1][0] / small[-1]) == pytest.approx(0.3, abs=1e-9)
    for name in ("stretched", "broken"):  # neither law fits them to within 2%
        table = fit_decay_models(R, truth_curve(name))
        assert min(table.get("power_floor").rmse, table.get("exp_floor").rmse) > 0.02, name
    assert all(truth_curve(name)[0] == 1.0 for name in TRUTHS)


@pytest.mark.parametrize("noise", [n for n in NOISE_MODELS if n != "resampled"])
def test_the_noise_leaves_the_truth_as_the_median_profile(noise):
    run = synthetic_run("power_floor", noise, 4000, seed=1)
    median = np.median(run.rows, axis=0)
    np.testing.assert_allclose(np.log(median[1:] / truth_curve("power_floor")[1:]), 0.0, atol=0.06)
    assert run.rows.shape == (8000, R.size) and np.all(run.rows[:, 0] == 1.0)
    assert np.array_equal(run.group, np.repeat(np.arange(4000), 2))


def test_a_draw_repeats_with_its_seed_and_borrowed_noise_needs_a_run():
    first, again = (synthetic_run("exp_floor", "documents", 16, seed=[3, 16]) for _ in range(2))
    np.testing.assert_array_equal(first.rows, again.rows)
    with pytest.raises(ValueError, match="stored run"):
        synthetic_run("exp_floor", "resampled", 16)
    rows = synthetic_run("power_floor", "iid", 12, seed=2)
    borrowed = BorrowedNoise(rows.distances, rows.rows, rows.group)
    drawn = synthetic_run("exp_floor", "resampled", 5, per_document=2, seed=0, borrowed=borrowed)
    assert drawn.rows.shape == (10, R.size) and np.all(np.isfinite(drawn.rows))
