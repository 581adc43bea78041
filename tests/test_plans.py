"""What named settings measure (the plan), exactly, and how the plan sees the store and this machine."""

from __future__ import annotations

import json
import warnings
from collections import Counter

import pytest
from support import tiny_config

from green_profiles.cli import main
from green_profiles.runs.configuration import PAPER_DISTANCES, QWEN_DISTANCES, RunConfig
from green_profiles.text import CorpusUnavailableError
from green_profiles.runs.experiments import experiment_parameters
from green_profiles.analysis.profiles import run_profile
from green_profiles.runs.plans import describe_plan, notebook_runs, settings_plan


def by_settings(plan):
    """The ordinary runs of a plan by (model, corpus, shuffle, windows); the depth page's per-layer runs apart."""
    return {(p.config.model, p.config.corpus, p.config.shuffle, p.config.n_windows): p for p in ordinary(plan)}


def ordinary(plan):
    return [p for p in plan if not p.config.per_layer]


# The notebooks of the paper's experiments (training_dynamics adds our trained family and Pythia's training steps).
PAPER_NOTEBOOKS = ("coherent_text", "shuffled_tokens", "random_init", "model_sweep", "text_statistics")


def without_shading(plan):
    """The plan less coherent_text's three small runs with whole rows (shown as shaded text)."""
    shading = [p for p in plan if p.config.full_rows]
    model = min((p.config.model for p in shading), key=len)
    assert sorted((p.config.model, p.config.shuffle) for p in shading) == [
        (model, "none"), (model, "window"), (f"{model}@random", "none")]
    assert all(p.notebooks == ("coherent_text",) and p.config.n_windows in (1, 3) for p in shading)
    return [p for p in plan if not p.config.full_rows]


def test_the_paper_settings_measure_the_papers_runs():
    plan = without_shading(settings_plan("paper", notebooks=PAPER_NOTEBOOKS))
    # The depth page measures each published run and its random twin again, per layer.
    layered = settings_plan("paper", notebooks=("depth",))
    assert all(p.config.per_layer for p in layered)
    assert sorted(p.config.model for p in layered) == ["pythia-14m", "pythia-14m@random", "qwen2.5-0.5b",
                                                        "qwen2.5-0.5b@random"]
    assert all(p.rows == 16_384 and p.notebooks == ("depth",) for p in layered)
    runs = by_settings(plan)
    pythia_like = [p.config for p in plan if not p.config.model.startswith("qwen")]
    qwen = [p.config for p in plan if p.config.model.startswith("qwen")]
    # The published Pythia run for every Pythia size, coherent, shuffled and at random init.
    for config in pythia_like:
        assert (config.seq_len, config.target_min, config.target_max, config.target_stride,
                config.source_min_index) in [(2048, 1920, 2040, 8, 384), (2048, 2047, 2047, 1, 0)]
        assert (config.sampler, config.seed, config.dtype) == ("authors", 1234, "checkpoint")
    for config in qwen:
        assert (config.seq_len, config.target_min, config.target_max, config.target_stride,
                config.source_min_index) in [(4096, 3584, 4064, 32, 1536), (4096, 4095, 4095, 1, 0)]
    # The exact published runs, 16,384 rows each, in the checkpoint's dtype with the published grid.
    pythia = runs[("pythia-14m", "paper-gutenberg", "none", 1024)]
    assert pythia.rows == 16_384 and pythia.config.distances == PAPER_DISTANCES[:-1]  # up to 1536
    assert runs[("qwen2.5-0.5b", "paper-gutenberg", "none", 1024)].config.distances == QWEN_DISTANCES  # no 1280
    assert set(pythia.notebooks) == {"coherent_text", "shuffled_tokens", "random_init", "model_sweep",
                                     "text_statistics"}
    # Each control on both published runs and both corpora; the sweep on both corpora.
    for model in ("pythia-14m", "qwen2.5-0.5b"):
        for corpus in ("paper-gutenberg", "wikitext-103"):
            for shuffle in ("none", "window", "corpus"):
                assert runs[(model, corpus, shuffle, 1024)].rows == 16_384
        assert runs[(f"{model}@random", "paper-gutenberg", "none", 1024)].notebooks == ("random_init",)
        assert runs[(model, "paper-gutenberg", "none", 64)].config.distances == tuple(
            range(runs[(model, "paper-gutenberg", "none", 64)].config.seq_len))
    for size in ("70m", "160m", "410m"):
        for corpus in ("paper-gutenberg", "wikitext-103"):
            assert runs[(f"pythia-{size}", corpus, "none", 1024)].notebooks == ("model_sweep",)
    assert {p.config.split for p in plan} == {"train"}
    assert len(plan) == 24 and sum(p.rows for p in plan) == 20 * 16_384 + 4 * 64


