"""Readings as tests (green_profiles.analysis.decisions): Holm's adjustment, the bootstrap p-value of a difference,
and the equivalence test against the paper's band, with their error rates pinned by simulations (fixed seeds)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from green_profiles.analysis.comparison import compare_many, compare_runs, compare_with_paper
from green_profiles.analysis.decisions import (INCONCLUSIVE, INSIDE, NO_ESTIMATE, OUTSIDE, BandTest, band_decision,
                                               band_test, bootstrap_pvalue, difference_pvalue, holm, holm_text)
from green_profiles.analysis.fits import bootstrap_fits

# ----------------------------------------------------------------------------------------
# Holm
# ----------------------------------------------------------------------------------------


def test_holm_by_hand():
    # Sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> 0.06 (kept monotone).
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    # A NaN is no test: m = 2 here, and it stays NaN in its place.
    np.testing.assert_allclose(holm([0.01, math.nan, 0.04]), [0.02, math.nan, 0.04])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    assert holm([]).shape == (0,) and np.isnan(holm([math.nan])).all()
    assert holm(np.full((2, 3), 0.01)).shape == (2, 3)
    with pytest.raises(ValueError, match="must lie in"):
        holm([0.2, 1.5])


def _step_down(pvalues: list[float], alpha: float) -> set[int]:
    """Holm's procedure as its paper states it: reject the smallest p-values while p_(i) <= alpha / (m - i + 1)."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    rejected = set()
    for rank, index in enumerate(order):
        if pvalues[index] > alpha / (len(pvalues) - rank):
            break
        rejected.add(index)
    return rejected


def test_holm_rejects_what_the_step_down_procedure_rejects():
    rng = np.random.default_rng(3)
    for _ in range(300):
        m = int(rng.integers(1, 25))
        raw = np.where(rng.random(m) < 0.3, rng.random(m) * 0.01, rng.random(m))
        adjusted = holm(raw)
        assert np.all(adjusted >= raw - 1e-15) and np.all(adjusted <= 1.0)
        order = np.argsort(raw)
        assert np.all(np.diff(adjusted[order]) >= -1e-15)  # monotone in the raw p-values
        for alpha in (0.01, 0.05, 0.1):
            assert set(np.flatnonzero(adjusted <= alpha)) == _step_down(list(raw), alpha)


def test_holm_keeps_the_familywise_error_at_alpha():
    """20 true null hypotheses (uniform p-values): any one read as resolved at most ~5% of the time with Holm,
    about 64% of the time without it."""
    rng = np.random.default_rng(4)
    raw = rng.random((4000, 20))
    any_raw = np.mean((raw < 0.05).any(axis=1))
    any_holm = np.mean((np.apply_along_axis(holm, 1, raw) < 0.05).any(axis=1))
    assert any_raw > 0.55 and any_holm <= 0.06


def test_a_p_of_0_03_among_20_tests_is_not_resolved():
    raw = np.r_[0.03, np.linspace(0.2, 0.95, 19)]
    assert raw[0] < 0.05 and holm(raw)[0] >= 0.05  # 20 x 0.03 = 0.6


# ----------------------------------------------------------------------------------------
# The bootstrap p-value
# ----------------------------------------------------------------------------------------


def test_bootstrap_pvalue_by_hand():
    # 9 replicates, 1 at or below 0: 2 (1 + 1) / 10 = 0.4; none at or below: 2 / 10.
    assert bootstrap_pvalue([-0.1, *np.linspace(0.1, 0.8, 8)]) == pytest.approx(0.4)
    assert bootstrap_pvalue(np.linspace(0.1, 0.9, 9)) == pytest.approx(0.2)
    assert bootstrap_pvalue(np.linspace(-0.9, -0.1, 9)) == pytest.approx(0.2)  # two-sided
    assert bootstrap_pvalue([-1.0, 1.0, math.nan, math.inf]) == 1.0  # capped; non-finite values left out
    assert bootstrap_pvalue(np.linspace(1.1, 1.9, 9), null=1.5) == pytest.approx(1.0)
    assert math.isnan(bootstrap_pvalue([math.nan, math.nan]))
    assert bootstrap_pvalue(np.zeros(20)) == 1.0  # a difference of a run with itself


