"""Decay-law fits: parameter recovery, ranking, input cleaning, information criteria, quality flags,
bootstrap and verdict."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest

import green_profiles.analysis.fits.bootstrap as fits_bootstrap
import green_profiles.analysis.fits.fitting as fits_fitting
from green_profiles.analysis.fits import (
    FLAT_LOG_SPREAD,
    MODEL_NAMES,
    FitResult,
    FitTable,
    Verdict,
    bootstrap_fits,
    fit_decay_models,
    fit_range_scan,
    model_curve,
    paired_difference,
    rmse_gap,
    verdict,
)
from green_profiles.analysis.fits.resampling import ColumnAggregator
from green_profiles.kernel.counts import measured_mask, valid_mask

# The paper's Pythia distance grid without r = 0.
R = np.array([1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512,
              768, 1024, 1280, 1536], dtype=float)
GAMMA, BETA, P = 0.02, 0.9, 0.8


def power_floor(r: np.ndarray) -> np.ndarray:
    return GAMMA + BETA * (r + 1.0) ** (-P)


def test_clean_power_floor_recovered_and_ranked_above_exponential() -> None:
    table = fit_decay_models(R, power_floor(R))
    fit = table.get("power_floor")
    assert fit is not None and fit.success
    assert abs(fit.params["p"] - P) < 0.02
    assert fit.params["c"] == pytest.approx(GAMMA, rel=1e-3)
    assert fit.params["A"] == pytest.approx(BETA, rel=1e-3)
    assert table.best is fit
    assert table.rank("power_floor") < table.rank("exp_floor")
    assert table.rmse_gap() > 0.1  # the exponential misses by far more than rounding
    assert [f.rmse for f in table] == sorted(f.rmse for f in table)
    assert set(table.names) == set(MODEL_NAMES)


def test_exponential_with_floor_ranked_first() -> None:
    y = 0.05 + 0.8 * np.exp(-R / 30.0)
    table = fit_decay_models(R, y)
    assert table.names[0] == "exp_floor"
    fit = table.best
    assert fit is not None
    assert fit.params["xi"] == pytest.approx(30.0, rel=1e-3)
    assert fit.params["c"] == pytest.approx(0.05, rel=1e-3)
    assert table.rmse_gap() < 0


def test_multiplicative_noise_keeps_p_and_verdict() -> None:
    # Log-normal noise sigma = 0.05 per point. Over 300 seeds the spread of the fitted p
    # was 0.017 and the fit's own standard error 0.017 (median), so 0.07 is a 4-sigma
    # tolerance; the verdict (power_floor first, exp_floor behind) held in all 300.
    rng = np.random.default_rng(12345)
    table = fit_decay_models(R, power_floor(R) * np.exp(rng.normal(0.0, 0.05, R.size)))
    fit = table.get("power_floor")
    assert fit is not None and fit.success
    assert abs(fit.params["p"] - P) < 0.07
    assert abs(fit.params["p"] - P) < 4 * fit.stderr["p"]
    assert table.names[0] == "power_floor"
    assert table.rank("exp_floor") > table.rank("power_floor")


def test_standard_error_of_p_matches_scatter_over_noise_seeds() -> None:
    # The reported stderr is meant as a 1-sigma error (lmfit scales the covariance by the
    # reduced chi-square, the noise level being unknown): check it against the spread of p.
    p_fit, p_err = [], []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        fit = fit_decay_models(R, power_floor(R) * np.exp(rng.normal(0.0, 0.05, R.size)),
                               models=("power_floor",))[0]
        p_fit.append(fit.params["p"])
        p_err.append(fit.stderr["p"])
    ratio = np.std(p_fit) / np.median(p_err)
    assert 0.6 < ratio < 1.6


def test_derived_standard_errors_match_a_direct_linear_fit() -> None:
    # The linearized covariance transforms with the Jacobian of a reparameterization, so
    # fitting c and A directly (same optimum) must give the delta-method errors of exp(logc).
    import lmfit

    rng = np.random.default_rng(21)
    y = power_floor(R) * np.exp(rng.normal(0.0, 0.05, R.size))
    fit = fit_decay_models(R, y, models=("power_floor",))[0]

    def resid(params: lmfit.Parameters) -> np.ndarray:
        v = params.valuesdict()
        return np.log(v["c"] + v["A"] * (R + 1.0) ** (-v["p"])) - np.log(y)

    direct = lmfit.Parameters()
    for key in ("c", "A", "p"):
        direct.add(key, value=fit.params[key])
    out = lmfit.minimize(resid, direct)
    for key in ("c", "A", "p"):
        assert out.params[key].value == pytest.approx(fit.params[key], rel=1e-4)
        assert out.params[key].stderr == pytest.approx(fit.stderr[key], rel=1e-3)


def test_pure_power_law_recovered() -> None:
    y = 0.7 * (R + 1.0) ** (-0.85)
    table = fit_decay_models(R, y)
    fit = table.get("power")
    assert fit is not None and fit.success
    assert fit.params["p"] == pytest.approx(0.85, abs=1e-6)
    assert fit.params["A"] == pytest.approx(0.7, rel=1e-6)
    assert table.best is not None and table.best.name in ("power", "power_floor")
    assert table.rank("exp_floor") == 2


def test_invalid_points_and_r0_are_dropped() -> None:
    y = power_floor(R)
    # r = 0 with the normalized value 1, plus a NaN, a zero, a negative value, an inf and a NaN r.
    r_dirty = np.concatenate([[0.0], R, [2000.0, 2100.0, 2200.0, 2300.0, np.nan]])
    y_dirty = np.concatenate([[1.0], y, [np.nan, 0.0, -0.01, np.inf, 0.5]])
    dirty = fit_decay_models(r_dirty, y_dirty)
    clean = fit_decay_models(R, y)
    for name in MODEL_NAMES:
        assert dirty.get(name).n_points == R.size
        assert dirty.get(name).rmse == pytest.approx(clean.get(name).rmse, rel=1e-6, abs=1e-12)
    assert dirty.get("power_floor").params["p"] == pytest.approx(P, abs=1e-6)
    # Unsorted input is fine too.
    order = np.random.default_rng(0).permutation(R.size)
    assert fit_decay_models(R[order], y[order]).get("power_floor").params["p"] == pytest.approx(P, abs=1e-6)


def test_zero_weight_drops_point_and_equal_weights_change_nothing() -> None:
    y = power_floor(R) * np.exp(np.random.default_rng(3).normal(0.0, 0.05, R.size))
    plain = fit_decay_models(R, y)
    same = fit_decay_models(R, y, weights=np.full(R.size, 7.0))
    for name in MODEL_NAMES:
        assert same.get(name).rmse == pytest.approx(plain.get(name).rmse, rel=1e-6)
    w = np.ones(R.size)
    w[5] = 0.0
    assert fit_decay_models(R, y, weights=w).get("power").n_points == R.size - 1


def test_too_few_points_reported_not_raised() -> None:
    table = fit_decay_models(R[:3], power_floor(R[:3]))
    assert table.get("power").success  # 2 parameters, 3 points: allowed
    for name in ("power_floor", "exp_floor"):
        fit = table.get(name)
        assert not fit.success
        assert fit.rmse == math.inf
        assert "too few points" in fit.message
    # Failures ranked last: the one successful fit first, the two failed ones behind it.
    assert table[0].name == "power"
    assert set(table.names[1:]) == {"power_floor", "exp_floor"}
    assert [f.success for f in table] == [True, False, False]

    empty = fit_decay_models([0.0, 1.0, 2.0], [1.0, np.nan, -1.0])
    assert empty.best is None
    assert all(not f.success and f.n_points == 0 for f in empty)
    assert "failed" in str(empty)


def test_malformed_input_raises() -> None:
    with pytest.raises(ValueError):
        fit_decay_models(R, power_floor(R)[:-1])
    with pytest.raises(ValueError):
        fit_decay_models(R, power_floor(R), models=("stretched_exp",))


def test_aic_bic_match_hand_computation() -> None:
    rng = np.random.default_rng(7)
    y = power_floor(R) * np.exp(rng.normal(0.0, 0.1, R.size))
    table = fit_decay_models(R, y)
    for fit in table:
        resid = np.log(model_curve(fit.name, fit.params, R)) - np.log(y)
        n, k = R.size, fit.n_params
        rss = float(np.sum(resid**2))
        assert fit.rss == pytest.approx(rss, rel=1e-9)
        assert fit.rmse == pytest.approx(math.sqrt(rss / n), rel=1e-9)
        assert fit.aic == pytest.approx(n * math.log(rss / n) + 2 * k, rel=1e-9)
        assert fit.bic == pytest.approx(n * math.log(rss / n) + k * math.log(n), rel=1e-9)
    assert table.get("power").n_params == 2
    assert table.get("power_floor").n_params == 3


def test_model_curve_accepts_linear_or_log_parameters() -> None:
    lin = model_curve("power_floor", {"c": GAMMA, "A": BETA, "p": P}, R)
    log = model_curve("power_floor", {"logc": math.log(GAMMA), "logA": math.log(BETA), "p": P}, R)
    np.testing.assert_allclose(lin, power_floor(R), rtol=1e-12)
    np.testing.assert_allclose(log, lin, rtol=1e-12)
    np.testing.assert_allclose(model_curve("exp_floor", {"c": 0.1, "A": 2.0, "xi": 5.0}, R),
                               0.1 + 2.0 * np.exp(-R / 5.0), rtol=1e-12)
    with pytest.raises(KeyError):
        model_curve("power", {"p": 1.0}, R)


def test_table_views() -> None:
    table = fit_decay_models(R, power_floor(R))
    assert isinstance(table, FitTable)
    frame = table.to_dataframe()
    assert list(frame["model"]) == list(table.names)
    assert frame.loc[0, "p"] == pytest.approx(P)
    text = str(table)
    assert all(name in text for name in MODEL_NAMES)
    assert len(text.splitlines()) == 2 + len(MODEL_NAMES)


# ---------------------------------------------------------------------------- bootstrap

R_BOOT = np.concatenate([[0.0], R])


def noisy_rows(seed: int, n_windows: int = 48, per_window: int = 8, *, profile=power_floor, r=R_BOOT,
               window_sigma: float = 0.3, entry_sigma: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``[n_windows * per_window, len(r)]`` around ``profile`` (default: the power law with floor).

    Each window scales its rows by one log-normal factor (sigma 0.3) and each entry
    has its own log-normal noise (sigma 0.5): both symmetric in log, so the median
    profile of the population is exactly the profile. 5% of entries are missing.
    """
    rng = np.random.default_rng(seed)
    window_factor = np.repeat(rng.normal(0.0, window_sigma, n_windows), per_window)
    noise = rng.normal(0.0, entry_sigma, (n_windows * per_window, r.size))
    rows = profile(r)[None, :] * np.exp(window_factor[:, None] + noise)
    rows[:, 0] = 1.0
    rows[rng.random(rows.shape) < 0.05] = np.nan
    return rows, np.repeat(np.arange(n_windows), per_window)


