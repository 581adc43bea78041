"""Figure helpers: a degenerate exponent must not squeeze the forest plot."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from green_profiles.figures import plot_forest  # noqa: E402


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

    from green_profiles.figures import plot_fit_range
    from green_profiles.fits import fit_range_scan

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
