"""Figures of the book: profiles on log-log axes with bands and fits, forest plots, the left-boundary hook,
and the text's own mutual information.

Every function draws into a matplotlib ``Axes`` it is given and returns what it
fitted, so notebooks stay a few lines long and colours stay the same on every
page: one colour per condition (:data:`CONDITION_COLORS`), one line style per
decay model (:data:`FIT_STYLES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from green_profiles.runs.configuration import Selection
from green_profiles.analysis.fits import NO_DECAY, PAPER_P_RANGE
from green_profiles.analysis.profiles import ProfileRun, source_profile
from green_profiles.analysis.text_statistics import MutualInformationFit, MutualInformationProfile
from green_profiles.kernel.counts import valid_mask

CONDITION_COLORS = {
    "coherent": "#1f5fa8",
    "shuffled": "#e07b00",
    "random init": "#6b6b6b",
    "gutenberg": "#1f5fa8",
    "wikipedia": "#2a9d55",
}
_EXTRA_COLORS = ("#8e44ad", "#c0392b", "#16a085", "#d4ac0d", "#34495e", "#e84393")
FIT_STYLES = {"power": ":", "power_floor": "--", "exp_floor": "-."}
FIT_LABELS = {"power": r"$A(r+1)^{-p}$", "power_floor": r"$c + A(r+1)^{-p}$", "exp_floor": r"$c + A\,e^{-r/\xi}$"}
PROFILE_YLABEL = r"$\hat G(r) = G(j, r)\,/\,G(j, 0)$   (dimensionless)"
DISTANCE_XLABEL = "distance r = j − source (tokens)"
MI_YLABEL = r"mutual information $I(X_t; X_{t+r})$ (bits)"
MI_XLABEL = "distance r between the two tokens (tokens)"
# Figures are drawn at about the width of the book's text column (~ 800 px at 110 dpi), so that
# their text appears at its nominal size on a laptop screen instead of being scaled down.
PANEL_SIZE = (7.4, 4.6)


def use_book_style() -> None:
    """Matplotlib and pandas display settings shared by every notebook of the book."""
    import matplotlib.pyplot as plt
    import pandas as pd

    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "font.size": 10, "axes.titlesize": 11,
                         "legend.fontsize": 8, "legend.framealpha": 0.85})
    pd.options.display.float_format = "{:.4g}".format


def panel_grid(n_panels: int, *, height: float = PANEL_SIZE[1], sharex: bool = True, sharey: bool = True) -> Any:
    """A figure of ``n_panels`` panels stacked vertically at the text column's width; returns ``(fig, axes)``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(n_panels, 1, figsize=(PANEL_SIZE[0], height * n_panels), sharex=sharex,
                             sharey=sharey, squeeze=False)
    return fig, list(axes[:, 0])


def condition_color(label: str, index: int = 0) -> str:
    """The colour of a condition (``"coherent"``, ``"shuffled"``, ``"random init"``, a corpus), else a fixed cycle."""
    return CONDITION_COLORS.get(label, _EXTRA_COLORS[index % len(_EXTRA_COLORS)])


