"""The specification curve (green_profiles.analysis.robustness) and the robustness experiment's kernel runs
(green_profiles.runs.experiments): each axis changes exactly what it names, a pure power law reads the same
exponent under every choice that does not change it, and the counts the page states."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from support import synthetic_full_run

from green_profiles.analysis.fits import PairedDifference
from green_profiles.analysis.local_slope import Plateau
from green_profiles.analysis.robustness import (AXES, axis_effects, band_overlap, control_slopes, plateau_text,
                                                specification_curve, specifications)
from green_profiles.report.book import axis_effects_table, specification_table
from green_profiles.runs.configuration import RunConfig
from green_profiles.runs.experiments import at_length, experiment_parameters, notebook_runs, placed

DOCUMENTS = list(range(12))


def curve_runs(exponent: float = 0.8, floor: float = 0.0) -> dict[tuple[str, ...], object]:
    """A reference run (L = 64, buffer 0, whole rows), two other lengths and a precision run on its windows."""
    return {("reference",): synthetic_full_run(DOCUMENTS, exponent=exponent, floor=floor, key="reference"),
            ("L", "128"): synthetic_full_run(DOCUMENTS, seq_len=128, targets=(120, 124), source_min_index=24,
                                             exponent=exponent, floor=floor, seed=1, key="L128"),
            ("precision", "bfloat16"): synthetic_full_run(DOCUMENTS, source_min_index=12, exponent=exponent,
                                                          floor=floor, seed=2, key="bf16")}


# What each axis may change of the paper's specification, and nothing else.
CHANGES = {"L": {"run", "derivation"}, "placement": {"run", "derivation"}, "precision": {"run", "derivation"},
           "buffer": {"derivation"}, "normalization": {"derivation"}, "grid": {"derivation"},
           "token": {"derivation"}, "aggregate": {"statistic"}, "min r": {"min_distance"},
           "max r": {"max_distance"}}


def test_each_specification_leaves_the_papers_protocol_on_one_axis_only():
    configs = {("reference",): dataclasses.replace(RunConfig(seq_len=512, target_stride=16), source_min_index=0,
                                                   full_rows=True)}
    base = RunConfig(seq_len=512, target_stride=16, full_rows=True)
    configs |= {("L", str(length)): at_length(base, length) for length in (256, 1024, 2048)}
    configs |= {("placement", name): placed(base, name) for name in ("middle", "quarter")}
    configs[("precision", "bfloat16")] = dataclasses.replace(base, dtype="bfloat16")
    specs, paper = specifications(configs)
    assert specs[0].axis == "paper" and specs[0].derivation.buffer == 96 and specs[0].statistic == "median"
    assert set(paper) == set(AXES)
    counts = pd.Series([spec.axis for spec in specs]).value_counts().to_dict()
    assert counts == {"paper": 1, "L": 3, "placement": 2, "buffer": 2, "normalization": 2, "aggregate": 3,
                      "min r": 3, "max r": 2, "grid": 1, "token": 1, "precision": 1}
    for spec in specs[1:]:
        changed = {name for name in ("run", "derivation", "statistic", "min_distance", "max_distance")
                   if getattr(spec, name) != getattr(specs[0], name)}
        assert changed and changed <= CHANGES[spec.axis], (spec.axis, spec.setting, changed)
        if spec.axis in ("buffer", "normalization", "grid", "token"):
            fields = {f.name for f in dataclasses.fields(spec.derivation)
                      if getattr(spec.derivation, f.name) != getattr(specs[0].derivation, f.name)}
            assert len(fields) == 1, (spec.axis, fields)
    buffers = {spec.setting: spec.derivation.buffer for spec in specs if spec.axis == "buffer"}
    assert buffers == {"none": 0, "L/2": 256}
    assert {spec.setting: spec.max_distance for spec in specs if spec.axis == "max r"} == {"L/8": 64, "L/4": 128}


def test_lengths_and_placements_scale_as_the_paper_scales_its_runs():
    base = RunConfig(seq_len=512, target_stride=16)
    for length in (256, 1024, 2048):
        resolved = at_length(base, length).resolved()
        assert resolved.targets.min() == length - length // 16 and resolved.targets.max() <= length - 1
        assert resolved.source_min_index == 3 * length // 16 and len(resolved.targets) == 2
    assert at_length(base, 2048).resolved().targets.tolist() == [1920, 1984]
    middle, quarter = placed(base, "middle").resolved(), placed(base, "quarter").resolved()
    assert middle.targets.tolist() == [256, 272] and quarter.targets.tolist() == [128, 144]
    assert middle.source_min_index == quarter.source_min_index == 96 and max(quarter.distances) == 32
    with pytest.raises(ValueError, match="placement must be one of"):
        placed(base, "first")


def test_a_pure_power_law_reads_its_exponent_under_every_choice():
    curve = specification_curve(curve_runs(exponent=0.8), n_boot=40)
    table = curve.table
    assert len(table) == 1 + 1 + 2 + 2 + 3 + 3 + 2 + 1 + 1 + 1  # no placement runs here
    assert table["p"].notna().all()
    # Each specification reads the same law through its own choice: p within 0.1 of 0.8 everywhere
    # (a bug such as normalizing by the wrong column, cutting the wrong range or the wrong token would move it).
    assert np.all(np.abs(table["p"] - 0.8) < 0.1), table[["axis", "setting", "p"]]
    paired = dict(zip(table["axis"] + ":" + table["setting"], table["p − paper"], strict=True))
    assert all(isinstance(value, PairedDifference) for value in paired.values())
    # Read from the reference run's windows (or the same documents): paired; another L: other windows here.
    assert paired["buffer:none"].paired and paired["precision:bfloat16"].paired
    assert paired["paper:paper"].difference == 0.0


def test_a_floor_moves_p_on_the_axes_that_see_it():
    """With a floor the fitted range matters: cutting the range short of the floor changes the estimate, the
    normalization by G(j, 1) does not (it rescales the law); the effects table lists the mover first."""
    curve = specification_curve(curve_runs(exponent=1.2, floor=0.02), n_boot=40)
    effects = axis_effects(curve)
    assert list(effects.columns[:4]) == ["axis", "setting", "p", "difference"]
    assert effects["difference"].abs().is_monotonic_decreasing
    assert set(effects["axis"]) <= set(AXES)
    normalization = curve.table[(curve.table["axis"] == "normalization") & (curve.table["setting"] == "G(j, 1)")]
    assert abs(float(normalization["p"].iloc[0]) - float(curve.table["p"].iloc[0])) < 0.15
    # The page's tables: one line per axis (the mover first) and one per specification, the paper's own first.
    shown = axis_effects_table(effects)
    assert list(shown.index) == list(effects["axis"]) and set(shown["interval excludes 0"]) <= {"yes", "no"}
    assert shown["p − paper's [95% CI]"].iloc[0].startswith(f"{effects['difference'].iloc[0]:+.2f} [")
    every = specification_table(curve.table)
    assert len(every) == len(curve.table) and every.index[0] == ("paper", "paper")
    assert every["p − paper's [95% CI]"].iloc[0] == "—"


def test_band_overlap_counts_intervals_and_points():
    table = pd.DataFrame({"p": [0.8, 1.0, 1.5, math.nan], "p_low": [0.7, 0.85, 1.2, 0.1],
                          "p_high": [0.9, 1.2, 1.8, 0.2]})
    assert band_overlap(table, (0.7, 0.9)) == (2, 1, 3)


def test_control_slopes_read_the_dense_grid_from_the_buffer():
    runs = curve_runs(exponent=0.8)
    slopes = control_slopes({"trained": runs[("reference",)]}, buffer=12, n_boot=30)
    result = slopes["trained"]
    assert result.distances.max() <= 60 - 12 and len(result.distances) > 14
    # The slope of a pure power law is its exponent at every distance, up to the rows' noise.
    read = result.distances >= 1
    assert abs(np.nanmedian(result.slope[read]) - 0.8) < 0.05
    assert np.mean((result.low[read] <= 0.8) & (0.8 <= result.high[read])) >= 0.8


@pytest.mark.parametrize(("settings", "kernel_runs", "specs_per_corpus"),
                         [("default", 16, 21), ("smoke", 7, 19), ("paper-rehearsal", 9, 21)])
def test_the_settings_kernel_runs_and_specifications(settings, kernel_runs, specs_per_corpus):
    """What the robustness page states: its kernel runs (each distinct input once) and specifications."""
    plan = notebook_runs("robustness", experiment_parameters("robustness", settings))
    assert len(set(plan.values())) == len(plan) == kernel_runs
    for model, corpus, *_ in {role[:2] + ("",) for role in plan}:
        runs = {role[2:]: config for role, config in plan.items() if role[:2] == (model, corpus)
                and role[2] != "control"}
        specs, _ = specifications(runs)
        assert len(specs) == specs_per_corpus


def test_a_plateau_at_zero_is_called_a_floor_not_a_power_law():
    assert plateau_text(Plateau(start=2, stop=163, level=0.71, low=0.64, high=0.80)) == \
        "0.71 [0.64, 0.80] over r = 2–163 (5.8 octaves)"  # log2(164 / 3) octaves of r + 1
    assert plateau_text(Plateau(start=29, stop=384, level=-0.01, low=-0.16, high=0.16)).startswith(
        "no decay over r = 29–384 (3.7 octaves): slope -0.01 [-0.16, 0.16]")
    assert plateau_text(None) == "no plateau over two octaves"
