"""The local slope (green_profiles.analysis.local_slope) on profiles of known shape: a pure power law reads
its exponent at every distance, a floor pulls the slope down at large r, an exponential's slope grows like
(r + 1)/ξ; with noisy rows by document, a power law's plateau holds its exponent and an exponential has none."""

from __future__ import annotations

import numpy as np
import pytest

from green_profiles.analysis.local_slope import PLATEAU_MARGIN, candidate_ranges, local_slope, local_slopes, plateau
from green_profiles.analysis.synthetic import DEFAULT_DISTANCES, synthetic_run
from green_profiles.runs.configuration import PAPER_DISTANCES

GRID = np.array([r for r in PAPER_DISTANCES if r <= 1536], dtype=float)
DENSE = np.unique(np.round(np.geomspace(1, 1536, 45)))


@pytest.mark.parametrize("grid", [GRID, DENSE], ids=["paper grid", "dense log grid"])
def test_a_pure_power_law_reads_its_exponent_everywhere(grid):
    centres, slope = local_slopes(grid, (grid + 1.0) ** -0.8)
    assert len(centres) >= len(grid) - 4  # only the ends of the grid lack three points in their octave
    np.testing.assert_allclose(slope, 0.8, atol=1e-12)


def test_a_floor_pulls_the_slope_towards_zero_at_large_distances():
    centres, slope = local_slopes(GRID, 0.05 + 0.95 * (GRID + 1.0) ** -0.8)
    assert slope[0] > 0.6 and slope[-1] < 0.1
    assert np.all(np.diff(slope) < 1e-12)  # it only falls


def test_an_exponentials_slope_grows_like_r_over_xi():
    xi = 50.0
    centres, slope = local_slopes(GRID, np.exp(-GRID / xi))
    # The exact local slope of exp(-r/ξ) in log(r+1) is (r+1)/ξ; the octave window averages it.
    np.testing.assert_allclose(slope, (centres + 1.0) / xi, rtol=0.2)
    assert np.all(np.diff(slope) >= 0) and slope[-1] > 100 * slope[0]  # (the last two windows hold the same points)


def test_missing_or_non_positive_values_give_nan_only_where_they_fall():
    profile = (GRID + 1.0) ** -0.5
    profile[GRID == 64] = 0.0
    centres, slope = local_slopes(GRID, profile)
    near = np.abs(np.log2((centres + 1) / 65)) <= 0.75  # the default window: 1.5 octaves
    assert np.isnan(slope[near]).all() and np.isfinite(slope[~near]).all()
    np.testing.assert_allclose(slope[~near], 0.5, atol=1e-12)


def rows_by_document(law, n_documents=24, per_document=8, sigma=0.25, seed=0):
    rng = np.random.default_rng(seed)
    documents = np.repeat(np.arange(n_documents), per_document)
    rows = law(GRID)[None, :] * rng.lognormal(sigma=sigma, size=(len(documents), len(GRID)))
    rows *= rng.lognormal(sigma=0.2, size=(n_documents, 1))[documents]  # documents differ as a whole
    return rows, documents


def test_a_noisy_power_law_has_a_plateau_at_its_exponent():
    rows, documents = rows_by_document(lambda r: (r + 1.0) ** -0.8)
    result = local_slope(GRID, rows, documents, n_boot=400, seed=1)
    assert result.plateau is not None and result.plateau.octaves >= 6 and result.plateau.decays
    assert result.plateau.low <= 0.8 <= result.plateau.high
    assert result.plateau.high - result.plateau.low < 0.1
    assert abs(result.plateau.change_low) < PLATEAU_MARGIN and abs(result.plateau.change_high) < PLATEAU_MARGIN
    assert np.all(result.low <= result.high)


def test_an_exponential_has_no_plateau():
    rows, documents = rows_by_document(lambda r: np.exp(-r / 40.0), sigma=0.1)
    result = local_slope(GRID[GRID <= 192], rows[:, GRID <= 192], documents, n_boot=400, seed=1)
    assert result.plateau is None


def test_the_ranges_are_fixed_by_the_grid_and_start_at_the_first_distance():
    ranges = candidate_ranges(DEFAULT_DISTANCES)
    assert [DEFAULT_DISTANCES[b] for _, b in ranges] == [16, 32, 64, 128, 256, 384]
    assert {DEFAULT_DISTANCES[a] for a, _ in ranges} == {1.0}


def test_the_plateau_is_the_widest_range_whose_slope_is_shown_constant():
    r = DEFAULT_DISTANCES
    # Slope 0.8 up to r = 64, then the profile flattens: ranges reaching past 64 change slope by far more than
    # the margin; the widest constant one ends at 64.
    profile = np.where(r <= 64, (r + 1.0) ** -0.8, 65.0 ** -0.8 * ((r + 1.0) / 65.0) ** -0.05)
    replicates = profile[None, :] * np.exp(np.random.default_rng(0).normal(0, 0.002, (200, r.size)))
    found = plateau(r, profile, replicates)
    assert (found.start, found.stop) == (1.0, 64.0) and found.level == pytest.approx(0.8, abs=1e-6)
    assert found.n_ranges == 6 and found.decays
    assert plateau(r, profile, replicates, min_octaves=7.5) is None


# Error rates of the plateau test on synthetic runs at the default design (16 documents, 2 rows each, documents
# noise): an exponential with floor must get a plateau in at most 10% of runs. 40 runs: a rate of 10% would
# give 4 on average, and none were seen when the margin was chosen; 0 or 1 passes, 8 fails this test.
def test_an_exponential_with_floor_rarely_gets_a_plateau_at_the_default_design():
    claimed = 0
    for seed in range(40):
        run = synthetic_run("exp_floor", "documents", 16, seed=seed)
        result = local_slope(run.distances, run.rows, run.group, n_boot=400, seed=seed)
        claimed += result.plateau is not None and result.plateau.decays
    assert claimed <= 3


def test_a_runs_local_slope_resamples_its_documents_like_its_bootstrap(tiny_store):
    run = tiny_store.run("plain")
    result = run.local_slope("pred", n_boot=50, seed=3)
    _, labels = run.resampling_unit()
    again = local_slope(run.distances, run.normalized("pred"), labels, n_boot=50, seed=3)
    np.testing.assert_array_equal(result.replicates, again.replicates)  # the same draws, bitwise
    assert result.replicates.shape == (50, len(result.distances))
