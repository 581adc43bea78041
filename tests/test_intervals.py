"""Bootstrap intervals (analysis/fits/intervals.py) and where the bootstrap uses the expanded one."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from green_profiles.analysis.fits import bootstrap_fits
from green_profiles.analysis.fits.bootstrap import SMALL_SAMPLE_GROUPS, small_sample_method
from green_profiles.analysis.fits.intervals import bca_interval, expanded_levels, interval, percentile_interval


def test_the_percentile_interval_is_numpys_and_ignores_non_finite_values():
    values = np.r_[np.random.default_rng(0).normal(size=999), np.nan, np.inf]
    np.testing.assert_allclose(percentile_interval(values, 0.9), np.percentile(values[:999], [5, 95]), rtol=1e-12)
    assert all(math.isnan(v) for v in percentile_interval([np.nan], 0.95))


def test_expanded_levels_widen_for_few_groups_and_become_the_plain_ones_for_many():
    low5, high5 = expanded_levels(0.95, 5)
    assert low5 == pytest.approx(stats.norm.cdf(-math.sqrt(5 / 4) * stats.t.ppf(0.975, 4)))
    assert low5 + high5 == pytest.approx(1.0)
    lows = [expanded_levels(0.95, n)[0] for n in (5, 8, 16, 64, 10_000)]
    assert lows == sorted(lows) and lows[-1] == pytest.approx(0.025, abs=1e-4)
    assert expanded_levels(0.95, 1) == pytest.approx((0.025, 0.975))


def test_bca_of_a_symmetric_bootstrap_is_the_percentile_interval():
    values = np.random.default_rng(1).normal(size=4001)
    values = np.r_[values, -values]  # symmetric about 0: no bias correction
    jackknife = np.r_[-1.0, 1.0, -2.0, 2.0]  # symmetric: no acceleration
    np.testing.assert_allclose(bca_interval(values, 0.0, jackknife, 0.95), percentile_interval(values, 0.95))


def test_bca_moves_towards_the_side_the_replicates_are_biased_away_from():
    values = np.random.default_rng(2).normal(loc=0.3, size=4000)  # replicates sit above the point
    low, high = bca_interval(values, 0.0, np.r_[-1.0, 1.0], 0.95)
    plain_low, plain_high = percentile_interval(values, 0.95)
    assert low < plain_low and high < plain_high
    assert all(math.isnan(v) for v in bca_interval(values, 10.0, [0.0, 1.0], 0.95))  # all on one side


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown interval method"):
        interval([1.0, 2.0], 0.95, "studentized")  # type: ignore[arg-type]


def test_the_bootstrap_reads_expanded_intervals_below_eight_groups():
    assert small_sample_method(SMALL_SAMPLE_GROUPS - 1) == "expanded"
    assert small_sample_method(SMALL_SAMPLE_GROUPS) == "percentile"
    r = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128], dtype=float)
    rng = np.random.default_rng(3)
    n_docs, per_doc = 6, 4
    rows = (0.01 + (r + 1) ** -0.9)[None, :] * np.exp(rng.normal(0, 0.5, (n_docs * per_doc, r.size)))
    rows[:, 0] = 1.0
    group = np.repeat(np.arange(n_docs), per_doc)
    result = bootstrap_fits(r, rows, n_boot=400, seed=0, group=group, n_sim=0)
    assert result.interval_method == "expanded"
    values = result.replicates["p_power_floor"]
    assert result.intervals["p_power_floor"] == interval(values, 0.95, "expanded", n_groups=n_docs)
    plain_low, plain_high = percentile_interval(values, 0.95)
    low, high = result.intervals["p_power_floor"]
    assert low <= plain_low and high >= plain_high and high - low > plain_high - plain_low