def plot_profile(
    ax: Axes,
    run: ProfileRun,
    *,
    selection: Selection = "pred",
    label: str | None = None,
    color: str | None = None,
    rows_shown: int = 120,
    fits: Sequence[str] = ("power_floor", "exp_floor"),
    seed: int = 0,
) -> Any:
    """Median normalized profile over ``r >= 1`` on log-log axes, with its 25–75% band.

    Draws ``rows_shown`` individual rows faintly behind (a seeded random subset),
    the median with markers, and the fitted ``fits`` as lines whose legend
    entries carry the parameters. Returns the :class:`~green_profiles.analysis.fits.FitTable`.
    """
    color = color or condition_color(label or "coherent")
    label = label or f"{run.config.model} · {run.config.corpus}"
    r = run.distances[1:].astype(float)
    rows = run.normalized(selection)[:, 1:]
    if rows_shown:
        subset = np.random.default_rng(seed).permutation(len(rows))[:rows_shown]
        faint = np.where(valid_mask(rows[subset]), rows[subset], np.nan)
        ax.plot(r, faint.T, color=color, alpha=0.06, linewidth=0.6, zorder=1)
    profile = run.profile(selection).iloc[1:]
    ax.fill_between(r, profile["q25"], profile["q75"], color=color, alpha=0.22, linewidth=0, zorder=2,
                    label=f"{label}: 25–75%")
    ax.plot(r, profile["median"], "o-", color=color, markersize=3.5, linewidth=1.6, zorder=4,
            label=f"{label}: median ({run.n_rows} rows)")
    table = run.fit(selection)
    plot_fitted_laws(ax, table, np.geomspace(r[0], r[-1], 200), fits, color=color, linewidth=1.3, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(DISTANCE_XLABEL)
    ax.set_ylabel(PROFILE_YLABEL)
    ax.grid(True, which="major", alpha=0.3)
    return table


def plot_fitted_laws(ax: Axes, table: Any, r: np.ndarray, fits: Sequence[str], *, color: str, linewidth: float,
                     zorder: float | None = None) -> None:
    """Draw each successful law of ``fits`` from a fit table over the distances ``r``, its parameters
    in the legend (a failed or missing fit is left out)."""
    for name in fits:
        law = table.get(name)
        if law is None or not law.success:
            continue
        ax.plot(r, law.curve(r), FIT_STYLES[name], color=color, linewidth=linewidth, zorder=zorder,
                label=f"{FIT_LABELS[name]}: {describe_fit(law)}")


def describe_fit(fit: Any) -> str:
    """Short parameter text of a fit for a legend, e.g. ``p=0.82, c=0.011, RMSE 0.041``.

    A flat fit (no decay over the fitted range) shows only its level: its exponent means nothing.
    """
    params = fit.params
    if fit.flat:
        return f"flat at {fit.curve([fit.r_min])[0]:.2g}, RMSE {fit.rmse:.3f}"
    parts = []
    if "p" in params:
        parts.append(f"p={params['p']:.2f}")
    if "xi" in params:
        parts.append(f"ξ={params['xi']:.3g}")
    if "c" in params:
        parts.append(f"c={params['c']:.2g}")
    parts.append(f"RMSE {fit.rmse:.3f}")
    return ", ".join(parts)


def plot_forest(ax: Axes, summaries: Any, *, value: str = "p", paper_band: tuple[float, float] | None = PAPER_P_RANGE,
                max_shown: float = 3.0) -> None:
    """Point estimates with bootstrap intervals, one line per row of ``summaries``.

    ``summaries`` is a DataFrame with a ``label`` column and ``{value}``,
    ``{value}_low``, ``{value}_high`` (as built from :meth:`ProfileRun.summary`).
    ``paper_band`` shades the paper's range for ``p``. The axis ends at
    ``max_shown`` (or the largest interval end below 5, if larger), so that a
    degenerate fit (a flat profile drives ``p`` to its bound of 10) does not squeeze
    the others: such an estimate is drawn as an arrow at the edge with its value written.
    """
    labels = list(summaries["label"])
    y = np.arange(len(labels))[::-1]
    ends = summaries[f"{value}_high"].to_numpy(dtype=float)
    right = max(max_shown, *(ends[np.isfinite(ends) & (ends < 5.0)] * 1.05), 0.0)
    if paper_band is not None:
        ax.axvspan(*paper_band, color="#b8d4f0", alpha=0.5, zorder=0, label=f"paper: p ≈ {paper_band[0]}–{paper_band[1]}")
    for position, (_, row) in zip(y, summaries.iterrows(), strict=True):
        color = row.get("color") or condition_color(str(row["label"]))
        estimate, low, high = (float(row[key]) for key in (value, f"{value}_low", f"{value}_high"))
        if not np.isfinite(estimate):
            word = row.get("verdict_word")
            why = f"{word} — no decay" if word in NO_DECAY else "no estimate (fit failed or at a bound)"
            ax.text(0.02 * right, position, why, va="center", fontsize="small", color=color)
            continue
        if estimate > right:
            ax.plot([min(low, right), right], [position, position], color=color, linewidth=1.2)
            ax.plot(right, position, ">", color=color, markersize=7, clip_on=False)
            ax.text(0.98 * right, position + 0.18, f"{value} = {estimate:.2f} [{low:.2f}, {high:.2f}]: beyond the axis",
                    ha="right", fontsize="small", color=color)
            continue
        ax.errorbar(estimate, position, xerr=[[estimate - low], [min(high, right) - estimate]],
                    fmt="o", color=color, capsize=3, markersize=5)
    ax.set_xlim(0.0, right)
    ax.set_ylim(y.min() - 0.6, y.max() + 0.6)
    ax.set_yticks(y, labels)
    units = set(summaries["bootstrap_unit"]) if "bootstrap_unit" in summaries else {"window"}
    ax.set_xlabel(f"decay exponent p of {FIT_LABELS['power_floor']} (95% {'/'.join(sorted(units))}-bootstrap "
                  "interval)" if value == "p" else value)
    ax.grid(True, axis="x", alpha=0.3)
    if paper_band is not None:
        ax.legend(loc="lower right", fontsize="small")


def plot_source_profile(ax: Axes, run: ProfileRun, *, selection: Selection = "pred", label: str | None = None,
                        color: str | None = None, buffer: int | None = None) -> None:
    """Median normalized sensitivity against the source's position in the window (the left-boundary hook).

    Meant for a dense run (every distance, no buffer, one target near the end):
    the x axis is the source position ``s = j − r`` (tokens from the window
    start). A rise towards ``s = 0`` is the hook the paper's buffer avoids;
    ``buffer`` shades the sources a buffered run leaves out.
    """
    color = color or condition_color(label or "coherent")
    profile = source_profile(run, selection)
    sources = profile.index.to_numpy()
    targets = f"target j = {int(run.targets[0])}" if len(run.targets) == 1 else f"{len(run.targets)} targets"
    ax.fill_between(sources, profile["q25"], profile["q75"], color=color, alpha=0.2, linewidth=0)
    ax.plot(sources, profile["median"], color=color, linewidth=1.2,
            label=f"{label or run.config.model}: median over {run.n_rows} rows ({targets})")
    if buffer:
        ax.axvspan(0, buffer, color="#f3c6c6", alpha=0.35, zorder=0, label=f"left buffer (sources < {buffer})")
    ax.set_yscale("log")
    ax.set_xlabel("source position s = j − r in the window (tokens)")
    ax.set_ylabel(PROFILE_YLABEL)
    ax.grid(True, alpha=0.3)


def plot_fit_range(ax: Axes, scan: Any, *, model: str = "power_floor", paper_band: tuple[float, float] | None = PAPER_P_RANGE) -> None:
    """``p`` against the smallest and the largest fitted distance (a :func:`fit_range_scan` table).

    A fit on the last few distances alone can run to the bound ``p = 10`` with a
    huge standard error; the y axis is limited to the plausible range (``0..3``
    or the largest well-determined ``p``), so such points do not flatten the rest,
    and each scan's points are joined only where the fit is usable (not failed, flat or stuck at a bound).
    """
    if paper_band is not None:
        ax.axhspan(*paper_band, color="#b8d4f0", alpha=0.5, zorder=0, label="paper's range")
    for scan_kind, column, marker, text in (("r_min", "r_min", "o", "smallest fitted r (largest fixed)"),
                                            ("r_max", "r_max", "s", "largest fitted r (from r = 1)")):
        part = scan[(scan["scan"] == scan_kind) & (scan["model"] == model) & scan["usable"]]
        ax.errorbar(part[column], part["p"], yerr=part["p_stderr"].fillna(0), fmt=marker + "-", capsize=2,
                    markersize=4, label=f"varying the {text}")
    finite = scan[(scan["model"] == model) & scan["usable"] & (scan["p_stderr"] < 1.0)]["p"]
    ax.set_ylim(0.0, max(3.0, float(finite.max()) * 1.1) if len(finite) else 3.0)
    if not (scan["usable"] & (scan["model"] == model)).any():
        import pandas as pd

        # Nothing drawn (a flat profile, or a few rows): the log axis still needs a positive range.
        cut_offs = pd.concat([scan["r_min"], scan["r_max"]]).astype(float)
        cut_offs = cut_offs[np.isfinite(cut_offs) & (cut_offs > 0)]
        ax.set_xlim(float(cut_offs.min()) if len(cut_offs) else 1.0, float(cut_offs.max()) if len(cut_offs) else 10.0)
        ax.text(0.5, 0.5, "no usable fit at any cut-off\n(flat profile or failed fits)", transform=ax.transAxes,
                ha="center", va="center", fontsize="small")
    ax.set_xscale("log")
    ax.set_xlabel("cut-off distance (tokens)")
    ax.set_ylabel(f"fitted p of {FIT_LABELS[model]}\n(± standard error)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")


def plot_mutual_information(ax: Axes, profile: MutualInformationProfile, fit: MutualInformationFit | None = None, *,
                            label: str, color: str, fits: Sequence[str] = ("power_floor", "exp_floor"),
                            marker: str = "o") -> None:
    """The corrected ``I(r)`` of a text on log-log axes, with its 95% interval band and, given a ``fit``, the
    fitted laws (parameters in the legend).

    A log axis cannot show zero or a negative value: values ``<= 0`` are not drawn
    (the legend counts them; the line breaks there), and the band is drawn only
    where the whole interval is above zero. Points outside the fitted range are drawn open.
    """
    r = profile.distances.astype(float)
    value = profile.corrected
    low, high = profile.interval()
    positive = np.isfinite(value) & (value > 0)
    banded = positive & np.isfinite(low) & (low > 0)
    if banded.any():
        ax.fill_between(r, np.where(banded, low, np.nan), np.where(banded, high, np.nan), where=banded,
                        color=color, alpha=0.2, linewidth=0)
    fitted = np.isin(profile.distances, fit.fitted) if fit is not None else np.ones(r.size, dtype=bool)
    hidden = int((~positive).sum())
    note = f"; {hidden} distances ≤ 0 not drawn" if hidden else ""
    ax.plot(r, np.where(positive & fitted, value, np.nan), marker + "-", color=color, markersize=3.5,
            linewidth=1.4, label=f"{label}: I(r), 95% interval{note}")
    if (positive & ~fitted).any():
        ax.plot(r[positive & ~fitted], value[positive & ~fitted], marker, color=color, markersize=4,
                markerfacecolor="white", linestyle="none", label=f"{label}: not fitted")
    if fit is not None and fit.fitted.size:
        plot_fitted_laws(ax, fit.table, np.geomspace(float(fit.fitted[0]), float(fit.fitted[-1]), 200), fits,
                         color=color, linewidth=1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(MI_XLABEL)
    ax.set_ylabel(MI_YLABEL)
    ax.grid(True, which="major", alpha=0.3)


def plot_estimator_bias(ax: Axes, profile: MutualInformationProfile, *, label: str, color: str) -> None:
    """What the corrections do, on log-log axes: the plug-in and Miller–Madow ``I(r)``, the rotation baseline
    (the estimate for independent tokens), and the corrected ``I(r)`` with either baseline (bits)."""
    r = profile.distances.astype(float)
    curves = [(profile.plugin, ":", "plug-in"), (profile.miller_madow, "--", "Miller–Madow"),
              (profile.baseline, "-", "baseline: Miller–Madow of re-paired tokens (rotation)"),
              (profile.permutation_corrected, "-.", "Miller–Madow − uniform-permutation baseline"),
              (profile.corrected, "o-", "Miller–Madow − rotation baseline (reported)")]
    for values, style, text in curves:
        positive = np.isfinite(values) & (values > 0)
        grey = text.startswith("baseline")
        ax.plot(r[positive], values[positive], style, color="#6b6b6b" if grey else color, markersize=3,
                linewidth=1.2, label=f"{label}: {text}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(MI_XLABEL)
    ax.set_ylabel(MI_YLABEL)
    ax.grid(True, which="major", alpha=0.3)


def plot_mutual_information_levels(ax: Axes, profiles: Sequence[tuple[str, str, MutualInformationProfile]]) -> None:
    """Corrected ``I(r)`` with 95% intervals on a linear scale (log ``r``), so that values at and below zero show:
    for the shuffled controls. ``profiles`` holds ``(label, colour, profile)``."""
    for index, (label, color, profile) in enumerate(profiles):
        low, high = profile.interval()
        # Offset each series a little along r, so that intervals at the same distance do not hide each other.
        r = profile.distances * (1.0 + 0.06 * (index - (len(profiles) - 1) / 2))
        value = profile.corrected
        have = np.isfinite(low) & np.isfinite(high)
        ax.errorbar(r[have], value[have], yerr=[value[have] - low[have], high[have] - value[have]], fmt="o",
                    color=color, markersize=3, capsize=2, linewidth=1, label=label)
        ax.plot(r[~have], value[~have], "o", color=color, markersize=3)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(MI_XLABEL)
    ax.set_ylabel(MI_YLABEL)
    ax.grid(True, alpha=0.3)


TOKENS_XLABEL = "training tokens seen (log scale; 'init' = step 0)"
TRAJECTORY_YLABELS = {
    "p": f"exponent p of {FIT_LABELS['power_floor']}",
    "floor": f"floor γ = c of {FIT_LABELS['power_floor']}",
    "rmse_gap": "log-RMSE gap exp − power (both with floor)",
}


def _init_position(tokens: np.ndarray) -> float:
    """Where step 0 sits on a log axis of training tokens: a factor 4 left of the first later checkpoint (the
    random twins a factor 3 further left)."""
    positive = tokens[np.isfinite(tokens) & (tokens > 0)]
    return float(positive.min()) / 4.0 if positive.size else 1.0


def _token_axis(ax: Axes, init: float, tokens: np.ndarray) -> None:
    """A log axis of training tokens with "rand." and "init" ticks left of the first checkpoint, decades after."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ticks = [tick for tick in 10.0 ** np.arange(0, 13) if init * 2 < tick <= np.nanmax(tokens) * 2]
    ax.set_xticks([init / 3, init, *ticks], ["rand.", "init", *(f"{tick:.0e}".replace("e+0", "e") for tick in ticks)])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(TOKENS_XLABEL)


def plot_against_tokens(ax: Axes, table: Any, value: str, *, colors: dict[str, str] | None = None,
                        paper_band: tuple[float, float] | None = None, log_y: bool = False) -> None:
    """A dynamics table's ``value`` (``"p"``, ``"floor"`` or ``"rmse_gap"``) with its 95% interval against
    training tokens on a log axis, one line per model (size); step 0 is drawn at an "init" tick, and each
    model's ``@random`` twin as an open square just left of it. A checkpoint without an estimate (flat
    profile, fit at a bound) is left out of the line and marked by a cross on the axis' lower edge.

    ``table`` is :func:`green_profiles.analysis.dynamics.dynamics_table`'s (columns ``model``, ``checkpoint``,
    ``tokens``, ``value``, ``value_low``, ``value_high``). ``log_y`` puts the values on a log axis when any is
    positive (a table of flat profiles only has none).
    """
    from matplotlib.transforms import blended_transform_factory

    tokens = table["tokens"].to_numpy(dtype=float)
    init = _init_position(tokens)
    edge = blended_transform_factory(ax.transData, ax.transAxes)
    for index, (model, group) in enumerate(table.groupby("model", sort=False)):
        color = (colors or {}).get(model) or condition_color(model, index)
        trained = group[group["checkpoint"] != "random init"].sort_values("tokens")
        x = np.where(trained["tokens"].to_numpy(dtype=float) > 0, trained["tokens"].to_numpy(dtype=float), init)
        y = trained[value].to_numpy(dtype=float)
        low, high = trained[f"{value}_low"].to_numpy(dtype=float), trained[f"{value}_high"].to_numpy(dtype=float)
        ok = np.isfinite(y)
        ax.errorbar(x[ok], y[ok], yerr=[np.clip(y[ok] - low[ok], 0, None), np.clip(high[ok] - y[ok], 0, None)],
                    fmt="o-", color=color, capsize=2.5, markersize=4, linewidth=1.3, label=model)
        ax.plot(x[~ok], np.zeros((~ok).sum()), "x", color=color, transform=edge, clip_on=False, markersize=6)
        for _, twin in group[group["checkpoint"] == "random init"].iterrows():
            if np.isfinite(twin[value]):
                ax.errorbar(init / 3, twin[value], yerr=[[max(twin[value] - twin[f"{value}_low"], 0)],
                                                           [max(twin[f"{value}_high"] - twin[value], 0)]],
                            fmt="s", mfc="white", color=color, capsize=2.5, markersize=5)
            else:
                ax.plot(init / 3, 0.0, "s", mfc="white", color=color, transform=edge, clip_on=False, markersize=5)
    if paper_band is not None:
        ax.axhspan(*paper_band, color="#b8d4f0", alpha=0.5, zorder=0, label=f"paper: p ≈ {paper_band[0]}–{paper_band[1]}")
    if value == "rmse_gap":
        ax.axhline(0.0, color="black", linewidth=0.8, alpha=0.6)
    if log_y and (table[value].to_numpy(dtype=float) > 0).any():
        ax.set_yscale("log")
    _token_axis(ax, init, tokens)
    ax.set_ylabel(TRAJECTORY_YLABELS.get(value, value))
    ax.grid(True, alpha=0.3)


def plot_loss_curves(ax: Axes, table: Any, *, colors: dict[str, str] | None = None) -> None:
    """Held-out (solid) and training-sequence (dashed) loss against training tokens, one colour per size, from
    :func:`green_profiles.analysis.dynamics.perplexity_table`; each size's random twin's held-out loss as an open square."""
    tokens = table["tokens"].to_numpy(dtype=float)
    init = _init_position(tokens)
    for index, (size, group) in enumerate(table.groupby("size", sort=False)):
        color = (colors or {}).get(size) or condition_color(size, index)
        trained = group[group["checkpoint"] != "random init"].sort_values("tokens")
        x = np.where(trained["tokens"] > 0, trained["tokens"], init)
        ax.plot(x, trained["heldout_loss"], "o-", color=color, markersize=4, label=f"{size}: held-out")
        ax.plot(x, trained["train_eval_loss"], "--", color=color, linewidth=1.1, label=f"{size}: training text")
        twin = group[group["checkpoint"] == "random init"]
        ax.plot(np.full(len(twin), init / 3), twin["heldout_loss"], "s", mfc="white", color=color, markersize=5)
    _token_axis(ax, init, tokens)
    ax.set_ylabel("next-token loss (nats per token)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncols=2)
DEPTH_COLORMAP = "viridis"
LAYER_XLABEL = "block l whose input x_l is perturbed (0 = the embeddings; larger = fewer blocks above)"


def plot_layer_profiles(ax: Axes, run: ProfileRun, *, selection: Selection = "pred",
                        layers: Sequence[int] | None = None, colorbar: bool = True) -> None:
    """Median normalized profile of every decoder block's input, over ``r >= 1`` on log-log axes, coloured
    by depth (:data:`DEPTH_COLORMAP`, dark = the embeddings, light = the last block's input).

    ``run`` must be measured with ``per_layer``; ``layers`` picks which are drawn (default all).
    A colour bar names the layers.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    chosen = list(range(run.n_layers)) if layers is None else list(layers)
    if not chosen:
        raise ValueError(f"run {run.key} has no per-layer rows to draw")
    cmap = plt.get_cmap(DEPTH_COLORMAP)
    scale = Normalize(vmin=0, vmax=max(run.n_layers - 1, 1))
    r = run.distances[1:].astype(float)
    for layer in chosen:
        median = run.layer_profile(layer, selection)["median"].to_numpy()[1:]
        ax.plot(r, np.where(median > 0, median, np.nan), "o-", color=cmap(scale(layer)), markersize=2.5,
                linewidth=1.1, alpha=0.9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(DISTANCE_XLABEL)
    ax.set_ylabel(r"$\hat G_l(r) = G_l(j, r)\,/\,G_l(j, 0)$   (median)")
    ax.grid(True, which="major", alpha=0.3)
    if colorbar:
        bar = ax.figure.colorbar(plt.cm.ScalarMappable(norm=scale, cmap=cmap), ax=ax, pad=0.02)
        bar.set_label("block l (input x_l)")


def plot_by_layer(ax: Axes, table: Any, *, value: str = "p", label: str, color: str, offset: float = 0.0) -> None:
    """A statistic of each layer with its 95% bootstrap interval, against the layer (a
    :func:`green_profiles.analysis.depth.layer_summaries` table: ``{value}``, ``{value}_low``, ``{value}_high``,
    ``verdict_word``, indexed by ``layer``).

    Layers without an estimate (a flat profile, or a fit at a bound) are marked with
    an open marker on the x axis, so that "no decay" shows instead of vanishing.
    ``offset`` shifts the points along x so that two series at the same layers stay apart.
    """
    layers = table.index.to_numpy(dtype=float) + offset
    estimate = table[value].to_numpy(dtype=float)
    low, high = table[f"{value}_low"].to_numpy(dtype=float), table[f"{value}_high"].to_numpy(dtype=float)
    have = np.isfinite(estimate)
    # An interval can miss its estimate (all usable replicates on one side): draw the bar from the interval.
    below = np.where(np.isfinite(low), np.clip(estimate - low, 0, None), 0.0)
    above = np.where(np.isfinite(high), np.clip(high - estimate, 0, None), 0.0)
    if have.any():
        ax.errorbar(layers[have], estimate[have], yerr=[below[have], above[have]], fmt="o-", color=color,
                    markersize=4, capsize=2.5, linewidth=1.1, label=f"{label} (95% bootstrap interval)")
    if (~have).any():
        ax.plot(layers[~have], np.zeros((~have).sum()), "o", color=color, markerfacecolor="white",
                markersize=6, clip_on=False, label=f"{label}: flat or no usable fit ({int((~have).sum())} layers)")
    ax.set_xlabel(LAYER_XLABEL)
    ax.grid(True, alpha=0.3)


SLOPE_YLABEL = r"local slope $-\,d\log\hat G\,/\,d\log(r+1)$   (dimensionless)"


def plot_local_slope(ax: Axes, result: Any, *, label: str, color: str,
                     paper_band: tuple[float, float] | None = None) -> None:
    """A :class:`~green_profiles.analysis.local_slope.LocalSlope` against ``r`` on a log axis: the slope, its
    bootstrap band, and its plateau (a horizontal bar at the level, the level's interval shaded over its
    range, the value written). ``paper_band`` shades the paper's range of ``p`` once."""
    r = np.asarray(result.distances, dtype=float)
    ax.fill_between(r, result.low, result.high, color=color, alpha=0.2, linewidth=0)
    ax.plot(r, result.slope, "o-", color=color, markersize=3.5, linewidth=1.4, label=label)
    found = result.plateau
    if found is not None:
        ax.fill_between([found.start, found.stop], found.low, found.high, color=color, alpha=0.25, hatch="//",
                        linewidth=0)
        ax.plot([found.start, found.stop], [found.level] * 2, color=color, linewidth=2.5, alpha=0.8)
        # A plateau whose interval holds zero is a floor (no decay), not an exponent; its label goes below the
        # zero line, where it does not sit on another curve's plateau label.
        floor = not found.decays
        ax.annotate(f"{'no decay' if floor else 'plateau'} {found.level:.2f} [{found.low:.2f}, {found.high:.2f}]",
                    (found.stop, found.level), textcoords="offset points", xytext=(4, -12 if floor else 4),
                    fontsize="small", color=color)
    if paper_band is not None:
        ax.axhspan(*paper_band, color="#b8d4f0", alpha=0.5, zorder=0, label=f"paper: p ≈ {paper_band[0]}–{paper_band[1]}")
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(DISTANCE_XLABEL)
    ax.set_ylabel(SLOPE_YLABEL)
    ax.grid(True, which="both", alpha=0.3)


def plot_specification_curve(ax_estimates: Axes, ax_choices: Axes, table: Any, axes: dict[str, Sequence[str]], *,
                             value: str = "p", paper_band: tuple[float, float] | None = PAPER_P_RANGE,
                             color: str = "#1f77b4") -> Any:
    """A specification curve: one point per specification sorted by ``value``, with its interval, above a
    panel of dots marking which choice of each axis produced it (Simonsohn, Simmons and Nelson 2020).

    Args:
        ax_estimates, ax_choices: the upper and lower panels (sharing their x axis).
        table: a DataFrame, one row per specification: a column per axis holding its choice, and ``value``,
            ``{value}_low``, ``{value}_high``.
        axes: each axis' name (a column of ``table``) with its choices, in the order to list them.
        paper_band: shades the paper's range of ``value``.

    Returns:
        the table sorted as drawn.
    """
    ordered = table.sort_values(value, na_position="last").reset_index(drop=True)
    x = np.arange(len(ordered))
    estimate = ordered[value].to_numpy(dtype=float)
    low = ordered[f"{value}_low"].to_numpy(dtype=float)
    high = ordered[f"{value}_high"].to_numpy(dtype=float)
    if paper_band is not None:
        ax_estimates.axhspan(*paper_band, color="#b8d4f0", alpha=0.5, zorder=0,
                             label=f"paper: p ≈ {paper_band[0]}–{paper_band[1]}")
    ax_estimates.errorbar(x, estimate, yerr=[estimate - low, high - estimate], fmt="o", color=color,
                          markersize=4, capsize=2, linewidth=1)
    ax_estimates.set_ylabel(f"{value} (95% interval)")
    ax_estimates.grid(True, axis="y", alpha=0.3)
    if paper_band is not None:
        ax_estimates.legend(loc="upper left", fontsize="small")
    rows, labels = [], []
    for name, choices in axes.items():
        for choice in choices:
            rows.append((name, choice))
            labels.append(f"{name}: {choice}")
    y = np.arange(len(rows))[::-1]
    for position, (name, choice) in zip(y, rows, strict=True):
        chosen = (ordered[name].astype(str) == str(choice)).to_numpy()
        ax_choices.plot(x[chosen], np.full(chosen.sum(), position), "s", color=color, markersize=4)
        ax_choices.plot(x[~chosen], np.full((~chosen).sum(), position), "s", color="0.88", markersize=4)
    ax_choices.set_yticks(y, labels, fontsize="small")
    ax_choices.set_xlabel("specifications, sorted by the estimate")
    ax_choices.set_xticks([])
    return ordered