def test_bootstrap_interval_contains_true_p_and_is_deterministic() -> None:
    # Checked beyond this seed: over 40 data seeds with n_boot=100 the 95% interval for
    # p(power_floor) covered 0.8 in 39 (97.5%), median width 0.047.
    rows, group = noisy_rows(seed=0)
    first = bootstrap_fits(R_BOOT, rows, n_boot=60, seed=11, group=group)
    lo, hi = first.intervals["p_power_floor"]
    assert lo <= P <= hi
    assert hi - lo < 0.15  # informative, not a trivially wide interval
    assert first.power_wins_fraction == 1.0
    assert first.intervals["rmse_gap"][0] > 0
    assert first.replicates["p_power"].shape == (60,)
    assert first.n_groups == 48
    assert all(n == 0 for n in first.n_excluded.values()) and all(n == 0 for n in first.n_failed.values())

    call = verdict(first)
    assert isinstance(call, Verdict)
    assert call.winner == "power law"
    assert call.gap_low > 0
    assert (call.p, call.p_low, call.p_high) == (first.point_estimates["p_power_floor"], lo, hi)
    assert (call.n_boot, call.n_groups, call.unit) == (60, 48, "window")
    assert str(call).startswith("power law: p = 0.")
    assert "(95% window bootstrap, 60 replicates, 48 windows)" in str(call)
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.winner = "exponential"  # type: ignore[misc]

    again = bootstrap_fits(R_BOOT, rows, n_boot=60, seed=11, group=group)
    for key, values in first.replicates.items():
        np.testing.assert_array_equal(values, again.replicates[key])
    assert first.intervals == again.intervals

    other = bootstrap_fits(R_BOOT, rows, n_boot=60, seed=12, group=group)
    assert not np.array_equal(first.replicates["p_power_floor"], other.replicates["p_power_floor"])


