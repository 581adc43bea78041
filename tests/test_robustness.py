"""The specification curve (green_profiles.analysis.robustness) and the robustness experiment's kernel runs
(green_profiles.runs.experiments): each axis changes exactly what it names, a pure power law reads the same
exponent under every choice that does not change it, and the counts the page states."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from support import synthetic_full_run

from green_profiles.analysis.decisions import INCONCLUSIVE, INSIDE, NO_ESTIMATE, OUTSIDE
from green_profiles.analysis.fits import PairedDifference, bootstrap_fits, paired_difference
from green_profiles.analysis.local_slope import Plateau
from green_profiles.analysis.robustness import (AXES, Curve, axis_effects, band_counts, control_slopes, curve_numbers,
                                                effects_tests_table, plateau_text, reachability, specification_curve,
                                                specification_tests, specifications)
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
    assert list(shown.index) == list(effects["axis"])
    # Resolved is read from the Holm-adjusted p-value over the curve's specifications (all but the paper's own).
    n_tests = len(curve.table) - 1
    assert (effects["tests"] == n_tests).all()
    assert (effects["Holm p"] >= effects["p-value"]).all()
    assert list(effects["resolved"]) == [bool(adjusted < 0.05) for adjusted in effects["Holm p"]]
    tests = effects_tests_table(effects)
    assert list(tests.index) == list(effects["axis"]) and set(tests["resolved"]) <= {"yes", "no"}
    assert f"Holm-adjusted p (over {n_tests})" in tests.columns
    assert shown["p − paper's [95% CI]"].iloc[0].startswith(f"{effects['difference'].iloc[0]:+.2f} [")
    every = specification_table(curve.table)
    assert len(every) == len(curve.table) and every.index[0] == ("paper", "paper")
    assert every["p − paper's [95% CI]"].iloc[0] == "—"


def _synthetic_curve(seed: int = 0) -> Curve:
    """A curve of 21 specifications read alike (paired), whose replicates are set by hand: the paper's p ~ 0.8 with
    a narrow spread; "min r 2" moves p by a difference whose bootstrap p-value is about 0.03; the 19 others do not
    move it."""
    rng = np.random.default_rng(seed)
    r = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256], dtype=float)
    rows = (r + 1.0)[None, :] ** -np.repeat(0.8 + rng.normal(0.0, 0.01, 12), 4)[:, None]
    base = bootstrap_fits(r, rows, n_boot=20, seed=0, group=np.repeat(np.arange(12), 4), n_sim=0)
    n = 2000
    paper = rng.normal(0.8, 0.03, n)

    def result(values):
        return dataclasses.replace(base, replicates={**base.replicates, "p_power_floor": values}, n_boot=n,
                                   n_failed={}, n_excluded={})

    settings = [("paper", "paper"), ("min r", "2")] + [(axis, str(index)) for index in range(3)
                                                         for axis in AXES if axis != "min r"][:19]
    # Differences at the normal quantiles, 1.5% of them at or below zero: a bootstrap p-value of about 0.03.
    moved = 0.05 * (2.17 + stats.norm.ppf((np.arange(n) + 0.5) / n))
    values = [paper, paper + rng.permutation(moved)] + [paper + rng.normal(0.0, 0.01, n) for _ in range(19)]
    results = [result(value) for value in values]
    records = []
    for (axis, setting), item in zip(settings, results, strict=True):
        low, high = np.percentile(item.replicates["p_power_floor"], [2.5, 97.5])
        records.append({"axis": axis, "setting": setting, "p": item.point_estimates["p_power_floor"], "p_low": low,
                        "p_high": high, "verdict_word": "power law", "p − paper": paired_difference(item, results[0])})
    return Curve(table=pd.DataFrame.from_records(records), results=results, paper_choices={})


def test_holm_leaves_a_move_with_p_0_03_among_20_unresolved():
    """The old reading ("interval excludes 0", 95% each) resolved this move; Holm over 20 specifications does not."""
    curve = _synthetic_curve()
    tests = specification_tests(curve)
    assert math.isnan(tests.loc[0, "p-value"]) and (tests["tests"] == 20).all()
    moved = tests.loc[1]
    assert 0.02 < moved["p-value"] < 0.045 and moved["Holm p"] >= 0.05
    difference = curve.table.loc[1, "p − paper"]
    assert difference.paired and (difference.low > 0 or difference.high < 0)  # its own interval excludes 0
    effects = axis_effects(curve)
    row = effects[effects["axis"] == "min r"].iloc[0]
    assert not row["resolved"] and row["Holm p"] == moved["Holm p"]
    assert not effects["resolved"].any()
    costs = pd.DataFrame({"L": [64], "kernel s": [2.0]})
    numbers = curve_numbers({("m", "c"): curve}, {("m", "c"): effects}, {}, costs)
    assert numbers["most_paired"] == "none resolved (Holm over 20 specifications per corpus)"
    assert numbers["holm"] == "Holm over 20 specifications per corpus"
    assert "Holm-adjusted p = " in numbers["most"] and "over 20 specifications" in numbers["most"]


def test_the_band_is_read_by_its_test_not_by_overlap():
    """Every specification's p estimate is about 0.8, inside the band, and every interval reaches into it (the old
    counts: 21 of 21 "overlap", 21 "inside"); the equivalence test shows it inside only where the 90% interval is."""
    curve = _synthetic_curve()
    counts = band_counts(curve)
    assert set(counts) == {INSIDE, OUTSIDE, INCONCLUSIVE, NO_ESTIMATE} and sum(counts.values()) == 21
    assert counts[INSIDE] == 20 and counts[INCONCLUSIVE] == 1  # "min r 2": 90% interval about [0.81, 1.0]
    sentence = reachability({("m", "c"): curve})
    assert sentence.startswith("By choices of protocol alone, for m: on c, of 21 specifications with an estimate, "
                               "20 shown inside 0.7–0.9 (the paper's protocol, ")
    assert "0 shown outside it and 1 inconclusive" in sentence
    costs = pd.DataFrame({"L": [64], "kernel s": [2.0]})
    numbers = curve_numbers({("m", "c"): curve}, {("m", "c"): axis_effects(curve)}, {}, costs)
    assert (numbers["band_inside"], numbers["band_outside"], numbers["band_inconclusive"]) == \
        ("20 of 21 on c", "0 of 21 on c", "1 of 21 on c")
    assert "overlap" not in numbers and "inside" not in numbers


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
    assert plateau_text(Plateau(start=1, stop=128, level=0.71, low=0.64, high=0.80, n_ranges=6, margin=0.2)) == \
        "plateau 0.71 [0.64, 0.80] over r = 1–128 (6.0 octaves) (slope shown constant within ±0.2 over 6 ranges tried)"
    assert plateau_text(Plateau(start=1, stop=384, level=-0.01, low=-0.16, high=0.16, n_ranges=6)).startswith(
        "no decay over r = 1–384 (7.6 octaves): slope -0.01 [-0.16, 0.16]")
    assert plateau_text(None).startswith("no plateau shown")


