"""The decay on a real sentence: a stored run's whole row drawn as text shaded token by token.

Attribution tools (Captum, inseq, ecco) show a row of attributions as the text with
each token's background coloured by its value. Here the value is a stored run's
``Ĝ(j, r) = G(j, j - r) / G(j, j)`` for one (window, target): the run must have been
measured with ``full_rows`` (:class:`~green_profiles.runs.configuration.RunConfig`), and
every number drawn is read from the run, never recomputed.

The HTML is self-contained: inline styles only, no scripts, fonts or images. Each
token of the window up to the target is one ``<span>``; a token with a value has a
background colour on a logarithmic scale (a matplotlib colormap, clipped to fixed
limits shared by every panel, so panels compare), a ``title`` tooltip with ``r`` and
``Ĝ`` and a ``data-g`` attribute with the value (Python's ``repr``: it reads back
exactly). Tokens in the left buffer have no value (the kernel never computed them)
and are drawn unshaded. The target is outlined; after it come the observed and the
predicted next token.

Which example: the notebook shows window 0 and the first target (``target_index=0``)
of each run. Window 0 is the first window of the run's own seeded draw (``seed`` of
its configuration); runs that differ only in the model (``@random``) or in the
shuffle draw the same windows, so the panels show the same text (shuffled, in the
shuffled run). The target is the first of the run's targets. Both are fixed in
advance, not picked for looks.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from green_profiles.runs.configuration import Selection
from green_profiles.analysis.profiles import ProfileRun

# Ĝ limits of the colour scale, shared by all panels: below 1e-3 a source barely moves the logit
# (and most trained rows have reached their floor there); above 1 is as strong as the diagonal.
LIMITS = (1e-3, 1.0)
COLORMAP = "YlOrRd"
_TEXT_STYLE = ("font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: 12px; line-height: 1.6; "
               "white-space: pre-wrap; word-break: break-word; color: #111")


def normalized_full_row(run: ProfileRun, window: int = 0, target_index: int = 0,
                        selection: Selection = "pred") -> np.ndarray:
    """``Ĝ`` by source position for one (window, target) of a ``full_rows`` run: ``[L]`` float64.

    ``G(j, s) / G(j, j)`` from the stored row (:meth:`~green_profiles.analysis.profiles.ProfileRun.full_row`);
    NaN in the buffer, zero right of the target, all NaN when ``G(j, j)`` is not positive and finite.
    """
    row = run.full_row(window, target_index, selection).astype(np.float64)
    diagonal = row[int(run.targets[target_index])]
    if not (np.isfinite(diagonal) and diagonal > 0):
        return np.full_like(row, np.nan)
    return row / diagonal


def shade_colors(values: np.ndarray, limits: tuple[float, float] = LIMITS, colormap: str = COLORMAP) -> list[str]:
    """Hex colours (``"#rrggbb"``) of ``values`` on a logarithmic scale clipped to ``limits``.

    Args:
        values: ``[n]`` positive values (``Ĝ``); non-positive ones take the lowest colour.
        limits: ``(low, high)``, the values of the colormap's two ends.
        colormap: a matplotlib colormap name.
    """
    import matplotlib
    from matplotlib.colors import to_hex

    low, high = np.log10(limits[0]), np.log10(limits[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(np.asarray(values, dtype=np.float64))
    fractions = np.clip((np.nan_to_num(logs, nan=low, neginf=low) - low) / (high - low), 0.0, 1.0)
    cmap = matplotlib.colormaps[colormap]
    return [to_hex(cmap(float(f))) for f in fractions]


def _text_color(background: str) -> str:
    """Black or white, whichever reads on ``background`` (luma of the sRGB values)."""
    red, green, blue = (int(background[i:i + 2], 16) for i in (1, 3, 5))
    return "#111" if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else "#fff"


def _token_texts(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each token's own text (decoded alone, so byte-level BPE keeps its spaces)."""
    return [tokenizer.decode([int(token)]) for token in ids]


def legend_html(limits: tuple[float, float] = LIMITS, colormap: str = COLORMAP) -> str:
    """A small colour bar of the scale with its decades labelled, as one ``<div>``."""
    stops = shade_colors(np.logspace(np.log10(limits[0]), np.log10(limits[1]), 11), limits, colormap)
    decades = range(int(np.ceil(np.log10(limits[0]))), int(np.floor(np.log10(limits[1]))) + 1)
    span = np.log10(limits[1]) - np.log10(limits[0])
    labels = "".join(
        f'<span style="position: absolute; left: {100 * (d - np.log10(limits[0])) / span:.1f}%; '
        f'transform: translateX(-50%)">10<sup>{d}</sup></span>' for d in decades)
    return (f'<div style="font-size: 11px; margin: 0.3em 0 1.2em 0; padding: 0 1em; max-width: 340px">'
            f'<div>Ĝ(j, r) = G(j, j − r) / G(j, j), log scale (clipped to '
            f'[{limits[0]:g}, {limits[1]:g}]); unshaded: left buffer, not measured</div>'
            f'<div style="height: 12px; border: 1px solid #888; '
            f'background: linear-gradient(to right, {", ".join(stops)})"></div>'
            f'<div style="position: relative; height: 1.4em">{labels}</div></div>')


