"""Rows for other grids, buffers and normalizations read from a run that kept whole rows
(green_profiles.analysis.specifications), checked against the run's own grid rows."""

from __future__ import annotations

import numpy as np
import pytest

from green_profiles.analysis.specifications import Derivation, dense_grid, specification_rows


def test_the_runs_own_grid_points_are_read_back_exactly(tiny_store):
    run = tiny_store.run("full_rows")
    buffer = run.config.source_min_index
    for selection in ("pred", "true"):
        distances, rows = specification_rows(run.arrays, buffer, Derivation(selection=selection))
        common = [r for r in run.distances if r in distances]
        assert len(common) >= 5
        mine = rows[:, np.searchsorted(distances, common)]
        stored = run.normalized(selection)[:, np.searchsorted(run.distances, common)]
        # The same stored numbers divided by the same diagonal: bitwise.
        np.testing.assert_array_equal(mine, stored)


def test_a_grid_is_cut_where_the_buffer_leaves_a_target_no_source(tiny_store):
    run = tiny_store.run("full_rows")
    targets, buffer = run.arrays["targets"], run.config.source_min_index
    distances, rows = specification_rows(run.arrays, buffer, Derivation(grid="paper"))
    assert distances.max() <= targets.min() - buffer and np.isfinite(rows).all()
    wider, _ = specification_rows(run.arrays, buffer, Derivation(buffer=buffer + 12))
    assert wider.max() <= targets.min() - buffer - 12 < distances.max()
    with pytest.raises(ValueError, match="left of the run's own"):
        specification_rows(run.arrays, buffer, Derivation(buffer=buffer - 1))


def test_normalizations(tiny_store):
    run = tiny_store.run("full_rows")
    buffer = run.config.source_min_index
    _, raw = specification_rows(run.arrays, buffer, Derivation(normalization="none"))
    distances, by_first = specification_rows(run.arrays, buffer, Derivation(normalization="G1"))
    assert distances[1] == 1
    np.testing.assert_array_equal(by_first[:, 1], 1.0)
    np.testing.assert_allclose(by_first, raw / raw[:, 1:2], rtol=0)
    _, by_diagonal = specification_rows(run.arrays, buffer, Derivation())
    np.testing.assert_array_equal(by_diagonal[:, 0], 1.0)


def test_a_run_without_whole_rows_is_refused(tiny_store):
    run = tiny_store.run("plain")
    with pytest.raises(KeyError, match="full_rows=True"):
        specification_rows(run.arrays, run.config.source_min_index, Derivation())


def test_the_dense_grid_has_about_four_points_an_octave():
    grid = dense_grid(1536)
    assert grid[0] == 0 and grid[-1] == 1536 and np.all(np.diff(grid) > 0)
    large = grid[grid >= 16]
    per_octave = (len(large) - 1) / np.log2((large[-1] + 1) / (large[0] + 1))
    assert 3.5 <= per_octave <= 4.5
    assert list(grid[:5]) == [0, 1, 2, 3, 4]  # below r = 4 the octaves' points round to every integer


def test_the_dense_grid_restricted_to_the_papers_points_is_the_paper_grid(tiny_store):
    # Catches a grid that indexes sources off by one, or a normalization that depends on which grid was read.
    run = tiny_store.run("full_rows")
    buffer = run.config.source_min_index
    for normalization in ("G0", "G1", "none"):
        paper_r, paper = specification_rows(run.arrays, buffer, Derivation(grid="paper", normalization=normalization))
        dense_r, dense = specification_rows(run.arrays, buffer, Derivation(grid="dense", normalization=normalization))
        common = np.intersect1d(paper_r, dense_r)
        assert len(common) >= 4 and len(dense_r) > len(common)
        # The same stored numbers, the same divisor: bitwise.
        np.testing.assert_array_equal(dense[:, np.searchsorted(dense_r, common)],
                                      paper[:, np.searchsorted(paper_r, common)])
