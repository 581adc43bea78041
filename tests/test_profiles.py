"""The run store and the profile statistics, on a tiny random model saved as a local directory."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import green_profiles.kernel.jacobian as jacobian
from conftest import TINY_CONTEXT as CONTEXT
from conftest import tiny_config
from green_profiles.kernel.jacobian import logit_gradient_norms
from green_profiles.runs.configuration import PAPER_DISTANCES, PRESETS, RunConfig
from green_profiles.analysis.profiles import run_profile
from green_profiles.analysis.profiles import ProfileRun, aggregate_rows, left_boundary_table, load_run, source_profile
from green_profiles.runs.provenance import settings_key

def forbid_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the kernel ran, but the run should have come from the store")

    monkeypatch.setattr(jacobian, "protocol_gradient_norms", refuse)


def visible(store: Path) -> list[str]:
    """The store's entries other than its lock files."""
    return sorted(p.name for p in store.iterdir() if p.name != ".locks")


def assert_same_arrays(a, b) -> None:
    assert sorted(a.arrays) == sorted(b.arrays)
    for name in a.arrays:
        np.testing.assert_array_equal(a.arrays[name], b.arrays[name], err_msg=name)


# --- configuration -------------------------------------------------------------------------


def test_defaults_at_2048_are_the_papers_pythia_settings():
    scaled = RunConfig(model="pythia-14m", corpus="paper-gutenberg", seq_len=2048, n_windows=1024, seed=1234,
                       sampler="authors", dtype="checkpoint").resolved()
    assert scaled == PRESETS["pythia"].resolved()
    assert (scaled.target_min, scaled.target_max, scaled.target_stride, scaled.source_min_index) == (1920, 2040, 8, 384)
    assert len(scaled.targets) == 16
    assert scaled.distances == PAPER_DISTANCES[:-1]  # 2048 would put a source left of 384
    qwen = PRESETS["qwen"].resolved()
    assert qwen.distances == PAPER_DISTANCES and len(qwen.targets) == 16
    assert (qwen.seq_len, qwen.target_min, qwen.target_max, qwen.target_stride, qwen.source_min_index) == (
        4096, 3584, 4064, 32, 1536)
    assert all(p.corpus == "paper-gutenberg" and p.sampler == "authors" and p.seed == 1234 for p in PRESETS.values())


def test_equivalent_target_ranges_share_a_key():
    stop_at_last = RunConfig(seq_len=512, target_min=480, target_max=504, target_stride=8)
    stop_at_end = RunConfig(seq_len=512, target_stride=8)
    assert stop_at_end.resolved().target_max == 504
    assert settings_key(stop_at_last, "cpu") == settings_key(stop_at_end, "cpu")
    np.testing.assert_array_equal(stop_at_end.targets, [480, 488, 496, 504])


def test_distances_violating_the_buffer_are_dropped_and_zero_kept():
    config = RunConfig(seq_len=512, target_min=480, source_min_index=96, distances=(5, 384, 385, 1000)).resolved()
    assert config.distances == (0, 5, 384)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seq_len": 1}, "seq_len"),
        ({"n_windows": 0}, "n_windows"),
        ({"shuffle": "words"}, "shuffle"),
        ({"sampler": "random"}, "sampler"),
        ({"target_max": 512}, "targets"),
        ({"target_min": 500, "target_max": 400}, "targets"),
        ({"source_min_index": 500, "target_min": 480}, "source_min_index"),
        ({"distances": (0, 400), "target_min": 480, "source_min_index": 96}, "no distance"),
        ({"distances": (-1, 3)}, "non-negative"),
    ],
)
def test_bad_configurations_say_what_is_wrong(changes, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**({"seq_len": 512} | changes)).resolved()


def test_key_depends_on_what_changes_results_only():
    config = RunConfig()
    assert settings_key(config, "cpu") == settings_key(dataclasses.replace(config, dtype="float32"), "cpu")
    assert settings_key(config, "cpu") == settings_key(config.resolved(), "cpu")
    assert settings_key(config, "cpu") != settings_key(dataclasses.replace(config, seed=1), "cpu")
    assert settings_key(config, "cpu") != settings_key(dataclasses.replace(config, dtype="bfloat16"), "cpu")
    assert RunConfig.from_dict(config.resolved().to_dict()) == config.resolved()


