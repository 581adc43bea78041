"""Profile statistics (:mod:`green_profiles.analysis.profiles`): aggregates of rows, a stored tiny run's rows,
profiles, fits and bootstrap, and the statistics of a run on synthetic arrays.

The configuration is tested in test_configuration.py; whole runs through the store (cache hits, resuming,
damage) in test_store.py; the command line in test_cli.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from support import synthetic_run

from green_profiles.analysis.profiles import aggregate_rows, left_boundary_table, source_profile
from green_profiles.kernel.jacobian import logit_gradient_norms


# --- statistics ----------------------------------------------------------------------------


def test_aggregates_ignore_nan_inf_and_negative_values_and_rank_zeros_lowest():
    rows = np.array([[1.0, 0.5, np.nan],
                     [1.0, 0.1, 0.0],
                     [1.0, 0.3, -2.0],
                     [1.0, np.inf, np.nan]])
    table = aggregate_rows(rows, [0, 1, 2])
    assert table["count"].tolist() == [4, 3, 1]  # the zero is a value (underflow), the rest are missing
    assert table.loc[1, "median"] == pytest.approx(0.3)
    assert table.loc[1, "mean"] == pytest.approx(0.3)
    assert table.loc[2, "median"] == 0.0 and table.loc[2, "q90"] == 0.0


def test_aggregates_match_numpy_on_random_rows():
    rng = np.random.default_rng(3)
    rows = rng.lognormal(size=(101, 4))
    table = aggregate_rows(rows, [0, 1, 2, 3])
    np.testing.assert_allclose(table["median"], np.median(rows, axis=0))
    np.testing.assert_allclose(table["q25"], np.quantile(rows, 0.25, axis=0))
    ordered = np.sort(rows, axis=0)[10:-10]  # 10% of 101 rounds down to 10 from each end
    np.testing.assert_allclose(table["trimmed_mean"], ordered.mean(axis=0))


# --- a stored run -------------------------------------------------------------------------


def test_run_rows_are_the_kernel_at_the_grid(tiny_store):
    config = tiny_store.config("plain")
    run = tiny_store.run("plain")
    resolved = config.resolved()
    assert list(run.distances) == [0, 1, 2, 4, 8, 16, 28]  # 32 would reach left of the buffer
    assert run.n_rows == 5 * 3 and run.arrays["pred_raw"].shape == (5, 3, 7)
    assert run.config == resolved
    from green_profiles.models.loading import load_model

    model, _ = load_model(config.model)
    window = 2
    ids = torch.from_numpy(run.arrays["window_ids"][window])
    for selection in ("true", "pred"):
        tokens = torch.from_numpy(run.arrays[f"{selection}_tokens"][window])
        full = logit_gradient_norms(model, ids[:-1], run.targets, tokens, min_source=8).numpy()
        at_grid = full[np.arange(3)[:, None], run.targets[:, None] - run.distances[None, :]]
        np.testing.assert_allclose(run.arrays[f"{selection}_raw"][window], at_grid, rtol=1e-5)
    np.testing.assert_array_equal(run.arrays["true_tokens"][window], run.arrays["window_ids"][window][run.targets + 1])
    normalized = run.normalized("pred")
    np.testing.assert_allclose(normalized[:, 0], 1.0)
    assert run.table.shape[0] == run.n_rows
    assert set(run.table["title"]) <= {"doc 0", "doc 1"}  # doc 2 is too short for a window
    assert run.table["pred_correct"].mean() == pytest.approx(run.top1_accuracy)
    metadata = json.loads((run.path / "metadata.json").read_text())
    assert metadata["config"] == resolved.to_dict() and metadata["dtype"] == "float32"
    assert metadata["environment"]["versions"]["torch"] == torch.__version__
    assert metadata["backward_rows_per_s"] > 0


def test_profile_fit_and_bootstrap_from_a_run(tiny_store):
    run = tiny_store.run("shuffled")
    profile = run.profile("true")
    assert list(profile.index) == list(run.distances) and profile.loc[0, "median"] == 1.0
    table = run.fit("pred")
    assert {fit.name for fit in table} == {"power", "power_floor", "exp_floor"}
    with pytest.warns(UserWarning, match="resamples windows instead of documents"):
        result = run.bootstrap("pred", n_boot=5)
    assert result.n_groups == 5  # two documents are too few to resample: whole windows, not rows


# --- statistics of a run, on synthetic arrays ------------------------------------------------


def test_the_bootstrap_resamples_documents_and_falls_back_to_windows_with_a_warning():
    run = synthetic_run([0, 0, 1, 2, 3, 3, 4, 5])
    unit, labels = run.resampling_unit()
    assert unit == "document" and labels.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5]
    assert run.bootstrap(n_boot=5).n_groups == 6
    assert run.resampling_unit("window")[1].tolist() == np.repeat(np.arange(8), 2).tolist()
    few = synthetic_run([0, 0, 1, 1, 1])
    with pytest.warns(UserWarning, match="resamples windows instead of documents"):
        assert few.resampling_unit()[0] == "window"
    with pytest.raises(ValueError, match="too few to resample"):
        few.resampling_unit("document")


def test_source_profile_pools_rows_by_source_index_whatever_the_targets():
    run = synthetic_run([0, 1, 2], targets=(10, 12), distances=(0, 2, 4))
    table = source_profile(run)
    # Sources: target 10 -> 8, 6; target 12 -> 10, 8. Source 8 pools both targets' entries.
    assert table.index.tolist() == [6, 8, 10] and table["count"].tolist() == [3, 6, 3]
    normalized = run.normalized("pred")
    expected_8 = np.median(np.concatenate([normalized[0::2, 1], normalized[1::2, 2]]))
    assert table.loc[8, "median"] == pytest.approx(expected_8)


def test_left_boundary_table_bands_sources_by_index():
    run = synthetic_run([0, 1, 2, 3], targets=(15,), distances=tuple(range(16)))
    bands = left_boundary_table(run, buffer=6, edge=2)
    per_source = source_profile(run)["median"]
    assert bands.iloc[0] == pytest.approx(np.median(per_source.loc[0:1]))
    assert bands.iloc[1] == pytest.approx(np.median(per_source.loc[2:5]))
    assert bands.iloc[2] == pytest.approx(np.median(per_source.loc[6:14]))
    assert bands.iloc[0] < bands.iloc[2]  # the first sources are the farthest: no hook in a pure decay
