"""Interactive figures: one legend group per condition, hover numbers equal to the run's own profile and fit."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from green_profiles.report.figures import condition_color
from green_profiles.report.interactive import (against_tokens_figure, html, layer_profiles_figure, median_interval,
                                                profiles_figure, specification_curve_figure)
from support import synthetic_run

DISTANCES = (0, 1, 2, 4, 8, 16, 32)


def _runs():
    return {"coherent": synthetic_run(list(range(8)), distances=DISTANCES, seed=0),
            "random init": synthetic_run(list(range(8)), distances=DISTANCES, seed=1)}


def test_profiles_figure_has_one_legend_group_per_run_with_its_numbers_in_the_hover():
    runs = _runs()
    fig = profiles_figure(runs, n_boot=30)
    assert [trace.name for trace in fig.data if trace.showlegend is not False] == ["coherent", "random init"]
    assert {trace.legendgroup for trace in fig.data} == {"coherent", "random init"}
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    for label, run in runs.items():
        group = [trace for trace in fig.data if trace.legendgroup == label]
        # band (low, high), median, fit: they toggle together
        assert len(group) == 4
        median = next(trace for trace in group if trace.name == label)
        assert median.line.color == condition_color(label)
        np.testing.assert_array_equal(median.x, run.distances[1:])
        np.testing.assert_allclose(median.y, run.profile()["median"].to_numpy()[1:])
        low, high = median_interval(run, n_boot=30)
        custom = np.asarray(median.customdata, dtype=float)
        np.testing.assert_allclose(custom[:, 0], low[1:])
        np.testing.assert_allclose(custom[:, 1], high[1:])
        law = run.fit().get("power_floor")
        np.testing.assert_allclose(custom[:, 2], law.curve(run.distances[1:].astype(float)))
        fit = next(trace for trace in group if trace.name == f"{label}: fit")
        np.testing.assert_allclose(fit.y, law.curve(np.asarray(fit.x)))
        assert f"p = {law.params['p']:.3f}" in fit.hovertemplate
        assert "95% interval" in median.hovertemplate and "r = %{x:.0f} tokens" in median.hovertemplate


def test_median_interval_brackets_the_median_and_repeats_with_its_seed():
    run = _runs()["coherent"]
    low, high = median_interval(run, n_boot=50, seed=3)
    median = run.profile()["median"].to_numpy()
    assert low.shape == high.shape == median.shape
    assert np.all(low <= median + 1e-12) and np.all(median <= high + 1e-12)
    assert np.all(low[1:] < high[1:])  # r = 0 is 1 in every row
    again = median_interval(run, n_boot=50, seed=3)
    np.testing.assert_array_equal(again[0], low)


def test_layer_profiles_figure_draws_each_block_input_profile():
    run = synthetic_run(list(range(6)), distances=DISTANCES)
    layers = np.stack([run.arrays["pred_raw"] * (1 + layer) ** (-np.log1p(run.distances)) for layer in range(3)],
                      axis=2)
    run.arrays["pred_layers"] = layers  # [windows, targets, layers, n_r]
    fig = layer_profiles_figure(run)
    assert [trace.name for trace in fig.data] == ["block 0 input", "block 1 input", "block 2 input"]
    for layer, trace in enumerate(fig.data):
        profile = run.layer_profile(layer).iloc[1:]
        np.testing.assert_allclose(trace.y, profile["median"])
        np.testing.assert_allclose(np.asarray(trace.customdata, dtype=float), profile[["q25", "q75"]].to_numpy())
    assert fig.data[0].line.color != fig.data[2].line.color
    with pytest.raises(ValueError, match="per_layer"):
        layer_profiles_figure(synthetic_run(list(range(6))))


def test_against_tokens_figure_shows_each_size_with_intervals_and_its_random_twin():
    table = pd.DataFrame({
        "model": ["m-d16"] * 4 + ["m-d32"] * 4,
        "checkpoint": ["step0", "step10", "step100", "random init"] * 2,
        "tokens": [0, 1e4, 1e5, math.nan] * 2,
        "p": [math.nan, 1.2, 0.9, 0.5, 2.0, 1.1, 0.8, math.nan],
        "p_low": [math.nan, 1.0, 0.8, 0.3, 1.5, 1.0, 0.7, math.nan],
        "p_high": [math.nan, 1.5, 1.0, 0.7, 2.4, 1.3, 0.95, math.nan],
        "verdict_word": ["flat", "power law", "power law", "unresolved", "power law", "power law", "power law", "flat"],
    })
    fig = against_tokens_figure(table, "p", colors={"m-d16": "#111111"})
    legend = [trace for trace in fig.data if trace.showlegend is not False]
    assert [trace.name for trace in legend] == ["m-d16", "m-d32"] and legend[0].line.color == "#111111"
    trained = legend[0]
    np.testing.assert_allclose(trained.x, [1e4, 1e5])  # step 0 has no estimate: left out
    np.testing.assert_allclose(trained.y, [1.2, 0.9])
    np.testing.assert_allclose(trained.error_y.array, [0.3, 0.1])
    np.testing.assert_allclose(trained.error_y.arrayminus, [0.2, 0.1])
    twin = [trace for trace in fig.data if trace.name == "m-d16" and trace.showlegend is False]
    assert len(twin) == 1 and twin[0].marker.symbol == "square-open" and list(twin[0].y) == [0.5]
    assert fig.data[-1].x[0] == 1e4 / 4  # m-d32's step 0 at the "init" position, a factor 4 left of step 10
    # Without an estimate: a cross at 0, in the model's legend group (m-d16's step 0, m-d32's twin).
    crosses = [trace for trace in fig.data if trace.name.endswith("no estimate")]
    assert [(trace.legendgroup, list(trace.y), trace.customdata[0][0]) for trace in crosses] == [
        ("m-d16", [0.0], "step0"), ("m-d32", [0.0], "random init")]
    empty = against_tokens_figure(table.assign(p=math.nan), "p")
    assert [trace.name for trace in empty.data if trace.showlegend] == ["m-d16: no estimate", "m-d32: no estimate"]


def test_html_is_a_div_without_plotly_js_and_a_stable_id():
    fig = profiles_figure(_runs(), n_boot=10)
    first, second = html(fig, "sweep").data, html(fig, "sweep").data
    assert first == second and 'class="plotly-graph-div"' in first and "Plotly.newPlot" in first
    assert len(first) < 200_000 and "cdn.plot.ly" not in first and "<html" not in first
    assert html(fig, "other").data != first


def test_the_sphinx_extension_ships_one_plotly_js_to_the_pages_with_a_figure(tmp_path):
    from plotly.offline import get_plotlyjs
    from sphinx.application import Sphinx

    source = tmp_path / "source"
    source.mkdir()
    (source / "conf.py").write_text('extensions = ["green_profiles.report.plotly_offline"]\nhtml_theme = "basic"\n')
    figure = html(profiles_figure(_runs(), n_boot=5), "figure").data
    (source / "index.rst").write_text("Figure\n======\n\n.. raw:: html\n\n   " + figure.replace("\n", " ")
                                      + "\n\n.. toctree::\n\n   other\n")
    (source / "other.rst").write_text("Other\n=====\n\nNo figure.\n")
    out = tmp_path / "html"
    app = Sphinx(str(source), str(source), str(out), str(tmp_path / "doctrees"), "html", status=None,
                 warningiserror=True)
    app.build()
    assert (out / "_static" / "plotly.min.js").read_text(encoding="utf-8") == get_plotlyjs()
    page = (out / "index.html").read_text(encoding="utf-8")
    # Loaded in the head, before the figure's inline script calls Plotly.newPlot.
    assert page.count('src="_static/plotly.min.js"') == 1
    assert page.index('src="_static/plotly.min.js"') < page.index("Plotly.newPlot")
    assert "plotly.min.js" not in (out / "other.html").read_text(encoding="utf-8")


def test_a_flat_profile_says_it_has_no_fit_instead_of_a_number():
    flat = synthetic_run(list(range(8)), distances=DISTANCES)
    flat.arrays["pred_raw"] = np.ones_like(flat.arrays["pred_raw"])
    fig = profiles_figure({"random init": flat}, n_boot=5)
    assert [trace.name for trace in fig.data] == ["random init: 95% low", "random init: 95% band", "random init"]
    assert "no usable fit" in fig.data[-1].hovertemplate


def test_a_specification_curve_colours_each_axis_alike_whatever_the_order_of_its_estimates():
    # Catches colours or legend order taken from the sorted points: two corpora's curves would then colour one
    # axis differently side by side.
    def table(p):
        return pd.DataFrame({"axis": ["paper", "L", "L", "token"], "setting": ["paper", "256", "1024", "true"],
                             "p": p, "p_low": np.asarray(p) - 0.1, "p_high": np.asarray(p) + 0.2,
                             "p − paper": ["—", "+0.1", "-0.2", "+0.3"], "fitted r": ["1–384"] * 4,
                             "verdict_word": ["power law"] * 4})

    first = specification_curve_figure(table([0.9, 1.0, 0.7, 1.2]), paper_band=(0.7, 0.9))
    second = specification_curve_figure(table([0.9, 0.5, 1.3, 0.6]))
    for fig in (first, second):
        assert [trace.name for trace in fig.data] == ["paper", "L", "token"]
    assert [trace.marker.color for trace in first.data] == [trace.marker.color for trace in second.data]
    assert len({trace.marker.color for trace in first.data}) == 3
    # Given the page's axes, a curve without one of them still colours the others as its neighbours do.
    axes = ("L", "placement", "token")
    with_axes = specification_curve_figure(table([0.9, 1.0, 0.7, 1.2]), axes=axes)
    no_length = specification_curve_figure(table([0.9, 1.0, 0.7, 1.2]).iloc[[0, 3]], axes=axes)
    assert [trace.name for trace in no_length.data] == ["paper", "token"]
    assert no_length.data[1].marker.color == with_axes.data[2].marker.color
    # x is the rank of the estimate; the interval is drawn from p_low to p_high.
    length = first.data[1]
    assert list(length.x) == [1, 3] and list(length.y) == [0.7, 1.0]
    np.testing.assert_allclose(length.error_y.array, [0.2, 0.2])
    np.testing.assert_allclose(length.error_y.arrayminus, [0.1, 0.1])
    assert "minus the paper's protocol" in length.hovertemplate
