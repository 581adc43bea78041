"""Settings profiles and parameter checks of the notebook runner (the execution itself runs in `make test`'s smoke book);
the experiments' registry against the notebooks, the settings and the table of contents."""

from __future__ import annotations

import json
import os
import re
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
from green_profiles.runs.experiments import (
    EXPERIMENTS,
    SHARED_PARAMETERS,
    experiment_parameters,
    project_root,
    settings_parameters,
    settings_path,
)

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ROOT / "notebooks" / "settings.yml"


def test_settings_merge_shared_and_notebook_sections():
    paper = settings_parameters("model_sweep", "paper")
    assert paper["published"] is True and paper["n_windows"] == 1024 and paper["dtype"] == "checkpoint"
    assert paper["models"] == ["pythia-14m", "pythia-70m", "pythia-160m", "pythia-410m", "qwen2.5-0.5b"]
    assert settings_parameters("random_init", "smoke")["hook_windows"] == 2
    assert "hook_windows" not in settings_parameters("coherent_text", "smoke")


def test_every_setting_is_a_declared_parameter():
    named = yaml.safe_load(SETTINGS.read_text())
    declared = {name: set(experiment.defaults()) for name, experiment in EXPERIMENTS.items()}
    anywhere = set().union(*declared.values())
    for name, sections in named.items():
        for section, settings in sections.items():
            # A shared setting reaches the experiments that declare it; an experiment's own must all be declared.
            known = anywhere if section == "all" else declared[section]
            assert set(settings) <= known, f"{name}/{section}: {set(settings) - known} are not parameters"
    assert set(declared["coherent_text"]) >= {"seq_len", "n_windows", "target_stride", "source_min_index",
                                              "distances", "dtype", "device", "seed", "models", "corpora",
                                              "published", "targets_per_window", "sampler", "split"}
    assert all(set(SHARED_PARAMETERS) <= names for names in declared.values())


def test_the_registry_lists_every_notebook_and_the_books_experiment_pages():
    """One notebook per experiment and one experiment per notebook; the table of contents shows them all in the
    registry's order; each notebook's parameters cell holds only what papermill sets, and the notebook takes
    its parameters and its runs from the registry."""
    assert sorted(EXPERIMENTS) == sorted(path.stem for path in (ROOT / "notebooks").glob("*.ipynb"))
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [chapter["file"] for part in toc["parts"] for chapter in part["chapters"]
             if chapter["file"].startswith("book/experiments/")]
    assert pages == [f"book/experiments/{name}" for name in EXPERIMENTS]
    for name in EXPERIMENTS:
        path = ROOT / "notebooks" / f"{name}.ipynb"
        assert set(papermill.inspect_notebook(str(path))) == {"settings", "overrides", "settings_file"}
        code = "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text())["cells"]
                         if cell["cell_type"] == "code")
        assert f'experiment_parameters("{name}", settings, overrides, settings_file=settings_file)' in code
        assert f'notebook_runs("{name}", parameters)' in code


def test_parameters_are_defaults_then_settings_then_overrides():
    assert experiment_parameters("random_init", "default") == EXPERIMENTS["random_init"].defaults() | {
        "seq_len": 512, "n_windows": 16, "target_stride": 8, "n_boot": 2000}
    smoke = experiment_parameters("random_init", "smoke", {"seq_len": 256})
    assert (smoke["seq_len"], smoke["n_windows"], smoke["hook_windows"], smoke["corpus"]) == (256, 6, 2, "gutenberg")
    # `all` gives an experiment only the parameters it declares.
    assert "models" not in experiment_parameters("training_dynamics", "paper")
    # A fresh copy each time: a notebook changing a list changes no default.
    experiment_parameters("coherent_text", "default")["models"].append("x")
    assert EXPERIMENTS["coherent_text"].defaults()["models"] == ["smollm2-135m"]
    with pytest.raises(ValueError, match="coherent_text has no parameter window_length"):
        experiment_parameters("coherent_text", "default", {"window_length": 1024})
    with pytest.raises(ValueError, match="unknown notebook 'nothing'"):
        experiment_parameters("nothing", "default")


def test_the_settings_are_found_from_the_project_root_wherever_the_command_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT / "book")
    assert project_root() == ROOT and settings_path() == SETTINGS
    monkeypatch.chdir(tmp_path)  # outside the project: the checkout the package is loaded from
    assert project_root() == ROOT
    other = tmp_path / "other"
    (other / "notebooks").mkdir(parents=True)
    (other / "notebooks" / "settings.yml").write_text("mine: {all: {seq_len: 64}}\n")
    (other / "_toc.yml").write_text("")
    monkeypatch.chdir(other / "notebooks")
    assert project_root() == other
    assert experiment_parameters("depth", "mine")["seq_len"] == 64
    assert experiment_parameters("depth", "smoke", settings_file=SETTINGS)["n_windows"] == 2
    with pytest.raises(FileNotFoundError, match="no settings file"):
        settings_path(tmp_path / "missing.yml")


