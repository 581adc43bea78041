"""Figure helpers: a degenerate exponent must not squeeze the forest plot."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from green_profiles.report.figures import plot_forest  # noqa: E402


def _forest(rows):
    fig, ax = plt.subplots()
    plot_forest(ax, pd.DataFrame(rows))
    texts = [text.get_text() for text in ax.texts]
    limits = ax.get_xlim()
    plt.close(fig)
    return limits, texts


def test_forest_axis_stays_on_the_plausible_range_when_a_fit_hits_the_bound():
    trained = {"label": "trained", "p": 1.09, "p_low": 0.90, "p_high": 1.29}
    flat = {"label": "random init", "p": 9.89, "p_low": 0.02, "p_high": 9.98}
    failed = {"label": "failed", "p": math.nan, "p_low": math.nan, "p_high": math.nan, "verdict_word": "failed"}
    no_decay = {"label": "random init", "p": math.nan, "p_low": math.nan, "p_high": math.nan, "verdict_word": "flat"}
    (left, right), texts = _forest([trained, flat, failed, no_decay])
    assert (left, right) == (0.0, 3.0)
    assert "p = 9.89 [0.02, 9.98]: beyond the axis" in texts
    assert "no estimate (fit failed or at a bound)" in texts and "flat — no decay" in texts


def test_forest_axis_widens_for_a_well_determined_large_exponent():
    (_, right), texts = _forest([{"label": "steep", "p": 3.5, "p_low": 3.2, "p_high": 4.0}])
    assert right == 4.0 * 1.05 and texts == []


def test_fit_range_figure_of_a_flat_profile_draws_and_says_why_it_is_empty():
    import numpy as np

    from green_profiles.report.figures import plot_fit_range
    from green_profiles.analysis.fits import fit_range_scan

    distances = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128])
    scan = pd.DataFrame(fit_range_scan(distances, np.ones(len(distances))))  # no decay at all
    assert not scan["usable"].any()
    fig, ax = plt.subplots()
    plot_fit_range(ax, scan)
    fig.tight_layout()  # raised "Data cannot be log-scaled" before the axis got a range
    fig.canvas.draw()
    assert any("no usable fit" in text.get_text() for text in ax.texts)
    assert ax.get_xscale() == "log" and ax.get_xlim()[0] > 0
    plt.close(fig)


def test_by_layer_figure_marks_layers_without_an_estimate_and_skips_an_empty_series():
    from green_profiles.report.figures import plot_by_layer

    table = pd.DataFrame({"p": [1.1, math.nan, 0.9], "p_low": [1.0, math.nan, 0.95], "p_high": [1.2, math.nan, 1.0],
                          "verdict_word": ["power law", "flat", "power law"]}, index=pd.Index([0, 3, 6], name="layer"))
    fig, ax = plt.subplots()
    plot_by_layer(ax, table, value="p", label="trained", color="#1f5fa8")
    plot_by_layer(ax, table.assign(p=math.nan), value="p", label="random init", color="#6b6b6b")
    labels = ax.get_legend_handles_labels()[1]
    assert sorted(labels) == ["random init: flat or no usable fit (3 layers)", "trained (95% bootstrap interval)",
                              "trained: flat or no usable fit (1 layers)"]
    # An interval that misses its estimate (0.9 below [0.95, 1.0]) still draws, without a negative bar.
    bars = [child for child in ax.containers]
    assert len(bars) == 1
    plt.close(fig)
