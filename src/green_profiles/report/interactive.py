"""Interactive companions of the book's crowded figures (plotly): hover for the numbers, click the legend to toggle.

The static matplotlib figures (:mod:`green_profiles.report.figures`) stay the primary ones (print, PDF); these
draw the same runs and tables with the same colours, so a reader can read off a distance's median, its
interval and the fitted law, and hide conditions to see the rest. Each condition is one legend group
(median, band and fit toggle together).

The figures carry no copy of plotly.js: :func:`html` emits a ``<div>`` that expects ``Plotly`` on the page,
which the book's Sphinx extension :mod:`green_profiles.report.plotly_offline` provides from the installed plotly
package, so the built book works offline (no CDN).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from green_profiles.runs.configuration import Selection
from green_profiles.report.figures import DEPTH_COLORMAP, _init_position, condition_color
from green_profiles.analysis.profiles import ProfileRun
from green_profiles.analysis.fits.resampling import resampled_profiles

# The figure's width follows the text column (responsive); its height is fixed.
HEIGHT = 460
CONFIG = {"responsive": True, "displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}
POWER_LAW = "c + A(r+1)^-p"
_DISTANCE_TITLE = "distance r = j − source (tokens)"
_PROFILE_TITLE = "Ĝ(r) = G(j, r) / G(j, 0)  (median)"


def median_interval(run: ProfileRun, selection: Selection = "pred", n_boot: int = 200, seed: int = 0,
                    confidence: float = 0.95, layer: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The percentile bootstrap interval of the median profile at every distance, resampling what the run's
    fits resample (whole documents, or windows for a run of few documents: :meth:`ProfileRun.resampling_unit`).

    Returns:
        ``(low, high)``, each ``[n_r]`` (dimensionless like ``Ĝ``; NaN where a distance has no valid value).
    """
    with warnings.catch_warnings():  # a run of few documents: its fits' bootstrap already says so
        warnings.simplefilter("ignore", UserWarning)
        _, labels = run.resampling_unit()
    # The same draws and the same multiplicity-weighted median as the fits' bootstrap.
    _, replicates, _ = resampled_profiles(run.normalized(selection, layer), labels, n_boot=n_boot, seed=seed)
    tail = 100 * (1 - confidence) / 2
    with warnings.catch_warnings():  # a distance no replicate reaches stays NaN, as meant
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(replicates, [tail, 100 - tail], axis=0)
    return low, high