def test_the_paper_settings_sweep_pythias_training_steps_and_our_family():
    plan = [p.config for p in settings_plan("paper") if p.notebooks == ("training_dynamics",)]
    pythia = [config for config in plan if config.model == "pythia-70m"]
    assert [config.revision for config in pythia] == ["step0", "step64", "step512", "step2000", "step8000",
                                                      "step32000", "step143000"]
    assert {(c.seq_len, c.n_windows, c.corpus, c.sampler) for c in pythia} == {(2048, 1024, "paper-gutenberg", "authors")}
    ours = [config for config in plan if config.model.startswith("gutenberg-neox-")]
    assert {(c.seq_len, c.corpus) for c in ours} == {(512, "gutenberg-heldout")}
    assert {c.model for c in ours if c.revision is None} == {f"gutenberg-neox-{s}@random" for s in ("d64", "d128", "d192")}


def test_the_default_and_smoke_settings_plans():
    default = without_shading(settings_plan("default", notebooks=PAPER_NOTEBOOKS))
    assert Counter((p.config.model, p.config.shuffle) for p in default) == Counter({
        ("smollm2-135m", "none"): 4, ("smollm2-135m", "window"): 2, ("smollm2-135m@random", "none"): 4,
        ("gutenberg-neox-d192", "none"): 2})
    # Our model is measured on held-out text only; SmolLM2 next to it on the same.
    assert {p.config.corpus for p in default if p.config.model == "gutenberg-neox-d192"} == {"gutenberg-heldout",
                                                                                          "wikipedia"}
    main_run = by_settings(default)[("smollm2-135m", "gutenberg", "none", 16)]
    assert (main_run.config.seq_len, main_run.config.target_min, main_run.config.target_max,
            main_run.config.target_stride, main_run.config.source_min_index) == (512, 480, 504, 8, 96)
    assert (main_run.config.sampler, main_run.config.seed, main_run.config.dtype) == ("uniform", 0, "auto")
    assert main_run.rows == 64 and main_run.config.distances[-1] == 384
    smoke = without_shading(settings_plan("smoke", notebooks=PAPER_NOTEBOOKS))
    assert {p.config.seq_len for p in smoke} == {128}
    assert sorted(p.rows for p in smoke) == [2, 2] + [12] * 6  # 6 windows x targets 120, 124; hooks 2 x 1


def test_published_settings_follow_each_models_family_and_can_be_thinned():
    parameters = experiment_parameters("coherent_text", "paper-rehearsal") | {"targets_per_window": 2}
    runs = notebook_runs("coherent_text", parameters)
    pythia, qwen = runs[("pythia-14m", "wikitext-103")], runs[("qwen2.5-0.5b", "wikitext-103")]
    assert pythia.resolved().targets.tolist() == [1920, 1984]
    assert qwen.resolved().targets.tolist() == [3584, 3840]
    assert (pythia.n_windows, pythia.dtype, qwen.source_min_index) == (2, "float32", 1536)
    single = notebook_runs("coherent_text", parameters | {"targets_per_window": 1})
    assert single[("qwen2.5-0.5b", "wikitext-103")].resolved().targets.tolist() == [3584]
    # Without `published` the notebook's own settings apply to every model alike.
    own = notebook_runs("coherent_text", parameters | {"published": False, "seq_len": 256})
    assert {config.seq_len for config in own.values()} == {256}
    with pytest.raises(ValueError, match="needs the parameter 'corpora'"):
        notebook_runs("coherent_text", {"models": ["x"]})
    with pytest.raises(ValueError, match="unknown notebook"):
        notebook_runs("nothing", parameters)