def shaded_text_html(run: ProfileRun, tokenizer: Any, window: int = 0, target_index: int = 0,
                     selection: Selection = "pred", limits: tuple[float, float] = LIMITS,
                     colormap: str = COLORMAP, context: int | None = None) -> str:
    """One (window, target) of a ``full_rows`` run as shaded text: a ``<div>`` of one span per token.

    Args:
        run: a stored run measured with ``full_rows``.
        tokenizer: the run's tokenizer (anything with ``decode(list_of_ids) -> str``).
        window, target_index: which row (window ``window``, target ``targets[target_index]``).
        selection: ``"pred"`` (the predicted token's logit, the paper's figures) or ``"true"``.
        limits, colormap: the colour scale (:func:`shade_colors`); keep them equal across panels.
        context: show this many tokens before the target (default: the whole window up to it).

    Returns:
        an HTML fragment. Each token from ``j - context`` to the target ``j`` is one ``<span>``;
        those with a value carry ``data-g`` (``Ĝ``), ``data-r`` (the distance) and a background colour.
    """
    target = int(run.targets[target_index])
    values = normalized_full_row(run, window, target_index, selection)
    ids = run.arrays["window_ids"][window]
    first = 0 if context is None else max(0, target - int(context))
    positions = np.arange(first, target + 1)
    shaded = positions[np.isfinite(values[positions])]
    colors = dict(zip(shaded.tolist(), shade_colors(values[shaded], limits, colormap)))
    spans = []
    for position, text in zip(positions.tolist(), _token_texts(tokenizer, ids[positions])):
        escaped = html.escape(text)
        outline = "outline: 2px solid #1f4e9c; outline-offset: 1px; " if position == target else ""
        if position not in colors:
            spans.append(f'<span style="{outline}color: #777" title="s = {position}: in the buffer, '
                         f'not measured">{escaped}</span>')
            continue
        value, distance, color = float(values[position]), target - position, colors[position]
        spans.append(f'<span style="{outline}background-color: {color}; color: {_text_color(color)}" '
                     f'title="r = {distance}, Ĝ = {value:.3g}" data-r="{distance}" data-g="{value!r}">'
                     f'{escaped}</span>')
    observed, predicted = (int(run.arrays[f"{name}_tokens"][window, target_index]) for name in ("true", "pred"))
    observed_text, predicted_text = (html.escape(repr(text)[1:-1]) for text in
                                     _token_texts(tokenizer, [observed, predicted]))
    verdict = "right" if observed == predicted else "wrong"
    after = (f'<span style="color: #1f4e9c; font-weight: bold"> ⟵ target j = {target}; next token: observed '
             f'“{observed_text}”, predicted “{predicted_text}” ({verdict}); shading: the '
             f'{"predicted" if selection == "pred" else "observed"} token\'s logit</span>')
    return f'<div style="{_TEXT_STYLE}">{"".join(spans)}{after}</div>'


def side_by_side_html(runs: Mapping[str, ProfileRun], tokenizer: Any, window: int = 0, target_index: int = 0,
                      selection: Selection = "pred", limits: tuple[float, float] = LIMITS,
                      colormap: str = COLORMAP, context: int | None = None) -> str:
    """Several runs' shaded text for the same (window, target), side by side with one legend.

    Args:
        runs: panel title -> ``full_rows`` run (e.g. ``{"trained": ..., "random init": ...,
            "shuffled": ...}``); all share ``limits``, so equal colours mean equal ``Ĝ``.
        tokenizer, window, target_index, selection, limits, colormap, context: as for
            :func:`shaded_text_html`.

    Returns:
        one ``<div>``: the legend, then a row of panels (a flex box; panels wrap on narrow screens).
    """
    panels = []
    for title, run in runs.items():
        body = shaded_text_html(run, tokenizer, window, target_index, selection, limits, colormap, context)
        panels.append(f'<div style="flex: 1 1 0; min-width: 220px; border: 1px solid #ddd; padding: 0.5em">'
                      f'<div style="font-weight: bold; margin-bottom: 0.4em">{html.escape(title)}</div>'
                      f'{body}</div>')
    return (f'<div class="green-shading">{legend_html(limits, colormap)}'
            f'<div style="display: flex; flex-wrap: wrap; gap: 0.8em; align-items: flex-start">'
            f'{"".join(panels)}</div></div>')
