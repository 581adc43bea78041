"""Whole rows through the store (``full_rows``) and the shaded text drawn from them: keys, arrays equal to the
kernel's, the HTML's spans and values, and the coherent_text plan."""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from green_profiles.kernel import jacobian
from green_profiles.models.loading import load_model
from green_profiles.runs.plans import notebook_runs
from green_profiles.report.shading import LIMITS, normalized_full_row, shade_colors, shaded_text_html, side_by_side_html


@pytest.fixture
def run_flag() -> str:
    """conftest's plain_and_flagged: the session's plain tiny run, and the same run with ``full_rows``."""
    return "full_rows"


def test_full_rows_are_the_kernels_rows_and_hold_the_grid(tiny_setup, plain_and_flagged):
    plain, full = plain_and_flagged
    assert full.key != plain.key and not plain.has_full_rows and full.has_full_rows
    assert full.metadata["config"]["full_rows"] is True
    n_windows, n_targets, _ = plain.arrays["pred_raw"].shape
    targets, distances = full.targets, full.distances
    model, _ = load_model(str(tiny_setup[0]))
    for selection in ("pred", "true"):
        rows = full.arrays[f"{selection}_full"]
        assert rows.shape == (n_windows, n_targets, full.config.seq_len) and rows.dtype == np.float32
        # The grid columns are the stored grid arrays, bitwise, in this run and in the run without full rows.
        grid = rows[:, np.arange(n_targets)[:, None], targets[:, None] - distances[None, :]]
        np.testing.assert_array_equal(grid, full.arrays[f"{selection}_raw"])
        np.testing.assert_array_equal(grid, plain.arrays[f"{selection}_raw"])  # full_rows stores more, same kernel call
        assert np.isnan(rows[:, :, :full.config.source_min_index]).all()
        for t, target in enumerate(targets):
            assert (rows[:, t, target + 1:] == 0).all() and (rows[:, t, full.config.source_min_index:target + 1] > 0).all()
    # And the kernel, run again on a stored window, gives the stored rows.
    window = 2
    kernel = jacobian.protocol_gradient_norms(model, torch.from_numpy(full.arrays["window_ids"][window]),
                                              torch.from_numpy(targets), min_source=full.config.source_min_index)
    np.testing.assert_allclose(full.arrays["pred_full"][window], kernel.pred_norms.numpy(), rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(full.arrays["true_full"][window], kernel.true_norms.numpy(), rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(full.full_row(window, 1, "true"), full.arrays["true_full"][window, 1])
    with pytest.raises(ValueError, match="without full_rows"):
        plain.full_row(0, 0)
    with pytest.raises(ValueError, match="must lie in"):
        full.full_row(n_windows, 0)


class _Spans(HTMLParser):
    """Every ``<span>`` with its attributes, in order (nested ``<sup>``/``<div>`` ignored)."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[dict[str, str]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "span":
            self.spans.append(dict(attrs))


def _spans(text: str) -> list[dict[str, str]]:
    parser = _Spans()
    parser.feed(text)
    return parser.spans


def _luma(color: str) -> float:
    red, green, blue = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return 0.299 * red + 0.587 * green + 0.114 * blue


@pytest.mark.parametrize("window, target_index, selection", [(0, 0, "pred"), (3, 2, "true")])
def test_shaded_spans_carry_the_stored_row(tiny_setup, plain_and_flagged, window, target_index, selection):
    _, full = plain_and_flagged
    _, tokenizer = load_model(str(tiny_setup[0]))
    target = int(full.targets[target_index])
    text = shaded_text_html(full, tokenizer, window, target_index, selection)
    tokens = [span for span in _spans(text) if "title" in span]  # the token spans (the trailer has no title)
    assert len(tokens) == target + 1  # one per token of the window up to the target
    shaded = [span for span in tokens if "data-g" in span]
    stored = full.full_row(window, target_index, selection).astype(np.float64)
    measured = np.flatnonzero(np.isfinite(stored[:target + 1]))
    assert len(shaded) == measured.size == target + 1 - full.config.source_min_index
    values = np.array([float(span["data-g"]) for span in shaded])
    # Read from the stored row, exactly: G(j, s) / G(j, j), in source order.
    np.testing.assert_array_equal(values, stored[measured] / stored[target])
    np.testing.assert_array_equal(values, normalized_full_row(full, window, target_index, selection)[measured])
    assert [int(span["data-r"]) for span in shaded] == (target - measured).tolist()
    assert all("background-color" not in span["style"] for span in tokens if "data-g" not in span)
    # Colours darken monotonically with the value (a sequential colormap, log scale).
    colors = [span["style"].split("background-color: ")[1][:7] for span in shaded]
    order = np.argsort(values, kind="stable")
    lumas = np.array([_luma(colors[i]) for i in order])
    assert (np.diff(lumas) <= 1e-9).all() and lumas[0] > lumas[-1]
    assert "outline" in tokens[-1]["style"] and float(tokens[-1]["data-g"]) == 1.0
    context = shaded_text_html(full, tokenizer, window, target_index, selection, context=10)
    assert len([span for span in _spans(context) if "data-g" in span]) == 11


def test_shade_colors_follow_the_log_scale():
    low, high = LIMITS
    colors = shade_colors(np.array([low / 10, low, np.sqrt(low * high), high, high * 10, 0.0, np.nan]))
    assert colors[0] == colors[1] == colors[5] == colors[6] and colors[3] == colors[4]
    assert _luma(colors[1]) > _luma(colors[2]) > _luma(colors[3])


def test_side_by_side_is_self_contained(tiny_setup, plain_and_flagged):
    plain, full = plain_and_flagged
    _, tokenizer = load_model(str(tiny_setup[0]))
    block = side_by_side_html({"one": full, "two": full}, tokenizer, window=1, target_index=0)
    assert block.count("linear-gradient") == 1 and block.count("data-g=") == 2 * (36 + 1 - 8)
    for absent in ("<script", "http", "<link", "<img", "class=\"green-shading\" style"):
        assert absent not in block
    with pytest.raises(ValueError, match="without full_rows"):
        side_by_side_html({"plain": plain}, tokenizer)


def test_coherent_text_plans_the_shaded_runs():
    parameters = {"seq_len": 128, "n_windows": 6, "target_stride": 4, "models": ["smollm2-135m", "x"],
                  "corpora": ["gutenberg", "wikipedia"]}
    assert len(notebook_runs("coherent_text", parameters)) == 4
    plan = notebook_runs("coherent_text", parameters | {"shading_windows": 3})
    shading = {role[3]: config for role, config in plan.items() if role[2:3] == ("shading",)}
    assert set(plan) - {role for role in plan if len(role) == 2} == {
        ("smollm2-135m", "gutenberg", "shading", condition) for condition in shading}
    assert set(shading) == {"trained", "random init", "shuffled"}
    trained = shading["trained"]
    assert trained.full_rows and trained.n_windows == 3 and trained.seq_len == 128 and trained.shuffle == "none"
    assert shading["random init"] == dataclasses.replace(trained, model="smollm2-135m@random")
    assert shading["shuffled"] == dataclasses.replace(trained, shuffle="window")
    # The runs of the other notebooks that share coherent_text's are not affected.
    assert len(notebook_runs("text_statistics", parameters | {"shading_windows": 3})) == 4
    published = notebook_runs("coherent_text", parameters | {"shading_windows": 2, "published": True,
                                                              "targets_per_window": 1, "models": ["pythia-14m"]})
    assert published[("pythia-14m", "gutenberg", "shading", "trained")].resolved().seq_len == 2048
