"""Where along a model's depth the decay forms: the profiles of a ``per_layer`` run, block by block.

For a run measured with ``per_layer`` (:class:`~green_profiles.runs.configuration.RunConfig`),
layer ``l``'s profile is the median over rows of ``G_l(j, r) / G_l(j, 0)``, with
``G_l(j, r) = || d z[j, v] / d x_l[j - r] ||`` and ``x_l`` the hidden state entering
decoder block ``l``: how blocks ``l .. n-1`` carry a perturbation at ``j - r`` to the
logit at ``j``. Layer 0 (the embeddings) is the ordinary profile, made by every block;
the last layer's is what the last block alone spreads. Each layer is fitted and
bootstrapped exactly as a whole run is (:meth:`~green_profiles.analysis.profiles.ProfileRun.summary`
with ``layer``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from green_profiles.analysis.comparison import compare_many
from green_profiles.analysis.fits import N_BOOT
from green_profiles.runs.configuration import Selection
from green_profiles.analysis.profiles import ProfileRun


def summarized_layers(n_layers: int, step: int = 1) -> list[int]:
    """Every ``step``-th layer from 0, and always the last one: the layers a notebook fits and bootstraps.

    Raises:
        ValueError: ``n_layers`` or ``step`` below 1.
    """
    if n_layers < 1 or step < 1:
        raise ValueError(f"need n_layers >= 1 and step >= 1, got {n_layers} and {step}")
    return sorted({*range(0, n_layers, step), n_layers - 1})


def layer_summaries(run: ProfileRun, selection: Selection = "pred", n_boot: int = N_BOOT, seed: int = 0,
                    layers: Sequence[int] | None = None) -> Any:
    """One line per layer: :meth:`ProfileRun.summary` of its profile (``p``, the log-RMSE gap exp − power,
    their 95% bootstrap intervals, the verdict), indexed by ``layer``.

    Every layer's bootstrap draws the same documents (the same ``seed``), so the layers'
    intervals come from the same resampled text, and ``p_vs_first`` compares each layer's ``p`` with
    the first summarized layer's, paired over those documents: a difference is resolved when its
    bootstrap p-value (``p_vs_first_pvalue``), Holm-adjusted over every layer compared with the first
    (``p_vs_first_holm``), is below 0.05, and the text says over how many block inputs
    (:func:`~green_profiles.analysis.comparison.compare_many`). The first layer's line has ``"—"`` and NaN.

    Args:
        run: a run measured with ``per_layer``.
        layers: the layers to summarize (default every one).

    Raises:
        ValueError: the run has no per-layer rows.
    """
    import pandas as pd

    if not run.n_layers:
        raise ValueError(f"run {run.key} was measured without per_layer: it has no per-layer rows")
    chosen = list(range(run.n_layers) if layers is None else layers)
    results = {layer: run.bootstrap(selection, n_boot=n_boot, seed=seed, layer=layer) for layer in chosen}
    compared = compare_many({layer: (result, results[chosen[0]]) for layer, result in results.items()
                             if layer != chosen[0]}, "block inputs")
    records = [run.summary(selection, layer=layer, result=result) | (
                   {"p_vs_first": compared[layer].text, "p_vs_first_pvalue": compared[layer].pvalue,
                    "p_vs_first_holm": compared[layer].adjusted} if layer in compared
                   else {"p_vs_first": "—", "p_vs_first_pvalue": math.nan, "p_vs_first_holm": math.nan})
               for layer, result in results.items()]
    return pd.DataFrame.from_records(records).set_index("layer")


def power_law_layers(table: Any) -> str:
    """Which summarized layers read "power law": ``"9 of 11 (0–24)"`` (lowest–highest of them), or ``"none of 11"``."""
    hits = [int(layer) for layer, word in table["verdict_word"].items() if word == "power law"]
    if not hits:
        return f"none of {len(table)}"
    return f"{len(hits)} of {len(table)} ({min(hits)}–{max(hits)})"


def verdict_counts(table: Any) -> str:
    """Every verdict of the summarized layers with how many read it, commonest first:
    ``"power law at 9, undecided at 2 of 11 block inputs"``."""
    counts = table["verdict_word"].value_counts(sort=False)
    ordered = sorted(counts.items(), key=lambda item: -item[1])
    return ", ".join(f"{word} at {count}" for word, count in ordered) + f" of {len(table)} block inputs"


def exponent_range(table: Any) -> str:
    """``"0.83–1.12"``: the smallest and largest usable ``p`` over the summarized layers, ``"—"`` without any."""
    values = [float(p) for p in table["p"] if math.isfinite(float(p))]
    return f"{min(values):.2f}–{max(values):.2f}" if values else "—"
