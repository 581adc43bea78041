"""Settings profiles and parameter checks of the notebook runner (the execution itself runs in `make test`'s smoke book)."""

from __future__ import annotations

from pathlib import Path

import papermill
import pytest
import yaml

from green_profiles.book import execute_notebook, profile_parameters

NOTEBOOKS = ("coherent_text", "shuffled_tokens", "random_init", "model_sweep")
PROFILES = Path("notebooks/profiles.yml")


def test_profile_merges_shared_and_notebook_settings():
    paper = profile_parameters("model_sweep", "paper")
    assert paper["seq_len"] == 2048 and paper["n_windows"] == 1024
    assert paper["models"][0] == "pythia-14m" and "qwen2.5-0.5b" in paper["models"]
    assert profile_parameters("random_init", "smoke")["hook_windows"] == 2
    assert "hook_windows" not in profile_parameters("coherent_text", "smoke")


def test_every_profile_setting_is_a_declared_notebook_parameter():
    profiles = yaml.safe_load(PROFILES.read_text())
    declared = {name: set(papermill.inspect_notebook(f"notebooks/{name}.ipynb")) for name in NOTEBOOKS}
    anywhere = set().union(*declared.values())
    for profile, sections in profiles.items():
        for section, settings in sections.items():
            # A shared setting reaches the notebooks that declare it; a notebook's own must all be declared.
            known = anywhere if section == "all" else declared[section]
            assert set(settings) <= known, f"{profile}/{section}: {set(settings) - known} are not parameters"
    assert set(declared["coherent_text"]) >= {"seq_len", "n_windows", "target_stride", "source_min_index",
                                              "distances", "dtype", "device", "seed", "model", "corpora"}


def test_unknown_profile_and_parameter_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        profile_parameters("coherent_text", "fast")
    with pytest.raises(ValueError, match="has no parameter window_length"):
        execute_notebook("coherent_text", overrides={"window_length": 1024}, output_dir=tmp_path)
    with pytest.raises(ValueError, match="no notebook"):
        execute_notebook("nonexistent", output_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written
