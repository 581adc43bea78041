"""Profile statistics (:mod:`green_profiles.analysis.profiles`): aggregates of rows, a stored tiny run's rows,
profiles, fits and bootstrap, and the statistics of a run on synthetic arrays.

The configuration is tested in test_configuration.py; whole runs through the store (cache hits, resuming,
damage) in test_store.py; the command line in test_cli.py."""

from __future__ import annotations

import dataclasses
import hashlib
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


def _same_partition(labels: np.ndarray, expected: list[int]) -> bool:
    """Whether ``labels`` group the rows exactly as ``expected`` does (whatever the labels are)."""
    first = {}
    return [first.setdefault(label, len(first)) for label in labels.tolist()] == \
        [dict(zip(dict.fromkeys(expected), range(len(expected)))).get(e) for e in expected]


def test_the_bootstrap_resamples_documents_and_falls_back_to_windows_with_a_warning():
    run = synthetic_run([0, 0, 1, 2, 3, 3, 4, 5])
    unit, labels = run.resampling_unit()
    assert unit == "document" and _same_partition(labels, [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5])
    assert run.bootstrap(n_boot=5).n_groups == 6
    assert _same_partition(run.resampling_unit("window")[1], np.repeat(np.arange(8), 2).tolist())
    few = synthetic_run([0, 0, 1, 1, 1])
    with pytest.warns(UserWarning, match="resamples windows instead of documents"):
        assert few.resampling_unit()[0] == "window"
    with pytest.raises(ValueError, match="too few to resample"):
        few.resampling_unit("document")


def _over(run, corpus_sha256: str):
    """``run`` as if measured on the corpus with checksum ``corpus_sha256`` (what the store's provenance records)."""
    return dataclasses.replace(run, metadata={**run.metadata, "provenance": {"corpus_sha256": corpus_sha256}})


def test_document_labels_are_the_identity_of_the_text_not_its_index():
    run = _over(synthetic_run([0, 0, 1, 2, 3, 3, 4, 5]), "ab" * 32)
    _, labels = run.resampling_unit()
    # The scheme is pinned: a change would redraw every document bootstrap.
    record = "\0".join(["green_profiles.document_identity/1", f"sha256:{'ab' * 32}", "3"])
    expected = hashlib.sha256(record.encode()).hexdigest()[:16]
    assert labels[8] == expected == run.document_identity[4]  # window 4 (rows 8, 9) is document 3
    assert labels.dtype.kind == "U" and all(len(label) == 16 for label in labels.tolist())
    other = _over(synthetic_run([0, 0, 1, 2, 3, 3, 4, 5]), "cd" * 32)
    assert set(other.resampling_unit()[1].tolist()).isdisjoint(labels.tolist())  # another corpus: other texts
    in_memory = synthetic_run([0, 0, 1, 2, 3, 3, 4, 5])  # no provenance: the corpus' name stands in
    assert _same_partition(in_memory.resampling_unit()[1], [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5])


def test_runs_over_the_same_texts_pair_and_runs_over_other_texts_do_not():
    """Pairing is keyed on the text, not on the labels' spelling: two runs over the same documents of one corpus
    (another model, more windows, another order) pair; two runs whose documents carry the same indices in
    different corpora resample different text and do not (the index labels paired them)."""
    from green_profiles.analysis.fits import paired_difference

    documents = [0, 0, 1, 2, 3, 3, 4, 5]
    first = _over(synthetic_run(documents, seed=0), "ab" * 32)
    same_texts = _over(synthetic_run([5, 4, 3, 2, 1, 0, 0, 3, 4, 5], seed=1), "ab" * 32)
    other_texts = _over(synthetic_run(documents, seed=1), "cd" * 32)
    a, b, c = (run.bootstrap(n_boot=30, n_sim=0) for run in (first, same_texts, other_texts))
    assert a.groups == b.groups and paired_difference(a, b, "p_power").paired
    assert a.groups != c.groups and not paired_difference(a, c, "p_power").paired


def test_window_labels_keep_windows_drawn_twice_apart():
    run = _over(synthetic_run([0, 0, 1, 2, 3, 3, 4, 5]), "ab" * 32)  # every window starts at 0: 0 and 0 repeat
    windows = run.window_identity
    assert len(set(windows.tolist())) == 8
    again = _over(synthetic_run([0, 0, 1, 2, 3, 3, 4, 5], seed=3), "ab" * 32)
    assert again.window_identity.tolist() == windows.tolist()  # the same draws of the same text: the same labels
    assert set(_over(run, "cd" * 32).window_identity.tolist()).isdisjoint(windows.tolist())


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