def test_bootstrap_pvalue_inverts_the_percentile_interval():
    """p < 0.05 exactly where the 95% percentile interval of the replicates excludes the null (up to one
    replicate's resolution)."""
    rng = np.random.default_rng(5)
    for shift in np.linspace(0.0, 3.0, 31):
        values = rng.normal(shift, 1.0, 1999)
        low, high = np.percentile(values, [2.5, 97.5])
        pvalue = bootstrap_pvalue(values)
        if low > 0.01 or high < -0.01:
            assert pvalue < 0.05
        elif low < -0.01 and high > 0.01:
            assert pvalue >= 0.05


def test_difference_pvalue_reads_the_replicate_differences():
    rng = np.random.default_rng(6)
    a = _result(rng.normal(1.0, 0.1, 500))
    b = dataclasses.replace(a, replicates={"p_power_floor": a.replicates["p_power_floor"] - 0.3})
    assert difference_pvalue(a, b) == pytest.approx(2 / 501)
    assert difference_pvalue(a, a) == 1.0


def test_holm_text():
    assert holm_text(0.0123, "20 specifications") == "Holm-adjusted p = 0.012 over 20 specifications"
    assert holm_text(math.nan, "3 checkpoints") == "no p-value"


# ----------------------------------------------------------------------------------------
# The band test
# ----------------------------------------------------------------------------------------


def _decide(center: float, spread: float, rng: np.random.Generator, n: int = 1000, n_groups: int = 16) -> BandTest:
    return band_decision(center, rng.normal(center, spread, n), n_groups=n_groups)


def test_outcomes_and_their_words():
    rng = np.random.default_rng(7)
    inside = _decide(0.8, 0.03, rng)
    assert inside.verdict == INSIDE and inside.low90 > 0.7 and inside.high90 < 0.9
    assert str(inside).startswith("inside the paper's band (equivalence test: 90% interval [0.7")
    assert str(inside).endswith("inside 0.7–0.9)")
    outside = _decide(1.2, 0.05, rng)
    assert outside.verdict == OUTSIDE and str(outside).startswith("outside the paper's band (95% interval [1.1")
    assert str(outside).endswith("above it)")
    assert str(_decide(0.3, 0.05, rng)).endswith("below it)")
    wide = _decide(0.8, 0.3, rng)
    assert wide.verdict == INCONCLUSIVE
    assert str(wide).startswith("inconclusive: 90% interval [0.3") and str(wide).endswith(
        "is not inside 0.7–0.9 (the interval is wider than the band)")
    edge = _decide(0.9, 0.03, rng)
    assert edge.verdict == INCONCLUSIVE and "straddles the band's edge at 0.9" in str(edge)
    none = band_decision(math.nan, rng.normal(0.8, 0.01, 100))
    assert none.verdict == NO_ESTIMATE and str(none) == "no estimate"


def test_a_point_estimate_inside_the_band_is_not_agreement():
    """The old reading called this "within": p = 0.8 with its interval [0.5, 1.1]."""
    rng = np.random.default_rng(8)
    test = band_decision(0.8, rng.normal(0.8, 0.15, 2000), n_groups=16)
    assert 0.45 < test.low95 < 0.55 and 1.05 < test.high95 < 1.15
    assert test.verdict == INCONCLUSIVE


def test_too_many_replicates_left_out_is_inconclusive():
    rng = np.random.default_rng(9)
    test = band_decision(0.8, rng.normal(0.8, 0.01, 1000), n_groups=16, left_out=0.04)
    assert test.verdict == INCONCLUSIVE and "4.0% of the bootstrap replicates were left out" in str(test)
    assert band_decision(0.8, rng.normal(0.8, 0.01, 1000), n_groups=16, left_out=0.02).verdict == INSIDE
    assert band_decision(0.8, np.full(10, math.nan)).verdict == INCONCLUSIVE


def test_the_default_builds_width_decides_almost_nothing():
    """Replicates as wide as the default build's (spread 0.3) around estimates near the band's centre: "inside"
    never (the 90% interval is five times the band's width), "outside" almost never."""
    rng = np.random.default_rng(10)
    verdicts = [_decide(rng.normal(0.8, 0.3), 0.3, rng, n=500).verdict for _ in range(400)]
    assert verdicts.count(INSIDE) == 0
    assert verdicts.count(OUTSIDE) / len(verdicts) <= 0.05


def test_narrow_intervals_decide():
    rng = np.random.default_rng(11)
    inside = [_decide(0.8 + rng.normal(0.0, 0.01), 0.03, rng, n=500).verdict for _ in range(100)]
    assert inside.count(INSIDE) >= 95
    outside = [_decide(1.2 + rng.normal(0.0, 0.05), 0.05, rng, n=500).verdict for _ in range(100)]
    assert outside.count(OUTSIDE) >= 95