def test_no_project_root_is_an_error_naming_where_it_looked(tmp_path, monkeypatch):
    import green_profiles.runs.experiments as experiments

    monkeypatch.setattr(experiments, "_CHECKOUT", tmp_path / "installed")
    searched = f"searched {tmp_path} and its parents, and {tmp_path / 'installed'}"
    with pytest.raises(FileNotFoundError, match=re.escape(searched)):
        project_root(tmp_path)


def test_unknown_settings_and_parameter_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown settings 'fast'"):
        settings_parameters("coherent_text", "fast")
    with pytest.raises(ValueError, match="has no parameter window_length"):
        execute_notebook("coherent_text", overrides={"window_length": 1024}, output_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown notebook 'nonexistent'"):
        execute_notebook("nonexistent", output_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown settings 'fast'"):
        execute_notebook("coherent_text", settings="fast", output_dir=tmp_path)
    with pytest.raises(ValueError, match="no notebook .*depth.ipynb"):
        execute_notebook("depth", source_dir=tmp_path, output_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_kernel_measures_into_the_callers_data_directory(tmp_path, monkeypatch):
    """The kernel runs in the notebooks' folder: a relative data directory must still mean the caller's
    (the bug: `green-profiles notebook` from the root filled a second store in notebooks/data)."""
    import nbformat

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                 "display_name": "Python 3"}})
    notebook.cells = [
        nbformat.v4.new_code_cell('settings = "default"\noverrides = {}', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("from green_profiles.files.locations import default_data_dir\n"
                                  "print(default_data_dir().resolve())"),
    ]
    nbformat.write(notebook, notebooks / "depth.ipynb")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GREEN_PROFILES_DATA", raising=False)
    executed = execute_notebook("depth", source_dir=notebooks, output_dir=tmp_path / "out", log_output=False)
    printed = nbformat.read(executed, as_version=4).cells[-1].outputs[0]["text"].strip()
    assert printed == str(tmp_path / "data")
    assert "GREEN_PROFILES_DATA" not in os.environ  # restored after the run


def test_role_labels_name_the_model_only_when_several_are_measured():
    assert role_label(("smollm2-135m", "gutenberg"), ["smollm2-135m"]) == "gutenberg"
    assert role_label(("pythia-14m", "wikitext-103"), ["pythia-14m", "qwen2.5-0.5b"]) == "pythia-14m · wikitext-103"


def test_exponents_are_placed_against_the_papers_band_by_a_test():
    """compare_with_paper (the notebooks' import) reads the band with the equivalence test: a point estimate in
    0.7–0.9 with an interval wider than the band is inconclusive (the old reading said "within")."""
    import numpy as np

    from green_profiles.analysis.fits import bootstrap_fits

    rng = np.random.default_rng(0)
    r = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256], dtype=float)
    group = np.repeat(np.arange(16), 4)

    def result(spread: float, scale: float = 1.0, flat: bool = False):
        slopes = np.repeat(0.8 + rng.normal(0.0, spread, 16), 4)
        rows = (r + 1.0)[None, :] ** (-0.0 if flat else -scale * slopes[:, None])
        rows = rows * np.exp(rng.normal(0.0, 0.05, (64, r.size)))
        return bootstrap_fits(r, rows, n_boot=300, seed=0, group=group, n_sim=0)

    wide = result(0.3)
    assert 0.7 <= wide.point_estimates["p_power_floor"] <= 0.9  # "within" by the old reading
    assert compare_with_paper(wide).startswith("inconclusive: 90% interval [")
    assert compare_with_paper(wide).endswith("(the interval is wider than the band)")
    assert compare_with_paper(result(0.02)).startswith("inside the paper's band (equivalence test: 90% interval")
    assert compare_with_paper(result(0.02, scale=2.0)).startswith("outside the paper's band (95% interval [")
    assert compare_with_paper(result(0.02, flat=True)).startswith("no exponent (flat")


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
    rising = flat | {"label": "random init · true", "verdict_word": "rising"}
    table = summary_table([record, flat, rising])
    row = table.loc["gutenberg · pred"]
    assert row["p [95% CI]"] == "1.09 [0.90, 1.29]"
    assert row["gap exp − power, descriptive [95% CI]"] == "+0.100 [+0.006, +0.146]"
    assert (row["top-1 acc."], row["verdict"]) == ("28.1%", "power law")
    assert table.loc["random init · pred", "p [95% CI]"] == "flat — no decay"
    assert table.loc["random init · pred", "verdict"] == "flat"
    assert table.loc["random init · true", "p [95% CI]"] == "rising — no decay"
    assert verdict_list([record]) == "- **gutenberg · pred**: power law: p = 1.093 ..."


def test_resampling_comparison_shows_both_units_and_says_when_documents_are_too_few():
    from support import synthetic_run

    table = resampling_comparison({"many": synthetic_run([0, 1, 2, 3, 4, 5, 5, 6]),
                                   "few": synthetic_run([0, 0, 1, 1])}, n_boot=20)
    assert table.index.tolist() == [("many", "8 windows"), ("many", "7 documents"), ("few", "4 windows"),
                                    ("few", "2 documents")]
    assert table.loc[("few", "2 documents"), "p [95% CI]"] == "too few documents"
    assert table.loc[("many", "7 documents"), "p [95% CI]"].count("[") == 1