# --- statistics ----------------------------------------------------------------------------


def test_aggregates_ignore_nan_zero_and_negative_values():
    rows = np.array([[1.0, 0.5, np.nan],
                     [1.0, 0.1, 0.0],
                     [1.0, 0.3, -2.0],
                     [1.0, np.inf, np.nan]])
    table = aggregate_rows(rows, [0, 1, 2])
    assert table["count"].tolist() == [4, 3, 0]
    assert table.loc[1, "median"] == pytest.approx(0.3)
    assert table.loc[1, "mean"] == pytest.approx(0.3)
    assert np.isnan(table.loc[2, "median"]) and np.isnan(table.loc[2, "q90"])


def test_aggregates_match_numpy_on_random_rows():
    rng = np.random.default_rng(3)
    rows = rng.lognormal(size=(101, 4))
    table = aggregate_rows(rows, [0, 1, 2, 3])
    np.testing.assert_allclose(table["median"], np.median(rows, axis=0))
    np.testing.assert_allclose(table["q25"], np.quantile(rows, 0.25, axis=0))
    ordered = np.sort(rows, axis=0)[10:-10]  # 10% of 101 rounds down to 10 from each end
    np.testing.assert_allclose(table["trimmed_mean"], ordered.mean(axis=0))


# --- the run store -------------------------------------------------------------------------


def test_run_rows_are_the_kernel_at_the_grid(tiny_setup, tmp_path):
    config = tiny_config(tiny_setup)
    run = run_profile(config, data_dir=tmp_path, progress=False)
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


def test_identical_configuration_is_a_cache_hit(tiny_setup, tmp_path, monkeypatch):
    config = tiny_config(tiny_setup)
    first = run_profile(config, data_dir=tmp_path, progress=False)
    forbid_kernel(monkeypatch)
    second = run_profile(dataclasses.replace(config, dtype="float32"), data_dir=tmp_path, progress=False)
    assert second.key == first.key
    assert_same_arrays(first, second)
    assert [p.name for p in (tmp_path / "runs").iterdir() if p.name != ".locks"] == [first.key]  # nothing half-written


