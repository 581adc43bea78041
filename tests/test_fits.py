"""Decay-law fits: parameter recovery, ranking, input cleaning, information criteria, bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from green_profiles.fits import (
    MODEL_NAMES,
    FitTable,
    _ColumnAggregator,
    bootstrap_fits,
    fit_decay_models,
    fit_range_scan,
    model_curve,
)

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
    assert [f.name for f in table][-2:] != ["power"]  # failures ranked last
    assert table[0].name == "power"

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


def noisy_rows(seed: int, n_windows: int = 48, per_window: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``[n_windows * per_window, len(R_BOOT)]`` around the power law with floor.

    Each window scales its rows by one log-normal factor (sigma 0.3) and each entry
    has its own log-normal noise (sigma 0.5): both symmetric in log, so the median
    profile of the population is exactly the power law. 5% of entries are missing.
    """
    rng = np.random.default_rng(seed)
    window_factor = np.repeat(rng.normal(0.0, 0.3, n_windows), per_window)
    noise = rng.normal(0.0, 0.5, (n_windows * per_window, R_BOOT.size))
    rows = power_floor(R_BOOT)[None, :] * np.exp(window_factor[:, None] + noise)
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


@pytest.mark.parametrize("statistic", ["median", "mean"])
def test_resampled_aggregate_equals_explicit_expansion(statistic: str) -> None:
    rng = np.random.default_rng(5)
    rows = rng.lognormal(size=(37, 6))
    rows[rng.random(rows.shape) < 0.2] = np.nan
    rows[0, 1], rows[1, 2] = 0.0, -3.0  # non-positive: ignored like NaN
    rows[:, 5] = np.nan  # a distance with no valid value at all
    aggregate = _ColumnAggregator(rows, statistic)
    for _ in range(20):
        mult = rng.integers(0, 3, size=rows.shape[0])
        expanded = np.repeat(rows, mult, axis=0)
        expanded = np.where(np.isfinite(expanded) & (expanded > 0), expanded, np.nan)
        reduce = np.nanmedian if statistic == "median" else np.nanmean
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
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