@pytest.mark.parametrize("spread", [0.02, 0.05])
def test_size_at_the_bands_edge(spread):
    """A true p exactly at the band's edge (0.9), estimated as p_hat ~ Normal(0.9, s) with replicates
    ~ Normal(p_hat, s): "inside" at most ~5% of the time (its nominal size), "outside" at most ~2.5%."""
    rng = np.random.default_rng(12)
    draws = 2000
    centers = rng.normal(0.9, spread, draws)
    replicates = centers[:, None] + rng.normal(0.0, spread, (draws, 400))
    verdicts = [band_decision(c, row, n_groups=16).verdict for c, row in zip(centers, replicates, strict=True)]
    assert verdicts.count(INSIDE) / draws <= 0.065
    assert verdicts.count(OUTSIDE) / draws <= 0.04  # the 95% interval above 0.9: 2.5% nominal


def test_few_groups_read_the_expanded_interval():
    """Below 8 groups the intervals are read expanded (as the book reads them): wider, so fewer decisions."""
    rng = np.random.default_rng(13)
    values = rng.normal(0.8, 0.045, 2000)
    assert band_decision(0.8, values, n_groups=16, method="percentile").verdict == INSIDE
    assert band_decision(0.8, values, n_groups=5, method="expanded").verdict == INCONCLUSIVE


# ----------------------------------------------------------------------------------------
# On bootstrap results
# ----------------------------------------------------------------------------------------


def _rows(exponent: float, noise: float, seed: int, documents: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    r = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256], dtype=float)
    slopes = np.repeat(exponent + rng.normal(0.0, noise, documents), 4)
    rows = (r + 1.0)[None, :] ** -slopes[:, None] * np.exp(rng.normal(0.0, 0.05, (4 * documents, r.size)))
    return r, rows, np.repeat(np.arange(documents), 4)


def _result(values: np.ndarray):
    r, rows, group = _rows(0.8, 0.01, 0)
    result = bootstrap_fits(r, rows, n_boot=20, seed=0, group=group, n_sim=0)
    return dataclasses.replace(result, replicates={**result.replicates, "p_power_floor": values},
                               n_boot=len(values), n_failed={}, n_excluded={})


def test_band_test_reads_a_bootstrap():
    r, rows, group = _rows(0.8, 0.02, 1)
    result = bootstrap_fits(r, rows, n_boot=300, seed=0, group=group, n_sim=0)
    test = band_test(result)
    assert test.verdict == INSIDE, test
    assert test.p == result.point_estimates["p_power_floor"]
    assert test.low95 == pytest.approx(result.intervals["p_power_floor"][0])  # the interval the page shows
    assert compare_with_paper(result).startswith("inside the paper's band (equivalence test: 90% interval")
    steep = bootstrap_fits(r, rows ** 1.6, n_boot=300, seed=0, group=group, n_sim=0)
    assert band_test(steep).verdict == OUTSIDE and compare_with_paper(steep).endswith("above it)")
    r, rows, group = _rows(0.8, 0.4, 2)
    noisy = bootstrap_fits(r, rows, n_boot=300, seed=0, group=group, n_sim=0)
    assert band_test(noisy, band=(0.75, 0.85)).verdict != INSIDE


def test_compare_runs_with_a_holm_adjusted_pvalue():
    r, rows, group = _rows(0.9, 0.3, 3)
    before = bootstrap_fits(r, rows, n_boot=300, seed=0, group=group, n_sim=0)
    last = bootstrap_fits(r, rows ** 1.1, n_boot=300, seed=0, group=group, n_sim=0)
    plain = compare_runs(last, before)
    assert plain.startswith("steeper by +0.") and plain.endswith("(paired)")
    assert compare_runs(last, before, adjusted=0.01, over="3 checkpoints").endswith(
        "(paired), Holm-adjusted p = 0.01 over 3 checkpoints")
    unresolved = compare_runs(last, before, adjusted=0.4, over="10 block inputs")
    assert unresolved.startswith("no difference resolved: +0.")
    assert "Holm-adjusted p = 0.4 over 10 block inputs" in unresolved
    compared = compare_many({"last": (last, before), "same": (before, before)}, "checkpoints")
    assert compared["same"].pvalue == 1.0 and compared["last"].n_tests == 2
    assert compared["last"].adjusted == pytest.approx(min(1.0, 2 * compared["last"].pvalue))
    assert str(compared["last"]).startswith("steeper by +0.") and "over 2 checkpoints" in str(compared["last"])