def test_interrupted_run_resumes_to_the_same_arrays(tiny_setup, tmp_path, monkeypatch):
    config = tiny_config(tiny_setup, n_windows=6)
    reference = run_profile(config, data_dir=tmp_path / "uninterrupted", progress=False)

    real = jacobian.protocol_gradient_norms
    calls: list[int] = []

    def interrupt_after_two(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(jacobian, "protocol_gradient_norms", interrupt_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_profile(config, data_dir=tmp_path / "interrupted", progress=False)
    store = tmp_path / "interrupted" / "runs"
    assert visible(store) == [f"{reference.key}.partial"]  # no final directory yet

    calls.clear()
    monkeypatch.setattr(jacobian, "protocol_gradient_norms", lambda *a, **k: calls.append(1) or real(*a, **k))
    resumed = run_profile(config, data_dir=tmp_path / "interrupted", progress=False)
    assert len(calls) == 4  # only the windows not done before
    assert resumed.metadata["n_windows_resumed"] == 2
    assert_same_arrays(reference, resumed)
    assert visible(store) == [reference.key]


@pytest.mark.parametrize("damage", ["flip_byte", "drop_metadata", "drop_rows"])
def test_corrupt_run_is_detected_and_measured_again(tiny_setup, tmp_path, damage):
    config = tiny_config(tiny_setup)
    first = run_profile(config, data_dir=tmp_path, progress=False)
    if damage == "flip_byte":
        data = bytearray((first.path / "profiles.npz").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (first.path / "profiles.npz").write_bytes(bytes(data))
    elif damage == "drop_metadata":
        (first.path / "metadata.json").unlink()
    else:
        (first.path / "rows.csv").unlink()
    with pytest.warns(UserWarning, match="measuring it again"):
        again = run_profile(config, data_dir=tmp_path, progress=False)
    assert_same_arrays(first, again)
    load_run(again.path)  # valid again


def test_unreadable_partial_part_is_ignored(tiny_setup, tmp_path):
    config = tiny_config(tiny_setup)
    key = run_profile(config, data_dir=tmp_path / "elsewhere", progress=False).key  # the same key in any store
    partial = tmp_path / "runs" / f"{key}.partial"
    partial.mkdir(parents=True)
    (partial / "part-000000-000002.npz").write_bytes(b"not an archive")
    with pytest.warns(UserWarning, match="ignoring"):
        run = run_profile(config, data_dir=tmp_path, progress=False)
    assert run.metadata["n_windows_resumed"] == 0
    assert not partial.exists()


def test_window_longer_than_the_context_is_refused(tiny_setup, tmp_path):
    with pytest.raises(ValueError, match="context"):
        run_profile(tiny_config(tiny_setup, seq_len=CONTEXT + 1), data_dir=tmp_path, progress=False)


def test_corpus_too_short_for_the_window_says_so(tiny_setup, tmp_path):
    model_dir, _ = tiny_setup
    short = tmp_path / "short.txt"
    short.write_text("the sea " * 10)
    with pytest.raises(ValueError, match="long enough"):
        run_profile(tiny_config(tiny_setup, corpus=str(short)), data_dir=tmp_path, progress=False)


def test_profile_fit_and_bootstrap_from_a_run(tiny_setup, tmp_path):
    run = run_profile(tiny_config(tiny_setup, shuffle="window"), data_dir=tmp_path, progress=False)
    profile = run.profile("true")
    assert list(profile.index) == list(run.distances) and profile.loc[0, "median"] == 1.0
    table = run.fit("pred")
    assert {fit.name for fit in table} == {"power", "power_floor", "exp_floor"}
    with pytest.warns(UserWarning, match="resamples windows instead of documents"):
        result = run.bootstrap("pred", n_boot=5)
    assert result.n_groups == 5  # two documents are too few to resample: whole windows, not rows


# --- the command line ----------------------------------------------------------------------


def test_cli_runs_end_to_end_and_prints_the_fits(tiny_setup, tmp_path):
    model_dir, corpus = tiny_setup
    command = [sys.executable, "-m", "green_profiles", "--data-dir", str(tmp_path), "run", "--model", str(model_dir),
               "--corpus", str(corpus), "--seq-len", "48", "--n-windows", "4", "--target-min", "36",
               "--target-stride", "4", "--source-min-index", "8", "--distances", "0,1,2,4,8,16,28",
               "--bootstrap", "20", "--no-progress"]
    environment = os.environ | {"TRANSFORMERS_VERBOSITY": "error"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr
    for expected in ("[pred] fits over r >= 1", "[true] fits over r >= 1", "power_floor", "exp_floor",
                     "window bootstrap, 20 replicates, 4 windows", "stored in"):
        assert expected in result.stdout
    listing = subprocess.run([sys.executable, "-m", "green_profiles", "--data-dir", str(tmp_path), "list"],
                             capture_output=True, text=True, env=environment, timeout=120)
    assert str(model_dir) in listing.stdout and " 12 " in listing.stdout and "float32" in listing.stdout

    bad = subprocess.run(command[:-1] + ["--seq-len", "4096"], capture_output=True, text=True, env=environment,
                         timeout=300)
    assert bad.returncode == 2 and "error:" in bad.stderr


# --- statistics of a run, on synthetic arrays ------------------------------------------------


def synthetic_run(documents: list[int], targets=(10, 12), distances=(0, 1, 2, 4, 8), seed=0) -> ProfileRun:
    """A run of ``len(documents)`` windows with log-normal norms decaying like (r+1)^-1."""
    rng = np.random.default_rng(seed)
    n, t, r = len(documents), len(targets), np.asarray(distances)
    raw = (r + 1.0) ** -1.0 * rng.lognormal(sigma=0.3, size=(n, t, len(r)))
    arrays = {"distances": r, "targets": np.asarray(targets), "window_ids": np.zeros((n, 20), dtype=np.int64),
              "document": np.asarray(documents), "start": np.zeros(n, dtype=np.int64), "pred_raw": raw,
              "true_raw": raw, "pred_tokens": np.zeros((n, t)), "true_tokens": np.zeros((n, t)),
              "true_log_probs": np.zeros((n, t))}
    config = RunConfig(seq_len=20, target_min=targets[0], target_max=targets[-1], source_min_index=0,
                       distances=tuple(distances))
    return ProfileRun(config=config, key="synthetic", path=None, arrays=arrays, table=None, metadata={})


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