def test_bootstrap_resamples_windows_not_rows() -> None:
    # With every row in a single window, each replicate draws that window: all identical.
    rows, _ = noisy_rows(seed=1, n_windows=4, per_window=16)
    one_window = bootstrap_fits(R_BOOT, rows, n_boot=5, seed=0, group=np.zeros(len(rows), int))
    assert np.ptp(one_window.replicates["p_power_floor"]) == 0.0
    per_row = bootstrap_fits(R_BOOT, rows, n_boot=5, seed=0)
    assert np.ptp(per_row.replicates["p_power_floor"]) > 0.0
    assert per_row.n_groups == len(rows)


def _trimmed(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """scipy.stats.trim_mean(·, 0.1) per column over the non-NaN values: the reference for "trimmed"."""
    from scipy.stats import trim_mean

    return np.array([trim_mean(column[~np.isnan(column)], 0.1) if (~np.isnan(column)).any() else np.nan
                     for column in np.moveaxis(values, axis, -1)])


def _geometric(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """exp(mean(log)) per column over the positive values (zeros left out, as the aggregator documents)."""
    return np.exp(np.nanmean(np.log(np.where(values > 0, values, np.nan)), axis=axis))


@pytest.mark.parametrize("statistic", ["median", "mean", "geometric", "trimmed"])
def test_resampled_aggregate_equals_explicit_expansion(statistic: str) -> None:
    rng = np.random.default_rng(5)
    rows = rng.lognormal(size=(37, 6))
    rows[rng.random(rows.shape) < 0.2] = np.nan
    rows[0, 1], rows[1, 2] = 0.0, -3.0  # a zero ranks lowest; a negative value is ignored like NaN
    rows[:, 5] = np.nan  # a distance with no valid value at all
    aggregate = ColumnAggregator(rows, statistic)
    for _ in range(20):
        mult = rng.integers(0, 3, size=rows.shape[0])
        expanded = np.repeat(rows, mult, axis=0)
        expanded = np.where(measured_mask(expanded), expanded, np.nan)
        reduce = {"median": np.nanmedian, "mean": np.nanmean, "geometric": _geometric, "trimmed": _trimmed}[statistic]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the all-NaN column
            expected = reduce(expanded, axis=0)
        np.testing.assert_allclose(aggregate(mult.astype(np.int64)), expected, rtol=1e-12)


# ---------------------------------------------------------------------------- range scan


def test_range_scan_shape_and_stability_on_clean_data() -> None:
    r_min_values, r_max_values = [1, 2, 4, 8, 16], [64, 256, 1536]
    scan = fit_range_scan(R, power_floor(R), r_min_values, r_max_values)
    assert len(scan) == (len(r_min_values) + len(r_max_values)) * 2
    assert {row["scan"] for row in scan} == {"r_min", "r_max"}
    assert {row["model"] for row in scan} == {"power", "power_floor"}
    floor_rows = [row for row in scan if row["model"] == "power_floor"]
    assert all(row["success"] and abs(row["p"] - P) < 0.02 for row in floor_rows)
    assert all(row["usable"] and not row["flat"] and row["at_bound"] == "" for row in floor_rows)
    by_cut = {(row["scan"], row["r_min"], row["r_max"]): row["n_points"] for row in floor_rows}
    assert by_cut[("r_min", 16.0, 1536.0)] == int(np.sum(R >= 16))
    assert by_cut[("r_max", 1.0, 64.0)] == int(np.sum(R <= 64))

    pure = fit_range_scan(R, 0.7 * (R + 1.0) ** (-0.85), r_min_values, r_max_values)
    assert all(abs(row["p"] - 0.85) < 0.02 for row in pure if row["model"] == "power")

    # Without a floor in the model, p drifts with the range on floored data: the scan shows it.
    power_rows = [row["p"] for row in scan if row["model"] == "power" and row["scan"] == "r_max"]
    assert max(power_rows) - min(power_rows) > 0.1


def test_range_scan_defaults_leave_enough_points() -> None:
    scan = fit_range_scan(R, power_floor(R))
    assert all(row["n_points"] >= 6 for row in scan)
    assert len(scan) == 2 * 2 * (R.size - 5)


# ---------------------------------------------------------------------------- like with like


def _result(name: str, rmse: float) -> FitResult:
    k = {"power": 2}.get(name, 3)
    return FitResult(name=name, success=True, params={}, stderr={}, rmse=rmse, aic=0.0, bic=0.0,
                     rss=rmse**2 * 24, n_points=24, n_params=k, message="ok", log_spread=1.0)


def test_rmse_gap_compares_the_two_floor_laws_only() -> None:
    # Pure power beats power_floor here (as a stuck floor fit can): the old gap, exp minus the better of
    # the two power laws, would read +0.15 ("power law"); the like-with-like gap is exp minus power_floor.
    table = FitTable([_result("power", 0.10), _result("power_floor", 0.30), _result("exp_floor", 0.25)])
    assert table.names == ("power", "exp_floor", "power_floor")  # the paper's ranking is unchanged
    assert rmse_gap(table) == pytest.approx(-0.05)
    assert table.rmse_gap() == rmse_gap(table)
    # Without power_floor (or with it failed) there is no gap, whatever pure power did.
    assert math.isnan(rmse_gap(FitTable([_result("power", 0.1), _result("exp_floor", 0.25)])))
    failed = dataclasses.replace(_result("power_floor", math.inf), success=False)
    assert math.isnan(rmse_gap(FitTable([_result("power", 0.1), failed, _result("exp_floor", 0.25)])))


def test_rmse_gap_on_data_does_not_depend_on_the_pure_power_fit() -> None:
    y = power_floor(R) * np.exp(np.random.default_rng(4).normal(0.0, 0.05, R.size))
    full = fit_decay_models(R, y)
    floors_only = fit_decay_models(R, y, models=("power_floor", "exp_floor"))
    assert full.rmse_gap() == floors_only.rmse_gap()
    assert full.rmse_gap() == full.get("exp_floor").rmse - full.get("power_floor").rmse


# ---------------------------------------------------------------------------- quality flags


def constant_profile(r: np.ndarray) -> np.ndarray:
    return np.full(r.shape, 0.03)


def test_constant_profile_with_noise_is_flat_not_a_big_exponent() -> None:
    y = constant_profile(R) * np.exp(np.random.default_rng(1).normal(0.0, 0.03, R.size))
    table = fit_decay_models(R, y)
    for fit in table:
        assert fit.success and fit.flat and not fit.usable
        assert fit.log_spread < FLAT_LOG_SPREAD
        assert fit.issue == "flat"
        assert "flat" in fit.message
    decaying = fit_decay_models(R, power_floor(R))
    assert all(fit.usable and not fit.flat and fit.at_bound == () for fit in decaying)
    records = table.to_records()
    assert all(record["flat"] and not record["usable"] for record in records)


def steep_step(r: np.ndarray) -> np.ndarray:
    """A floor with a one-distance step at r = 1: the power law with floor can follow it only with p at 10."""
    return 1e-3 + 50.0 * (r + 1.0) ** -12.0


def test_exponent_at_its_bound_is_flagged() -> None:
    table = fit_decay_models(R, steep_step(R))
    fit = table.get("power_floor")
    assert fit.success  # converged: success keeps its meaning
    assert fit.at_bound == ("p",) and fit.shape_at_bound
    assert fit.params["p"] == pytest.approx(10.0)
    assert not fit.flat and not fit.usable
    assert fit.issue == "at bound: p"
    assert "at bound: p" in fit.message
    assert table.get("exp_floor").usable  # the exponential describes a step fine
    # A floor driven to its lower bound (pure power data) is not the shape parameter: still usable.
    assert all(f.usable for f in fit_decay_models(R, 0.7 * (R + 1.0) ** -0.85))


def test_exponent_at_its_bound_is_kept_out_of_the_intervals_and_the_verdict() -> None:
    rows, group = noisy_rows(seed=0, n_windows=16, per_window=4, profile=steep_step,
                             window_sigma=0.1, entry_sigma=0.1)
    result = bootstrap_fits(R_BOOT, rows, n_boot=12, seed=1, group=group)
    assert result.point.get("power_floor").at_bound == ("p",)
    assert math.isnan(result.point_estimates["p_power_floor"])
    assert result.point_issues["p_power_floor"] == "power_floor: at bound: p"
    assert result.n_excluded["p_power_floor"] == result.n_excluded["rmse_gap"] == 12
    assert np.isnan(result.replicates["p_power_floor"]).all()
    assert all(math.isnan(v) for v in result.intervals["p_power_floor"])
    # Statistics of the other laws are not affected.
    assert result.n_excluded["xi_exp_floor"] == 0 and np.isfinite(result.replicates["xi_exp_floor"]).all()

    call = verdict(result)
    assert call.winner == "undecided"
    assert math.isnan(call.p) and math.isnan(call.p_low) and math.isnan(call.p_high)
    assert call.n_excluded == 12 and call.p_excluded == 12
    assert "at bound: p" in call.note
    assert "p not estimated" in str(call) and "p = " not in str(call)


def test_replicates_at_a_bound_or_flat_are_excluded_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # Flag every other replicate's power_floor fit as stuck at p's bound, and every third one's
    # exp_floor as flat; the rest of the bootstrap must use exactly the remaining replicates.
    rows, group = noisy_rows(seed=2)
    real_fit = fits_bootstrap.fit_profiles

    def flagging_fit(*args, **kwargs):
        fits = real_fit(*args, **kwargs)  # the replicates, [n_boot] each
        index = np.arange(fits["power_floor"].rss.size)
        at_bound = fits["power_floor"].at_bound.copy()
        at_bound[:, 2] |= index % 2 == 0  # column 2 is p
        spread = np.where(index % 3 == 0, 0.0, fits["exp_floor"].log_spread)
        return {**fits, "power_floor": dataclasses.replace(fits["power_floor"], at_bound=at_bound),
                "exp_floor": dataclasses.replace(fits["exp_floor"], log_spread=spread)}

    monkeypatch.setattr(fits_bootstrap, "fit_profiles", flagging_fit)
    result = bootstrap_fits(R_BOOT, rows, n_boot=12, seed=3, group=group)
    index = np.arange(12)
    p_kept = index % 2 == 1
    gap_kept = (index % 2 == 1) & (index % 3 != 0)
    assert np.array_equal(np.isfinite(result.replicates["p_power_floor"]), p_kept)
    assert np.array_equal(np.isfinite(result.replicates["rmse_gap"]), gap_kept)
    assert np.isfinite(result.replicates["p_power"]).all()
    assert result.n_excluded["p_power_floor"] == 6 and result.n_excluded["rmse_gap"] == 8
    assert result.n_excluded["xi_exp_floor"] == 4 and result.n_excluded["p_power"] == 0
    kept = result.replicates["p_power_floor"][p_kept]
    assert result.intervals["p_power_floor"] == pytest.approx(tuple(np.percentile(kept, [2.5, 97.5])))
    gaps = result.replicates["rmse_gap"][gap_kept]
    assert result.power_wins_fraction == pytest.approx(np.mean(gaps > 0))
    # The full-data fit is usable, so the point estimates and the verdict stand.
    # The full-data fit is usable, but 8 of 12 replicates left out of the gap (67%, more than alpha/2 =
    # 2.5%): an interval of the rest could hide a tail as large as the one it cut, so no winner.
    call = verdict(result)
    assert call.winner == "undecided" and call.n_excluded == 8 and call.p_excluded == 6
    assert call.gap_left_out == pytest.approx(8 / 12) and call.p_left_out == pytest.approx(6 / 12)
    assert "left out of the gap: 8 flat or at a bound (66.7%)" in str(call)
    assert "66.7% of the replicates left out of the gap, more than 2.5%" in call.note
    assert "the p interval leaves out 50.0% of the replicates" in call.note


@pytest.mark.parametrize(("left_out", "winner"), [(0, "power law"), (1, "power law"), (2, "undecided")])
def test_a_verdict_stands_only_while_at_most_alpha_over_2_of_the_replicates_are_left_out(
        monkeypatch: pytest.MonkeyPatch, left_out: int, winner: str) -> None:
    """40 replicates at 95%: 1 left out is 2.5% (the limit, allowed), 2 are 5% (too many)."""
    rows, group = noisy_rows(seed=2)
    real_fit = fits_bootstrap.fit_profiles

    def flagging_fit(*args, **kwargs):
        fits = real_fit(*args, **kwargs)
        spread = fits["exp_floor"].log_spread.copy()
        spread[:left_out] = 0.0  # flat: left out of the gap
        return {**fits, "exp_floor": dataclasses.replace(fits["exp_floor"], log_spread=spread)}

    monkeypatch.setattr(fits_bootstrap, "fit_profiles", flagging_fit)
    call = verdict(bootstrap_fits(R_BOOT, rows, n_boot=40, seed=3, group=group))
    assert call.n_excluded == left_out and call.winner == winner


# ---------------------------------------------------------------------------- verdict branches


def exp_floor_profile(r: np.ndarray) -> np.ndarray:
    return 0.05 + 0.8 * np.exp(-r / 30.0)


def test_verdict_exponential() -> None:
    rows, group = noisy_rows(seed=0, profile=exp_floor_profile)
    call = verdict(bootstrap_fits(R_BOOT, rows, n_boot=30, seed=1, group=group))
    assert call.winner == "exponential"
    assert call.gap < 0 and call.gap_high < 0
    assert call.power_wins_fraction == 0.0
    assert str(call).startswith("exponential: p = ")


def test_verdict_undecided_when_the_gap_interval_straddles_zero() -> None:
    # Over r <= 12 with few, noisy windows the two floor laws fit about equally well.
    r = R_BOOT[:10]
    rows, group = noisy_rows(seed=1, n_windows=12, per_window=4, r=r, entry_sigma=0.8)
    call = verdict(bootstrap_fits(r, rows, n_boot=40, seed=1, group=group))
    assert call.winner == "undecided"
    assert call.gap_low < 0 < call.gap_high
    assert 0 < call.power_wins_fraction < 1
    assert math.isfinite(call.p) and call.note == "neither law rejected at 0.025"  # the calibrated rule's reason
    assert str(call).startswith("undecided: p = ")
    # Without the null simulations the rule reads the gap's interval alone, and it straddles zero.
    plain = verdict(bootstrap_fits(r, rows, n_boot=40, seed=1, group=group, n_sim=0))
    assert plain.winner == "undecided" and plain.calibration is None
    assert plain.note == "no null simulation: the gap's interval decided (a reading whose error rate is not measured)"


def test_verdict_flat_for_a_constant_profile() -> None:
    rows, group = noisy_rows(seed=0, profile=constant_profile)
    result = bootstrap_fits(R_BOOT, rows, n_boot=10, seed=1, group=group)
    assert result.point.get("power_floor").flat and result.point.get("exp_floor").flat
    assert result.n_excluded["p_power_floor"] == 10
    call = verdict(result)
    assert call.winner == "flat"
    assert call.drop_low <= 0 <= call.drop_high and call.drop_distances == (1.0, 1536.0)
    assert all(math.isnan(v) for v in (call.p, call.p_low, call.p_high, call.gap))
    text = str(call)
    assert text.startswith("flat — no decay measured: decay trend ") and "log drop r=1→1536: " in text
    assert call.trend_low <= 0 <= call.trend_high
    assert "p =" not in text and "nan" not in text
    assert "window bootstrap, 10 replicates, 48 windows" in text


def test_a_small_real_decay_is_not_flat_and_a_flat_profile_is_flat_whatever_its_fits() -> None:
    """The flat verdict is a test of the total log drop, not a threshold on the fitted curve: a noise-free
    drop of 0.11 nats (which the old rule, RMS log spread < 0.05, called flat) decays; a flat profile
    is flat even where a law fits its noise with a curve of some spread."""
    small = lambda r: 0.8 * (1.0 + 0.18 * (r + 1.0) ** -0.5)  # noqa: E731 - log drop 0.115 nats over R_BOOT
    assert np.log(small(R_BOOT[1]) / small(R_BOOT[-1])) == pytest.approx(0.115, abs=0.002)
    rows, group = noisy_rows(seed=0, profile=small, window_sigma=0.02, entry_sigma=0.05)
    result = bootstrap_fits(R_BOOT, rows, n_boot=40, seed=1, group=group)
    assert result.point.get("power_floor").flat  # the old rule's reading
    call = verdict(result)
    assert call.winner != "flat" and 0 < call.drop_low < call.drop < call.drop_high < 0.2
    rows, group = noisy_rows(seed=4, profile=constant_profile, window_sigma=0.05, entry_sigma=0.8)
    assert verdict(bootstrap_fits(R_BOOT, rows, n_boot=40, seed=1, group=group)).winner == "flat"


def test_a_profile_that_grows_with_distance_is_rising_not_flat() -> None:
    """Random-init SmolLM2's profile grows with r (its log drop is -1.8 nats): no decay, but not flat either."""
    rising = lambda r: 0.1 * (r + 1.0) ** 0.3  # noqa: E731
    rows, group = noisy_rows(seed=0, profile=rising, window_sigma=0.05, entry_sigma=0.2)
    call = verdict(bootstrap_fits(R_BOOT, rows, n_boot=20, seed=1, group=group))
    assert call.winner == "rising" and call.drop_high < 0 and call.trend_high < 0
    assert call.trend == pytest.approx(-0.3, abs=0.05)  # minus the slope of log G on log(r + 1)
    assert str(call).startswith("rising — no decay, the profile grows with distance: decay trend -")
    assert "p =" not in str(call)


def test_an_exponent_within_one_percent_of_its_range_from_a_bound_is_stuck() -> None:
    step = np.where(R_BOOT[1:] < 1.5, 1.0, 0.3)  # a drop at the first distance only: p runs to its bound
    fit = fit_decay_models(R_BOOT[1:], step).get("power_floor")
    assert fit.params["p"] > 9.9 and fit.shape_at_bound and not fit.usable


def test_verdict_failed_when_a_floor_law_cannot_be_fitted() -> None:
    r = np.array([0.0, 1.0, 2.0, 3.0])  # three usable distances: too few for three parameters
    rows, group = noisy_rows(seed=0, n_windows=8, per_window=4, r=r)
    result = bootstrap_fits(r, rows, n_boot=5, seed=0, group=group)
    assert result.n_failed["rmse_gap"] == 5 and result.n_excluded["rmse_gap"] == 0
    assert result.point_issues["rmse_gap"].startswith("failed")
    call = verdict(result)
    assert call.winner == "failed"
    assert "too few points" in call.note
    assert str(call).startswith("failed: ")


def test_unit_is_recorded_and_named() -> None:
    rows, group = noisy_rows(seed=0, n_windows=12, per_window=4)
    result = bootstrap_fits(R_BOOT, rows, n_boot=5, seed=0, group=group, group_name="document")
    assert result.unit == "document"
    assert "document bootstrap: 5 replicates over 12 documents" in str(result)
    call = verdict(result)
    assert call.unit == "document"
    assert "(95% document bootstrap, 5 replicates, 12 documents)" in str(call)
    assert bootstrap_fits(R_BOOT, rows, n_boot=2, seed=0, group=group).unit == "window"


# ---------------------------------------------------------------------------- errors inside a fit


def test_programming_error_inside_a_fit_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise TypeError("a bug, not a bad start")

    monkeypatch.setattr(fits_fitting, "_residual", broken)
    with pytest.raises(TypeError, match="a bug"):
        fit_decay_models(R, power_floor(R))


def test_numerical_failure_inside_a_fit_is_a_failed_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    # NaN residuals make lmfit raise ValueError: that start (here every start) fails, the call does not.
    monkeypatch.setattr(fits_fitting, "_residual", lambda params, name, r, ly, sw: np.full(r.size, np.nan))
    table = fit_decay_models(R, power_floor(R))
    assert all(not fit.success and "ValueError" in fit.message for fit in table)
    assert table.best is None


# ---------------------------------------------------------------------------- valid values


def test_valid_mask_is_finite_and_positive() -> None:
    values = np.array([[1.0, 0.0, -2.0], [np.nan, np.inf, 1e-300]])
    assert valid_mask(values).tolist() == [[True, False, False], [False, False, True]]
    assert valid_mask([-np.inf, 3]).tolist() == [False, True]


# ---------------------------------------------------------------------------- two runs compared


def test_a_paired_difference_resolves_what_overlapping_intervals_cannot() -> None:
    """Two profiles of the same windows, one 8% steeper: each window has its own exponent (0.8 give or take
    0.3), which makes both intervals wide; raising the rows to the power 1.08 keeps that window-to-window
    variation, which a paired difference cancels. The intervals overlap, the paired interval of the
    difference excludes zero and is far narrower than the unpaired one."""
    rng = np.random.default_rng(5)
    slopes = np.repeat(0.8 + rng.normal(0.0, 0.3, 24), 8)
    rows = (R_BOOT + 1.0)[None, :] ** -slopes[:, None] * np.exp(rng.normal(0.0, 0.3, (192, R_BOOT.size)))
    rows[:, 0] = 1.0
    group = np.repeat(np.arange(24), 8)
    a = bootstrap_fits(R_BOOT, rows ** 1.08, n_boot=400, seed=2, group=group)
    b = bootstrap_fits(R_BOOT, rows, n_boot=400, seed=2, group=group)
    (a_low, a_high), (b_low, b_high) = a.intervals["p_power"], b.intervals["p_power"]
    assert a_low < b_high  # the intervals overlap
    paired = paired_difference(a, b, "p_power")
    assert paired.paired and paired.resolved and paired.low > 0
    assert paired.difference == pytest.approx(a.point_estimates["p_power"] - b.point_estimates["p_power"])
    assert 0.05 < paired.difference < 0.08
    unpaired = paired_difference(a, bootstrap_fits(R_BOOT, rows, n_boot=400, seed=3, group=group), "p_power")
    assert not unpaired.paired and (unpaired.high - unpaired.low) > 3 * (paired.high - paired.low)
    assert "paired over the same windows" in str(paired) and "unpaired" in str(unpaired)
    assert paired.n_pairs == 400 and paired.left_out == 0.0


def test_pairing_needs_the_same_groups_seed_and_replicates() -> None:
    rows, group = noisy_rows(seed=6, n_windows=12, per_window=4)
    a = bootstrap_fits(R_BOOT, rows, n_boot=20, seed=0, group=group)
    assert a.groups == tuple(str(i) for i in range(12))
    assert paired_difference(a, bootstrap_fits(R_BOOT, rows, n_boot=20, seed=0, group=group)).paired
    assert not paired_difference(a, bootstrap_fits(R_BOOT, rows, n_boot=20, seed=0, group=group + 100)).paired
    assert not paired_difference(a, bootstrap_fits(R_BOOT, rows, n_boot=30, seed=0, group=group)).paired
    same = paired_difference(a, a)
    assert same.difference == 0.0 and same.low == 0.0 == same.high and not same.resolved


def test_a_difference_that_left_out_more_than_a_tail_of_its_replicates_is_not_resolved() -> None:
    """The replicates left out (failed, flat or at a bound) could all lie across zero: more of them than one
    tail of the interval, (1 − confidence) / 2, and an interval that excludes zero does not resolve."""
    rows = (R_BOOT + 1.0)[None, :] ** -0.8 * np.exp(np.random.default_rng(3).normal(0.0, 0.1, (160, R_BOOT.size)))
    rows[:, 0] = 1.0
    group = np.repeat(np.arange(20), 8)
    a = bootstrap_fits(R_BOOT, rows ** 1.2, n_boot=200, seed=0, group=group, n_sim=0)
    b = bootstrap_fits(R_BOOT, rows, n_boot=200, seed=0, group=group, n_sim=0)
    clean = paired_difference(a, b, "p_power")
    assert clean.paired and clean.low > 0 and clean.left_out == 0.0 and clean.resolved
    for lost, resolved in ((5, True), (6, False)):  # 5 of 200 is 2.5%: the most a 95% interval may leave out
        values = a.replicates["p_power"].copy()
        values[:lost] = np.nan
        difference = paired_difference(dataclasses.replace(a, replicates={**a.replicates, "p_power": values}), b,
                                       "p_power")
        assert difference.low > 0 and difference.left_out == pytest.approx(lost / 200)
        assert difference.resolved is resolved
        assert ("not resolved" in str(difference)) is not resolved
    half = dataclasses.replace(clean, left_out=0.4)
    assert half.max_left_out == pytest.approx(0.025) and not half.resolved


def test_zero_norms_rank_lowest_in_the_median_not_dropped() -> None:
    """A zero is a norm below the dtype's range: dropping it would move the median up."""
    rows = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.5], [1.0, 0.2], [1.0, np.nan]])
    aggregate = ColumnAggregator(rows, "median")
    assert aggregate(np.ones(5, dtype=np.int64)).tolist() == [1.0, 0.1]  # median of 0, 0, 0.2, 0.5
    assert aggregate(np.array([0, 0, 1, 1, 1])).tolist() == [1.0, 0.35]
    from green_profiles.analysis.profiles import aggregate_rows

    assert aggregate_rows(rows, [0, 1])["median"].tolist() == [1.0, 0.1]
    assert aggregate_rows(rows, [0, 1])["count"].tolist() == [5, 4]
