"""The batched fitter of the bootstrap replicates (:mod:`green_profiles.analysis.fits.batched`) against lmfit.

The criterion, for every profile and law: the batched optimum is lmfit's (parameters within 1e-5
relative) or a lower objective. Objectives are compared with a relative slack of 1e-6: both solvers
stop on a relative change of the objective, so two optima of one valley differ in the last digits.
Where both optima are the same and the fit is well conditioned, the flags (flat, shape parameter at
a bound, usable) must agree too. On nearly flat profiles with 20% noise per point, where the floor
laws have several local optima, the batched multi-start can land in a worse one than lmfit's
(``benchmarks/bench_bootstrap.py`` counts them, part 3); such profiles are not in these sets.
"""

from __future__ import annotations

import numpy as np
import pytest

from green_profiles.analysis.fits import bootstrap_fits, fit_decay_models
from green_profiles.analysis.fits.batched import fit_profiles
from green_profiles.analysis.fits.resampling import resampled_profiles
from green_profiles.analysis.fits.laws import FIT_PARAMS, MODEL_NAMES

R = np.array([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536],
             dtype=float)


def synthetic_profiles(seed: int) -> np.ndarray:
    """Profiles of known shape ``[48, len(R)]``: power law with and without floor, exponential with floor,
    a step that drives p to its upper bound, constant (flat) ones, at noise 0.01 to 0.2 (0.05 on flat
    ones: see the module docstring); a few values missing."""
    rng = np.random.default_rng(seed)
    shapes = [
        lambda r: 0.02 + 0.9 * (r + 1) ** -0.85,
        lambda r: 0.9 * (r + 1) ** -1.2,  # no floor: the floor goes to its lower bound
        lambda r: 0.05 + 0.9 * np.exp(-r / 30),
        lambda r: 0.1 + 0.9 * np.exp(-r / 3),
        lambda r: np.where(r < 1.5, 1.0, 0.3),  # a step at the first distance: p at its bound of 10
        lambda r: np.full_like(r, 0.3),  # flat
    ]
    profiles = []
    for i in range(48):
        shape = shapes[i % len(shapes)]
        sigma = 0.05 if shape is shapes[-1] else (0.01, 0.05, 0.2)[i % 3]
        profiles.append(shape(R) * np.exp(rng.normal(0.0, sigma, R.size)))
    profiles = np.array(profiles)
    profiles[5, 3] = np.nan
    profiles[11, -1] = 0.0  # not valid: left out of that profile's fit
    return profiles


def assert_same_optimum_or_lower(r: np.ndarray, profiles: np.ndarray, weights: np.ndarray | None = None) -> int:
    """Fit each profile with lmfit and all at once; assert the criterion; return how many were compared."""
    batched = fit_profiles(r, profiles, weights)
    for b, profile in enumerate(profiles):
        table = fit_decay_models(r, profile, weights)
        for name in MODEL_NAMES:
            reference, fit = table.get(name), batched[name]
            assert fit.success[b] == reference.success, (b, name)
            if not reference.success:
                continue
            assert fit.n_points[b] == reference.n_points
            values = fit.values[b]
            expected = np.array([reference.params[key] for key in FIT_PARAMS[name]])
            same = np.allclose(values, expected, rtol=1e-5, atol=1e-5)
            lower = fit.rss[b] <= reference.rss * (1 + 1e-6) + 1e-14
            assert same or lower, (f"profile {b}, {name}: batched {values} rss {fit.rss[b]:.10g}, "
                                   f"lmfit {expected} rss {reference.rss:.10g}")
            if same and reference.usable and not reference.at_bound:
                assert fit.usable[b] and not fit.flat[b] and not fit.shape_at_bound[b], (b, name)
                assert fit.log_spread[b] == pytest.approx(reference.log_spread, rel=1e-4)
            if fit.rss[b] <= reference.rss * (1 + 1e-6) and reference.shape_at_bound and same:
                assert fit.shape_at_bound[b], (b, name)
    return len(profiles)


@pytest.mark.parametrize("seed", [0, 1])
def test_synthetic_profiles_flat_noisy_and_at_a_bound(seed):
    assert assert_same_optimum_or_lower(R, synthetic_profiles(seed)) == 48


def test_weights_and_missing_values_as_lmfit_sees_them():
    weights = np.linspace(1.0, 3.0, R.size)
    assert_same_optimum_or_lower(R, synthetic_profiles(2)[:24], weights)


def test_bootstrap_replicates_of_stored_runs(tiny_store):
    """Real measured rows (the session's tiny runs): the replicate profiles a bootstrap fits."""
    for name in ("plain", "shuffled"):
        run = tiny_store.run(name)
        rows = run.normalized("pred")
        _, labels = run.resampling_unit("window")
        _, replicates, _ = resampled_profiles(rows, labels, n_boot=16, seed=0)
        assert assert_same_optimum_or_lower(run.distances, replicates) == 16


def test_bootstrap_intervals_as_with_a_loop_of_lmfit_fits():
    """The bootstrap's statistics from the batched fits equal those of lmfit fits of the same replicates."""
    rng = np.random.default_rng(4)
    r = np.concatenate([[0.0], R])
    base = 0.02 + 0.9 * (r + 1) ** -0.85
    rows = base * np.exp(np.repeat(rng.normal(0, 0.3, 40), 8)[:, None] + rng.normal(0, 0.5, (320, r.size)))
    rows[:, 0] = 1.0
    group = np.repeat(np.arange(40), 8)
    result = bootstrap_fits(r, rows, n_boot=30, seed=5, group=group)
    _, profiles, _ = resampled_profiles(rows, group, n_boot=30, seed=5)
    for b, profile in enumerate(profiles):
        table = fit_decay_models(r, profile, start_params={f.name: f.params for f in result.point})
        assert result.replicates["p_power_floor"][b] == pytest.approx(table.get("power_floor").params["p"], rel=1e-5)
        assert result.replicates["rmse_gap"][b] == pytest.approx(table.rmse_gap(), rel=1e-5, abs=1e-9)


def test_too_few_points_fail_and_bad_input_is_refused():
    profiles = np.full((2, R.size), np.nan)
    profiles[0, :3] = [1.0, 0.5, 0.3]  # 3 points: enough for power (2 parameters), not for the floor laws
    fits = fit_profiles(R, profiles)
    assert fits["power"].success.tolist() == [True, False]
    assert not fits["power_floor"].success.any() and not fits["exp_floor"].success.any()
    assert np.isinf(fits["exp_floor"].rmse).all()
    with pytest.raises(ValueError, match="profiles must be"):
        fit_profiles(R, np.ones(R.size))
    with pytest.raises(ValueError, match="unknown model"):
        fit_profiles(R, np.ones((1, R.size)), models=["cubic"])
