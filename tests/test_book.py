"""Settings profiles and parameter checks of the notebook runner (the execution itself runs in `make test`'s smoke book)."""

from __future__ import annotations

from pathlib import Path

import papermill
import pytest
import yaml

from green_profiles.report.book import (
    compare_exponents,
    compare_with_paper,
    corpus_family,
    resampling_comparison,
    role_label,
    summary_table,
    verdict_list,
)
from green_profiles.runs.configuration import RunConfig
from green_profiles.report.execution import execute_notebook
from green_profiles.runs.experiments import settings_parameters

NOTEBOOKS = ("coherent_text", "shuffled_tokens", "random_init", "model_sweep", "text_statistics", "depth",
             "training_dynamics")
SETTINGS = Path("notebooks/settings.yml")


def test_settings_merge_shared_and_notebook_sections():
    paper = settings_parameters("model_sweep", "paper")
    assert paper["published"] is True and paper["n_windows"] == 1024 and paper["dtype"] == "checkpoint"
    assert paper["models"] == ["pythia-14m", "pythia-70m", "pythia-160m", "pythia-410m", "qwen2.5-0.5b"]
    assert settings_parameters("random_init", "smoke")["hook_windows"] == 2
    assert "hook_windows" not in settings_parameters("coherent_text", "smoke")


def test_every_setting_is_a_declared_notebook_parameter():
    named = yaml.safe_load(SETTINGS.read_text())
    declared = {name: set(papermill.inspect_notebook(f"notebooks/{name}.ipynb")) for name in NOTEBOOKS}
    anywhere = set().union(*declared.values())
    for name, sections in named.items():
        for section, settings in sections.items():
            # A shared setting reaches the notebooks that declare it; a notebook's own must all be declared.
            known = anywhere if section == "all" else declared[section]
            assert set(settings) <= known, f"{name}/{section}: {set(settings) - known} are not parameters"
    assert set(declared["coherent_text"]) >= {"seq_len", "n_windows", "target_stride", "source_min_index",
                                              "distances", "dtype", "device", "seed", "models", "corpora",
                                              "published", "targets_per_window", "sampler", "split"}


def test_unknown_settings_and_parameter_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown settings 'fast'"):
        settings_parameters("coherent_text", "fast")
    with pytest.raises(ValueError, match="has no parameter window_length"):
        execute_notebook("coherent_text", overrides={"window_length": 1024}, output_dir=tmp_path)
    with pytest.raises(ValueError, match="no notebook"):
        execute_notebook("nonexistent", output_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_role_labels_name_the_model_only_when_several_are_measured():
    assert role_label(("smollm2-135m", "gutenberg"), ["smollm2-135m"]) == "gutenberg"
    assert role_label(("pythia-14m", "wikitext-103"), ["pythia-14m", "qwen2.5-0.5b"]) == "pythia-14m · wikitext-103"


@pytest.mark.parametrize(("p", "low", "high", "expected"), [
    (0.8, 0.6, 1.0, "within the paper's range"),
    (0.95, 0.85, 1.1, "interval overlaps the paper's range"),
    (0.65, 0.5, 0.72, "interval overlaps the paper's range"),
    (1.2, 0.91, 1.5, "steeper than the paper's range"),
    (0.4, 0.3, 0.69, "shallower than the paper's range"),
    (float("nan"), 0.3, 0.69, "no estimate"),
])
def test_exponents_are_placed_against_the_papers_range(p, low, high, expected):
    assert compare_with_paper(p, low, high) == expected


def test_exponents_are_compared_by_their_intervals():
    text = {"p": 2.4, "p_low": 2.3, "p_high": 2.5}
    assert compare_exponents(text, {"p": 1.0, "p_low": 0.9, "p_high": 1.2}) == "steeper"
    assert compare_exponents({"p": 0.5, "p_low": 0.4, "p_high": 0.6}, text) == "shallower"
    assert compare_exponents(text, {"p": 2.0, "p_low": 1.5, "p_high": 2.35}) == "intervals overlap"
    assert compare_exponents(text, {"p": float("nan"), "p_low": 1.0, "p_high": 2.0}).startswith("no comparison")


def test_summary_rows_of_hub_and_offline_corpora_coincide():
    assert corpus_family("pg19") == corpus_family("gutenberg") == "gutenberg"
    assert corpus_family("wikitext-103") == corpus_family("wikipedia") == "wikipedia"
    assert corpus_family("my_notes.txt") == "my_notes.txt"


def test_summary_table_writes_intervals_next_to_estimates():
    record = {"label": "gutenberg · pred", "rows": 64, "top1_accuracy": 0.28125, "mean_loss": 3.314,
              "best_model": "power_floor", "p": 1.093, "p_low": 0.901, "p_high": 1.29, "rmse_gap": 0.1,
              "rmse_gap_low": 0.006, "rmse_gap_high": 0.146, "verdict_word": "power law",
              "verdict": "power law: p = 1.093 ..."}
    flat = record | {"label": "random init · pred", "p": float("nan"), "p_low": float("nan"),
                     "p_high": float("nan"), "rmse_gap": float("nan"), "verdict_word": "flat"}
    table = summary_table([record, flat])
    row = table.loc["gutenberg · pred"]
    assert row["p [95% CI]"] == "1.09 [0.90, 1.29]"
    assert row["gap exp − power [95% CI]"] == "+0.100 [+0.006, +0.146]"
    assert (row["top-1 acc."], row["verdict"]) == ("28.1%", "power law")
    assert table.loc["random init · pred", "p [95% CI]"] == "flat — no decay"
    assert table.loc["random init · pred", "verdict"] == "flat"
    assert verdict_list([record]) == "- **gutenberg · pred**: power law: p = 1.093 ..."


def test_resampling_comparison_shows_both_units_and_says_when_documents_are_too_few():
    from test_profiles import synthetic_run

    table = resampling_comparison({"many": synthetic_run([0, 1, 2, 3, 4, 5, 5, 6]),
                                   "few": synthetic_run([0, 0, 1, 1])}, n_boot=20)
    assert table.index.tolist() == [("many", "8 windows"), ("many", "7 documents"), ("few", "4 windows"),
                                    ("few", "2 documents")]
    assert table.loc[("few", "2 documents"), "p [95% CI]"] == "too few documents"
    assert table.loc[("many", "7 documents"), "p [95% CI]"].count("[") == 1
