"""Per-layer runs through the store: their key, their arrays, their profiles, fits and bootstrap by layer, and
the notebook's plan; runs without them keep their keys."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from green_profiles.runs.configuration import PRESETS, RunConfig
from green_profiles.analysis.depth import (
    exponent_range,
    layer_summaries,
    power_law_layers,
    summarized_layers,
    verdict_counts,
)
from green_profiles.runs.plans import notebook_runs, settings_plan
from green_profiles.runs.provenance import Provenance, run_key, settings_key, settings_record

# Keys computed by the code before the optional flags per_layer and full_rows existed (commit 7391dec): they
# must not move, and each flag, when set, must give runs keys of their own.
PROVENANCE = Provenance("c" * 64, "w", "t", 3)
PINNED = {
    "default": (RunConfig(), "56b30612ebd363a6", "fce2c2c5e06656cf"),
    "smollm": (RunConfig(model="smollm2-135m", corpus="gutenberg", seq_len=512, n_windows=16, target_stride=8),
               "f7e1b8d77c491357", "9f3800c7145924cc"),
    "pythia": (PRESETS["pythia"], "989cb2260b2c9c8b", "f99c51a0154a4e3d"),
    # Moved once, on purpose: the Qwen run now uses its own published grid (no r = 1280; issue 20). It was
    # ("5f6b67c4d20b8267", "3fe7720ad110ba71") with the Pythia grid.
    "qwen": (PRESETS["qwen"], "3f4142c58ffdd79c", "a2285eb5ee55b565"),
}
OPTIONAL_FLAGS = ("per_layer", "full_rows")


@pytest.mark.parametrize("name", sorted(PINNED))
def test_existing_keys_do_not_change_and_each_flag_keys_its_runs_apart(name):
    config, settings, key = PINNED[name]
    record = settings_record(config, "cpu")
    assert not set(OPTIONAL_FLAGS) & set(record)
    assert settings_key(config, "cpu") == settings
    assert run_key(config, PROVENANCE, "cpu") == key
    variants = [dataclasses.replace(config, **{flag: True}) for flag in OPTIONAL_FLAGS]
    variants.append(dataclasses.replace(config, **{flag: True for flag in OPTIONAL_FLAGS}))
    for variant in variants[:-1]:
        assert {flag for flag in OPTIONAL_FLAGS if settings_record(variant, "cpu").get(flag) is True}
    assert len({settings_key(c, "cpu") for c in [config, *variants]}) == len(variants) + 1
    assert len({run_key(c, PROVENANCE, "cpu") for c in [config, *variants]}) == len(variants) + 1


def test_per_layer_must_be_a_bool():
    with pytest.raises(ValueError, match="per_layer"):
        RunConfig(per_layer="yes").resolved()


def assert_same_values(got, want, rtol: float = 1e-5) -> None:
    """Numbers of a per_layer run against a plain run's (another float path, so not bitwise): NaN and zero
    patterns exactly, values to ``rtol`` (the kernel's bound against plain autograd; another layer is far off)."""
    got, want = np.asarray(got), np.asarray(want)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got == 0, want == 0)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0, equal_nan=True)


@pytest.fixture
def run_flag() -> str:
    """conftest's plain_and_flagged: the session's plain tiny run, and the same run with ``per_layer``."""
    return "per_layer"


def test_a_per_layer_run_stores_every_block_input(plain_and_flagged):
    plain, layered = plain_and_flagged
    assert layered.key != plain.key
    assert plain.n_layers == 0 and "pred_layers" not in plain.arrays
    n_windows, n_targets, n_r = plain.arrays["pred_raw"].shape
    for selection in ("pred", "true"):
        layers = layered.arrays[f"{selection}_layers"]
        assert layers.shape == (n_windows, n_targets, 2, n_r) and layers.dtype == np.float32
        # Layer 0 is the embeddings: the ordinary rows, bitwise in this run (one array, stored twice), and to
        # rounding in the run without layers (per_layer is another float path). Catches a wrong layer stored as 0.
        np.testing.assert_array_equal(layers[:, :, 0], layered.arrays[f"{selection}_raw"])
        assert_same_values(layers[:, :, 0], plain.arrays[f"{selection}_raw"])
        assert (layers[:, :, 1] > 0).all() and not np.array_equal(layers[:, :, 1], layers[:, :, 0])
    assert layered.metadata["n_layers"] == 2
    assert layered.metadata["layer_norm_counts"]["pred"]["total"] == layered.arrays["pred_layers"].size
    assert layered.metadata["config"]["per_layer"] is True


