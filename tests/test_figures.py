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


def test_a_specification_curve_sorts_by_the_estimate_and_marks_every_choice():
    table = pd.DataFrame({"L": ["256", "512", "1024"], "aggregate": ["median", "mean", "median"],
                          "p": [1.1, 0.8, 0.95], "p_low": [1.0, 0.7, 0.9], "p_high": [1.2, 0.9, 1.0]})
    from green_profiles.report.figures import plot_specification_curve

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True)
    ordered = plot_specification_curve(top, bottom, table, {"L": ["256", "512", "1024"],
                                                            "aggregate": ["median", "mean"]})
    assert ordered["p"].tolist() == [0.8, 0.95, 1.1]
    # One marker per specification and choice row (5 rows x 3 specifications), chosen ones in colour.
    markers = [line for line in bottom.lines if len(line.get_xdata())]
    assert sum(len(line.get_xdata()) for line in markers) == 5 * 3
    assert [tick.get_text() for tick in bottom.get_yticklabels()][0] == "L: 256"
    plt.close(fig)


def test_the_local_slope_figure_draws_the_plateau_with_its_value():
    import numpy as np

    from green_profiles.analysis.local_slope import local_slope
    from green_profiles.report.figures import plot_local_slope

    grid = np.array([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256], dtype=float)
    rng = np.random.default_rng(0)
    rows = (grid + 1.0)[None, :] ** -0.8 * rng.lognormal(sigma=0.1, size=(40, len(grid)))
    result = local_slope(grid, rows, np.repeat(np.arange(10), 4), n_boot=100)
    fig, ax = plt.subplots()
    plot_local_slope(ax, result, label="power law", color="C0")
    assert ax.get_xscale() == "log" and any(text.get_text().startswith("plateau 0.8") for text in ax.texts)
    plt.close(fig)
    flat = local_slope(grid, rng.lognormal(sigma=0.1, size=(40, len(grid))), np.repeat(np.arange(10), 4), n_boot=100)
    fig, ax = plt.subplots()
    plot_local_slope(ax, flat, label="floor", color="C1")
    assert flat.plateau is not None and any(text.get_text().startswith("no decay") for text in ax.texts)
    plt.close(fig)