def profiles_figure(runs: Mapping[str, ProfileRun], *, selection: Selection = "pred",
                    colors: Mapping[str, str] | None = None, n_boot: int = 200, seed: int = 0,
                    title: str = "") -> Any:
    """Median profiles ``Ĝ(r)``, ``r >= 1``, of several runs on log-log axes: one legend group per label.

    Each group holds the 95% bootstrap band of the median (:func:`median_interval`), the median (hover:
    ``r`` in tokens, the median, its interval and the fitted power law with floor at ``r``) and that fit
    as a dashed line over the fitted range (hover: its value and ``p``, ``c``).

    Args:
        runs: label -> run, drawn in this order; the label names the legend group.
        colors: label -> colour (default :func:`~green_profiles.report.figures.condition_color`).
    Returns:
        a ``plotly.graph_objects.Figure``.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for index, (label, run) in enumerate(runs.items()):
        color = (colors or {}).get(label) or condition_color(label, index)
        r = run.distances[1:].astype(float)
        median = run.profile(selection)["median"].to_numpy()[1:]
        low, high = (values[1:] for values in median_interval(run, selection, n_boot=n_boot, seed=seed))
        law = run.fit(selection).get("power_floor")
        fitted = law is not None and law.success and not law.flat
        _band(fig, r, low, high, color=color, group=label)
        at_r = law.curve(r) if fitted else np.full(r.size, np.nan)
        fig.add_trace(go.Scatter(
            x=r, y=_positive(median), mode="lines+markers", name=label, legendgroup=label,
            line={"color": color, "width": 1.8}, marker={"size": 5},
            customdata=np.column_stack([low, high, at_r]),
            hovertemplate=(f"<b>{label}</b><br>r = %{{x:.0f}} tokens<br>median Ĝ = %{{y:.4g}}<br>"
                           "95% interval [%{customdata[0]:.4g}, %{customdata[1]:.4g}]<br>"
                           + (f"fit {POWER_LAW} = %{{customdata[2]:.4g}}" if fitted
                              else f"no usable fit of {POWER_LAW} (flat or at a bound)")
                           + f"<extra>{run.n_rows} rows</extra>")))
        if fitted:
            grid = np.geomspace(law.r_min, law.r_max, 120)
            fig.add_trace(go.Scatter(
                x=grid, y=law.curve(grid), mode="lines", name=f"{label}: fit", legendgroup=label, showlegend=False,
                line={"color": color, "width": 1.3, "dash": "dash"},
                hovertemplate=(f"<b>{label}</b>: {POWER_LAW}<br>r = %{{x:.1f}}: %{{y:.4g}}<br>"
                               f"p = {law.params['p']:.3f}, c = {law.params['c']:.3g}<extra></extra>")))
    _log_axes(fig, title)
    return fig


def layer_profiles_figure(run: ProfileRun, *, selection: Selection = "pred", layers: Sequence[int] | None = None,
                          title: str = "") -> Any:
    """The median profile of every decoder block's input (a ``per_layer`` run), ``r >= 1`` on log-log axes,
    coloured by depth as :func:`~green_profiles.report.figures.plot_layer_profiles` (dark = the embeddings), one legend
    entry per block. Hover: block, ``r``, the median and its 25–75% quantiles over rows.

    Raises:
        ValueError: the run has no per-layer rows.
    """
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go
    from matplotlib.colors import to_hex

    if not run.n_layers:
        raise ValueError(f"run {run.key} was measured without per_layer: it has no per-layer rows")
    cmap = plt.get_cmap(DEPTH_COLORMAP)
    r = run.distances[1:].astype(float)
    fig = go.Figure()
    for layer in range(run.n_layers) if layers is None else layers:
        profile = run.layer_profile(layer, selection).iloc[1:]
        name = f"block {layer} input"
        fig.add_trace(go.Scatter(
            x=r, y=_positive(profile["median"].to_numpy()), mode="lines+markers", name=name, legendgroup=name,
            line={"color": to_hex(cmap(layer / max(run.n_layers - 1, 1))), "width": 1.4}, marker={"size": 4},
            customdata=profile[["q25", "q75"]].to_numpy(),
            hovertemplate=(f"<b>{name}</b><br>r = %{{x:.0f}} tokens<br>median Ĝ_l = %{{y:.4g}}<br>"
                           "25–75% of rows [%{customdata[0]:.4g}, %{customdata[1]:.4g}]<extra></extra>")))
    _log_axes(fig, title, y_title="Ĝ_l(r) = G_l(j, r) / G_l(j, 0)  (median)")
    return fig


def against_tokens_figure(table: Any, value: str = "p", *, colors: Mapping[str, str] | None = None,
                          title: str = "") -> Any:
    """A dynamics table's ``value`` (``"p"``, ``"floor"``, ``"rmse_gap"``) with its 95% interval against
    training tokens (log axis), one legend group per model (size), as
    :func:`~green_profiles.report.figures.plot_against_tokens`: step 0 at an "init" position a factor 4 left of the
    first checkpoint, the ``@random`` twin as an open square a factor 3 further left. Hover: checkpoint, tokens,
    the value with its interval, the verdict. A checkpoint without an estimate (flat profile, fit at a bound)
    is a cross at ``value = 0`` (the axis' lower end for ``p``), its hover saying why.

    ``table`` is :func:`green_profiles.analysis.dynamics.dynamics_table`'s (``model``, ``checkpoint``, ``tokens``,
    ``value``, ``value_low``, ``value_high``, ``verdict_word``).
    """
    import plotly.graph_objects as go

    tokens = table["tokens"].to_numpy(dtype=float)
    init = _init_position(tokens)
    fig = go.Figure()
    for index, (model, group) in enumerate(table.groupby("model", sort=False)):
        color = (colors or {}).get(model) or condition_color(model, index)
        twin = group["checkpoint"] == "random init"
        part = group.assign(
            x=np.where(twin, init / 3, np.where(group["tokens"].to_numpy(dtype=float) > 0, group["tokens"], init)),
            order=np.where(twin, -1.0, group["tokens"].fillna(0.0)))
        part = part.sort_values("order")
        missing = part[~np.isfinite(part[value].to_numpy(dtype=float))]
        part = part[np.isfinite(part[value].to_numpy(dtype=float))]
        if not missing.empty:
            fig.add_trace(go.Scatter(
                x=missing["x"], y=np.zeros(len(missing)), mode="markers", name=f"{model}: no estimate",
                legendgroup=model, showlegend=part.empty, marker={"color": color, "size": 9, "symbol": "x-thin-open"},
                customdata=np.column_stack([missing["checkpoint"], missing["verdict_word"].fillna("")]),
                hovertemplate=(f"<b>{model}</b> · %{{customdata[0]}}<br>no estimate of {value}: "
                               "%{customdata[1]}<extra></extra>")))
        for is_twin, points in ((False, part[part["checkpoint"] != "random init"]),
                                (True, part[part["checkpoint"] == "random init"])):
            if points.empty:
                continue
            y = points[value].to_numpy(dtype=float)
            fig.add_trace(go.Scatter(
                x=points["x"], y=y, mode="markers" if is_twin else "lines+markers", name=model, legendgroup=model,
                showlegend=not is_twin, line={"color": color, "width": 1.5},
                marker={"size": 8 if is_twin else 6, "symbol": "square-open" if is_twin else "circle"},
                error_y={"type": "data", "symmetric": False, "color": color, "thickness": 1.2, "width": 3,
                         "array": np.clip(points[f"{value}_high"].to_numpy(dtype=float) - y, 0, None),
                         "arrayminus": np.clip(y - points[f"{value}_low"].to_numpy(dtype=float), 0, None)},
                customdata=np.column_stack([points["checkpoint"], points["tokens"].fillna(0.0),
                                            points[f"{value}_low"], points[f"{value}_high"],
                                            points["verdict_word"].fillna("")]),
                hovertemplate=(f"<b>{model}</b> · %{{customdata[0]}}<br>training tokens %{{customdata[1]:,.0f}}<br>"
                               f"{value} = %{{y:.3f}} [%{{customdata[2]:.3f}}, %{{customdata[3]:.3f}}]<br>"
                               "verdict: %{customdata[4]}<extra></extra>")))
    fig.update_layout(title=title, height=HEIGHT, template="plotly_white", hovermode="closest",
                      legend={"title": {"text": "click to toggle"}}, margin={"l": 60, "r": 20, "t": 50, "b": 50})
    fig.update_xaxes(type="log", title="training tokens seen (log scale; 'init' = step 0, square = random twin)",
                     exponentformat="power")
    fig.update_yaxes(title=value)
    return fig


def specification_curve_figure(table: Any, *, value: str = "p", paper_band: tuple[float, float] | None = None,
                               title: str = "", axes: Sequence[str] | None = None) -> Any:
    """A specification curve (:func:`~green_profiles.analysis.robustness.specification_curve`'s table) as
    :func:`~green_profiles.report.figures.plot_specification_curve` draws it, sorted by ``value``, one legend
    group per axis (click to hide an axis' specifications). Hover: the axis and choice, the value with its
    interval, its paired difference from the paper's protocol, the fitted range and the verdict. ``axes``: the
    axes in the legend's order, each with its colour by position (pass the same to every curve of a page;
    ``None``: the table's own order)."""
    import plotly.graph_objects as go

    ordered = table.sort_values(value, na_position="last").reset_index(drop=True)
    fig = go.Figure()
    if paper_band is not None:
        fig.add_hrect(y0=paper_band[0], y1=paper_band[1], fillcolor="#b8d4f0", opacity=0.5, line_width=0,
                      annotation_text=f"paper: p ≈ {paper_band[0]}–{paper_band[1]}", annotation_position="top left")
    from matplotlib import colormaps, colors  # deferred: as plotly, only for this figure

    palette = [colors.to_hex(color) for color in colormaps["tab10"].colors]  # ten axes, ten colours
    # Legend and colours in the axes' own order, whatever the sorting: every curve of the page colours an axis alike.
    own = [axis for axis in dict.fromkeys(table["axis"]) if axis != "paper"]
    known = list(own if axes is None else axes)
    known += [axis for axis in own if axis not in known]
    for axis in ["paper", *(axis for axis in known if axis in own)]:
        points = ordered[ordered["axis"] == axis]
        y = points[value].to_numpy(dtype=float)
        color = "black" if axis == "paper" else palette[known.index(axis) % len(palette)]
        fig.add_trace(go.Scatter(
            x=points.index.to_numpy() + 1, y=y, mode="markers", name=axis, legendgroup=axis,
            marker={"color": color, "size": 10 if axis == "paper" else 7, "symbol": "diamond" if axis == "paper" else "circle"},
            error_y={"type": "data", "symmetric": False, "color": color, "thickness": 1.2, "width": 3,
                     "array": np.clip(points[f"{value}_high"].to_numpy(dtype=float) - y, 0, None),
                     "arrayminus": np.clip(y - points[f"{value}_low"].to_numpy(dtype=float), 0, None)},
            customdata=np.column_stack([points["setting"], points[f"{value}_low"], points[f"{value}_high"],
                                        points["p − paper"].astype(str), points["fitted r"],
                                        points["verdict_word"].fillna("")]),
            hovertemplate=(f"<b>{axis}: %{{customdata[0]}}</b><br>{value} = %{{y:.3f}} [%{{customdata[1]:.3f}}, "
                           "%{customdata[2]:.3f}]<br>minus the paper's protocol: %{customdata[3]}<br>"
                           "fitted r: %{customdata[4]}<br>verdict: %{customdata[5]}<extra></extra>")))
    fig.update_layout(title=title, height=HEIGHT, template="plotly_white", hovermode="closest",
                      legend={"title": {"text": "axis changed (click to toggle)"}},
                      margin={"l": 60, "r": 20, "t": 50, "b": 50})
    fig.update_xaxes(title="specifications, sorted by the estimate")
    fig.update_yaxes(title=f"{value} of c + A(r+1)^-p (95% interval)")
    return fig


def html(fig: Any, name: str) -> Any:
    """The figure as an ``IPython.display.HTML`` ``<div>`` without plotly.js (the book's page loads it).

    ``name`` (unique on the page) and the figure's content give the ``<div>`` a stable id, so that
    re-executing a notebook on the same runs gives the same output.
    """
    from IPython.display import HTML

    digest = hashlib.sha256(f"{name}\n{fig.to_json()}".encode()).hexdigest()[:12]
    return HTML(fig.to_html(full_html=False, include_plotlyjs=False, config=CONFIG, div_id=f"gp-{digest}",
                            default_width="100%", default_height=f"{fig.layout.height or HEIGHT}px"))


def _band(fig: Any, r: np.ndarray, low: np.ndarray, high: np.ndarray, *, color: str, group: str) -> None:
    """A filled band between ``low`` and ``high`` (the upper edge filled down to the lower one), no hover."""
    import plotly.graph_objects as go
    from matplotlib.colors import to_rgba

    red, green, blue, _ = to_rgba(color)
    fill = f"rgba({red * 255:.0f}, {green * 255:.0f}, {blue * 255:.0f}, 0.2)"
    common = {"x": r, "mode": "lines", "line": {"width": 0}, "legendgroup": group, "showlegend": False,
              "hoverinfo": "skip"}
    fig.add_trace(go.Scatter(y=_positive(low), name=f"{group}: 95% low", **common))
    fig.add_trace(go.Scatter(y=_positive(high), name=f"{group}: 95% band", fill="tonexty", fillcolor=fill, **common))


def _log_axes(fig: Any, title: str, y_title: str = _PROFILE_TITLE) -> None:
    fig.update_layout(title=title, height=HEIGHT, template="plotly_white", hovermode="closest",
                      legend={"title": {"text": "click to toggle"}}, margin={"l": 60, "r": 20, "t": 50, "b": 50})
    fig.update_xaxes(type="log", title=_DISTANCE_TITLE)
    fig.update_yaxes(type="log", title=y_title, exponentformat="power")


def _positive(values: np.ndarray) -> np.ndarray:
    """NaN where a value cannot sit on a log axis (zero, negative, not finite): plotly then breaks the line."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values) & (values > 0), values, np.nan)