def test_profiles_fits_and_bootstrap_by_layer(plain_and_flagged):
    plain, layered = plain_and_flagged
    np.testing.assert_array_equal(layered.normalized("pred", layer=0), layered.normalized("pred"))  # same array
    assert_same_values(layered.normalized("pred", layer=0), plain.normalized("pred"), rtol=2e-5)  # a ratio of two
    top = layered.normalized("pred", layer=1)
    assert top.shape == plain.normalized("pred").shape and np.allclose(top[:, 0], 1.0)
    np.testing.assert_array_equal(layered.normalized("pred", layer=-1), top)
    assert layered.layer_profile(1).equals(layered.profile("pred", layer=1))
    # Fits of layer 0 are the run's ordinary fits: exact on the same numbers. Not against `plain`: this tiny random
    # model's profile is flat, its fits degenerate (power_floor and exp_floor tie), and 1e-7 of rounding in the
    # rows moves p by ~1e-4 and can swap the ranks; the rows themselves are compared to `plain` above.
    assert layered.fit("pred", layer=0).to_dataframe().equals(layered.fit("pred").to_dataframe())
    with pytest.warns(UserWarning, match="resamples windows"):
        summary = layered.summary("pred", n_boot=5, layer=-1)
    assert summary["layer"] == 1
    with pytest.warns(UserWarning, match="resamples windows"):
        table = layer_summaries(layered, "pred", n_boot=5)
    assert list(table.index) == [0, 1] and {"p", "p_low", "p_high", "rmse_gap", "verdict_word"} <= set(table)
    assert table.loc[0, "p_vs_first"] == "—"  # layer 1 against layer 0, paired (or no comparison: no exponent)
    assert "(paired)" in table.loc[1, "p_vs_first"] or table.loc[1, "p_vs_first"].startswith("no comparison")
    # Read with Holm over the block inputs compared with the first (here one).
    assert np.isnan(table.loc[0, "p_vs_first_holm"]) and np.isnan(table.loc[0, "p_vs_first_pvalue"])
    if np.isfinite(table.loc[1, "p_vs_first_pvalue"]):
        assert table.loc[1, "p_vs_first_holm"] == table.loc[1, "p_vs_first_pvalue"]  # a family of one
        assert "Holm-adjusted p = " in table.loc[1, "p_vs_first"] and "over 1 block input" in table.loc[1, "p_vs_first"]
    with pytest.raises(ValueError, match="without per_layer"):
        plain.raw("pred", layer=0)
    with pytest.raises(ValueError, match="without per_layer"):
        layer_summaries(plain)
    with pytest.raises(ValueError, match=r"layer must lie in \[0, 2\)"):
        layered.raw("pred", layer=2)


def test_summarized_layers_and_their_words():
    import pandas as pd

    assert summarized_layers(30, 3) == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 29]
    assert summarized_layers(6, 1) == [0, 1, 2, 3, 4, 5]
    assert summarized_layers(1, 5) == [0]
    with pytest.raises(ValueError):
        summarized_layers(0)
    table = pd.DataFrame({"verdict_word": ["power law", "flat", "power law"], "p": [0.9, float("nan"), 1.2]},
                         index=pd.Index([0, 3, 5], name="layer"))
    assert power_law_layers(table) == "2 of 3 (0–5)"
    assert exponent_range(table) == "0.90–1.20"
    assert power_law_layers(table.assign(verdict_word="flat")) == "none of 3"
    assert verdict_counts(table) == "power law at 2, flat at 1 of 3 block inputs"
    assert exponent_range(table.assign(p=float("nan"))) == "—"


def test_the_depth_notebook_plans_per_layer_runs_of_trained_and_random_weights():
    parameters = {"models": ["smollm2-135m"], "corpus": "gutenberg", "seq_len": 512, "n_windows": 8,
                  "target_stride": 8}
    runs = notebook_runs("depth", parameters)
    assert list(runs) == [("smollm2-135m", "trained"), ("smollm2-135m", "random init")]
    assert all(config.per_layer for config in runs.values())
    assert runs[("smollm2-135m", "random init")].model == "smollm2-135m@random"
    published = notebook_runs("depth", parameters | {"models": ["pythia-14m"], "published": True})
    assert published[("pythia-14m", "trained")].seq_len == 2048 and published[("pythia-14m", "trained")].per_layer


@pytest.mark.parametrize("settings", ["smoke", "default", "paper", "paper-rehearsal"])
def test_every_settings_plan_lists_the_depth_runs(settings):
    plan = settings_plan(settings)
    layered = [planned for planned in plan if planned.config.per_layer]
    assert layered and all(planned.notebooks == ("depth",) for planned in layered)
    assert not any(planned.config.per_layer for planned in plan if "depth" not in planned.notebooks)
