"""Run configurations (:mod:`green_profiles.runs.configuration`): the paper's presets, resolving targets and
distances, what is refused and why, and which fields change a run's key."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from green_profiles.runs.configuration import PAPER_DISTANCES, PRESETS, QWEN_DISTANCES, RunConfig
from green_profiles.runs.provenance import settings_key


def test_defaults_at_2048_are_the_papers_pythia_settings():
    scaled = RunConfig(model="pythia-14m", corpus="paper-gutenberg", seq_len=2048, n_windows=1024, seed=1234,
                       sampler="authors", dtype="checkpoint").resolved()
    assert scaled == PRESETS["pythia"].resolved()
    assert (scaled.target_min, scaled.target_max, scaled.target_stride, scaled.source_min_index) == (1920, 2040, 8, 384)
    assert len(scaled.targets) == 16
    assert scaled.distances == PAPER_DISTANCES[:-1]  # 2048 would put a source left of 384
    qwen = PRESETS["qwen"].resolved()
    # The Qwen run's own published grid: ...,1024,1536,2048, without the 1280 of the Pythia grid.
    assert qwen.distances == QWEN_DISTANCES and 1280 not in qwen.distances and qwen.distances[-1] == 2048
    assert len(qwen.targets) == 16
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