def test_the_plan_sees_stored_runs_and_what_this_machine_has(tiny_setup, tmp_path):
    from green_profiles.runs.plans import PlannedRun

    config = tiny_config(tiny_setup, n_windows=2)
    planned = [PlannedRun(config, ("coherent_text",))]
    before = list(describe_plan(planned[:1], data_dir=tmp_path))[0]
    assert (before["stored"], before["model_available"], before["text_available"]) == (False, True, True)
    assert (before["model_source"], before["text_source"], before["unavailable"]) == ("local", "local", None)
    assert before["rows"] == 6 and before["estimated_kernel_s"] is not None
    assert before["throughput_source"].startswith("matmul peak")
    run = run_profile(config, data_dir=tmp_path, progress=False)
    after = list(describe_plan(planned[:1], data_dir=tmp_path))[0]
    assert (after["stored"], after["stored_match"], after["key"]) == (True, "exact", run.key)
    # Once a run was measured here, its achieved FLOP rate replaces the matmul peak.
    assert run.metadata["kernel_flops"] > 0
    assert after["throughput_source"].startswith("runs stored from")


def test_plan_prints_json_lines_when_piped(tiny_setup, tmp_path, capsys):
    assert main(["plan", "--settings", "smoke", "--json"]) == 0
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    # 8 runs of the SmolLM2 notebooks and coherent_text's 3 shaded-text runs, the depth page's 2 per-layer runs,
    # the tiny family's larger size: 4 checkpoints and the random twin; and the robustness page's 7 kernel runs
    # (the reference, L = 64, two placements, bfloat16, the random twin and shuffled text), all with whole rows.
    assert len(records) == 25 and "25 runs" in err
    assert sum(record["full_rows"] for record in records) == 3 + 7
    assert sum(record["notebooks"] == ["robustness"] for record in records) == 7
    assert sum(record["notebooks"] == ["training_dynamics"] for record in records) == 5
    assert sum(record["per_layer"] for record in records) == 2
    assert {"model", "corpus", "seq_len", "n_windows", "target_min", "target_max", "target_stride",
            "source_min_index", "shuffle", "dtype", "seed", "rows", "notebooks", "stored", "model_available",
            "text_available", "estimated_kernel_s", "per_layer"} <= set(records[0])


def test_a_stored_run_is_served_by_its_settings_when_its_text_is_not_here(tiny_setup, tmp_path, monkeypatch):
    import green_profiles.runs.measurement as measurement  # reads load_corpus from green_profiles.text by name

    config = tiny_config(tiny_setup, n_windows=2)
    stored = run_profile(config, data_dir=tmp_path, progress=False)

    def unavailable(*args, **kwargs):
        raise CorpusUnavailableError("the corpus is not here. Longer explanation")

    monkeypatch.setattr(measurement, "load_corpus", unavailable)
    with pytest.warns(UserWarning, match=f"the corpus is not here; using stored run {stored.key}"):
        served = run_profile(config, data_dir=tmp_path, progress=False)
    assert served.key == stored.key
    with pytest.raises(CorpusUnavailableError):  # other settings: nothing to serve
        run_profile(tiny_config(tiny_setup, n_windows=3), data_dir=tmp_path, progress=False)
    with warnings.catch_warnings(), pytest.raises(CorpusUnavailableError):
        warnings.simplefilter("error")
        run_profile(config, data_dir=tmp_path, progress=False, recompute=True)


def test_the_plan_of_a_paper_run_without_the_hub_says_so_and_still_estimates(tmp_path, monkeypatch):
    import datasets  # noqa: F401 - imported first: its config copies the hub's offline flag at import
    import huggingface_hub.constants

    from green_profiles.runs.plans import PlannedRun

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "empty-datasets")
    paper = RunConfig(model="pythia-14m", corpus="paper-gutenberg", seq_len=2048, n_windows=1, dtype="float32",
                      sampler="authors", seed=1234)
    record = list(describe_plan([PlannedRun(paper, ("coherent_text",))], data_dir=tmp_path))[0]
    assert (record["model_available"], record["text_available"], record["stored"]) == (False, False, False)
    assert (record["model_source"], record["text_source"]) == (None, None)
    assert "offline mode" in record["unavailable"]
    # The architecture comes from the published config: the kernel time is estimated all the same.
    assert record["estimated_kernel_s"] > 0 and record["rows"] == 16
    assert not (tmp_path / "corpora" / "paper-gutenberg.jsonl").exists()  # a plan builds nothing
