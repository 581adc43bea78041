"""Training dynamics, for the ``training_dynamics`` notebook: how a profile changes along training.

:func:`dynamics_table` turns the notebook's runs (one per model size and checkpoint,
plus each size's ``@random`` twin: :func:`green_profiles.runs.plans.notebook_runs`) into one
line per run with the exponent ``p``, the floor ``γ`` (``c`` of ``c + A (r+1)^-p``) and
the log-RMSE gap (exponential minus power law, both with floor), each with its
document-bootstrap interval, against training tokens and model size, and each checkpoint's ``p`` against the
checkpoint before it (paired, Holm-adjusted over the size's checkpoints).
:func:`perplexity_table` puts each checkpoint's held-out perplexity from its training
record next to its random twin's, on the same held-out sequences, and
:func:`emergence` says when the power law appears and whether ``p`` settles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from green_profiles.analysis.comparison import compare_exponents, compare_many, compare_runs
from green_profiles.analysis.fits import N_BOOT, verdict
from green_profiles.models.families import (
    FAMILIES,
    checkpoint_directory,
    checkpoint_record,
    family_directory,
    family_of,
    read_training_record,
)
from green_profiles.models.loading import load_model
from green_profiles.models.training import evenly_spaced, family_tokenizer, mean_loss, token_sequences
from green_profiles.text import load_corpus

if TYPE_CHECKING:
    from green_profiles.analysis.profiles import ProfileRun

# Tokens per optimizer step of Pythia's training runs (1,024 sequences of 2,048 tokens): its checkpoint
# steps as training tokens.
PYTHIA_TOKENS_PER_STEP = 2_097_152
RANDOM_INIT = "random init"


def run_record(run: ProfileRun, *, selection: str = "pred", n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """The headline numbers of one run with intervals (95%, documents resampled): ``p``, the floor
    ``floor`` (γ, dimensionless like Ĝ) and ``rmse_gap`` (nats of log-RMSE), each with ``_low``/``_high``,
    the verdict, the best law, top-1 accuracy and mean loss at the targets, and the ``bootstrap`` itself
    (for paired comparisons of checkpoints). NaN where a fit is flat or at a bound."""
    result = run.bootstrap(selection, n_boot=n_boot, seed=seed)
    decision = verdict(result)
    floor = result.point_estimates["c_power_floor"]
    floor_low, floor_high = result.intervals["c_power_floor"] if math.isfinite(floor) else (math.nan, math.nan)
    best = result.point.best
    return {
        "p": decision.p, "p_low": decision.p_low, "p_high": decision.p_high,
        "floor": floor, "floor_low": floor_low, "floor_high": floor_high,
        "rmse_gap": decision.gap, "rmse_gap_low": decision.gap_low, "rmse_gap_high": decision.gap_high,
        "verdict_word": decision.winner, "verdict": str(decision), "best_model": best.name if best else None,
        "top1_accuracy": run.top1_accuracy, "mean_loss": run.mean_loss, "rows": run.n_rows,
        "bootstrap_unit": decision.unit, "bootstrap": result,
    }


def dynamics_table(runs: Mapping[tuple[str, ...], ProfileRun], *, selection: str = "pred", n_boot: int = N_BOOT,
                   seed: int = 0, data_dir: Path | None = None) -> Any:
    """One line per run of the notebook (roles ``(model, "step<N>")`` or ``(model, "random init")``).

    Columns: ``model``, ``size`` (the model without its family, or the model), ``step`` (NaN for the random
    twin), ``tokens`` (training tokens seen: from the checkpoint's record for a family trained here,
    ``step x 2,097,152`` for Pythia), ``parameters`` (of the trained model), ``checkpoint`` (``"step<N>"`` or
    ``"random init"``), and those of :func:`run_record`; ``p_vs_previous`` (with ``p_vs_previous_pvalue`` and
    ``p_vs_previous_holm``): each checkpoint's ``p`` against the checkpoint before it of the same model, paired over
    the same held-out documents, resolved when its bootstrap p-value, Holm-adjusted over that model's
    comparisons of successive checkpoints, is below 0.05 (:func:`~green_profiles.analysis.comparison.compare_many`;
    ``"—"`` and NaN for the first checkpoint and the random twin).
    """
    import pandas as pd

    records = []
    for role, run in runs.items():
        model, checkpoint = role[0], role[1]
        found = family_of(model)
        record: dict[str, Any] = {"model": model, "size": found[1] if found else model, "checkpoint": checkpoint,
                                  "step": math.nan, "tokens": math.nan, "parameters": math.nan}
        if checkpoint != RANDOM_INIT:
            record["step"] = int(checkpoint.removeprefix("step"))
            if found:
                saved = checkpoint_record(checkpoint_directory(model, checkpoint, data_dir))
                record["tokens"], record["parameters"] = saved["tokens"], saved["parameters"]
            else:
                record["tokens"] = record["step"] * PYTHIA_TOKENS_PER_STEP
        elif found:
            record["parameters"] = checkpoint_record(checkpoint_directory(model, None, data_dir))["parameters"]
        records.append(record | run_record(run, selection=selection, n_boot=n_boot, seed=seed))
    table = pd.DataFrame.from_records(records)
    return table.join(successive_comparisons(table)) if len(table) else table


def successive_comparisons(table: Any) -> Any:
    """Each trained checkpoint's ``p`` against the one before it (in order of training tokens) of the same model,
    from the bootstraps of a :func:`dynamics_table`: columns ``p_vs_previous`` (the sentence of
    :func:`~green_profiles.analysis.comparison.compare_runs`, "... Holm-adjusted p = 0.01 over 8 checkpoints"),
    ``p_vs_previous_pvalue`` and ``p_vs_previous_holm`` (Holm over the model's N comparisons: its checkpoints
    but the first), indexed like ``table``; ``"—"`` and NaN for a model's first checkpoint and its random twin.
    """
    import pandas as pd

    out = pd.DataFrame({"p_vs_previous": "—", "p_vs_previous_pvalue": math.nan, "p_vs_previous_holm": math.nan},
                       index=table.index)
    for _, group in table.groupby("model", sort=False):
        trained = group[group["checkpoint"] != RANDOM_INIT].sort_values("tokens")
        indices, results = list(trained.index), list(trained["bootstrap"])
        compared = compare_many({index: (result, previous) for index, result, previous
                                 in zip(indices[1:], results[1:], results[:-1])}, "checkpoints")
        for index, comparison in compared.items():
            out.loc[index] = [comparison.text, comparison.pvalue, comparison.adjusted]
    return out.astype({"p_vs_previous": object, "p_vs_previous_pvalue": float, "p_vs_previous_holm": float})


def perplexity_table(family: str, sizes: list[str] | None = None, *, seed: int = 0,
                     data_dir: Path | None = None) -> Any:
    """Held-out perplexity (``exp`` of the mean next-token loss in nats) per size and checkpoint, and the
    mean loss on as many fixed training sequences (the memorization gap), from the training records;
    plus each size's ``@random`` twin (seed ``seed``) evaluated here on the same held-out sequences (its
    ``train_eval_loss`` is NaN: not evaluated).

    Columns: ``size``, ``checkpoint``, ``step``, ``tokens``, ``epochs`` (passes over the training text),
    ``train_loss`` (mean over the steps since the previous checkpoint), ``train_eval_loss``, ``heldout_loss``,
    ``heldout_perplexity``.
    """
    import pandas as pd

    spec = FAMILIES[family]
    # The held-out sequences the training evaluated on (as training.prepare_data cuts them; the training
    # side is not tokenized again: the twin's loss on it would equal its held-out loss to within noise).
    heldout = evenly_spaced(token_sequences(load_corpus(spec.heldout_corpus, data_dir),
                                            family_tokenizer(spec, data_dir), spec.context + 1), spec.eval_blocks)
    rows = []
    for size in sizes or [size.name for size in spec.sizes]:
        record = read_training_record(family_directory(family, data_dir) / size)
        if record is None or not record.get("complete"):
            raise FileNotFoundError(f"{family}-{size} is not trained yet: run `make models`")
        for point in record["curve"]:
            rows.append({"size": size, "checkpoint": f"step{point['step']}", "step": point["step"],
                         "tokens": point["tokens"], "epochs": point["tokens"] / record["data"]["train_tokens"],
                         "train_loss": point["train_loss"], "train_eval_loss": point["train_eval_loss"],
                         "heldout_loss": point["heldout_loss"], "heldout_perplexity": point["heldout_perplexity"]})
        twin, _ = load_model(f"{family}-{size}@random", seed=seed, data_dir=data_dir, device="cpu")
        loss = mean_loss(twin, heldout)
        rows.append({"size": size, "checkpoint": RANDOM_INIT, "step": math.nan, "tokens": math.nan,
                     "epochs": math.nan, "train_loss": math.nan, "train_eval_loss": math.nan,
                     "heldout_loss": loss, "heldout_perplexity": math.exp(loss)})
    return pd.DataFrame.from_records(rows)


def emergence(table: Any) -> dict[str, dict[str, Any]]:
    """Per model (size) of a :func:`dynamics_table`, over its checkpoints in order of training tokens:

    ``first_power_tokens``/``first_power_step``: the first checkpoint whose verdict is "power law" and
    stays so at every later checkpoint (NaN when none); ``last_not_power``: the verdict of the checkpoint
    before it; ``p_final`` with interval; ``settles``: the last checkpoint's ``p`` against the one before,
    paired over the same held-out documents: its ``p_vs_previous`` (Holm-adjusted over the model's successive
    checkpoints: :func:`successive_comparisons`) where the table has it, else
    :func:`~green_profiles.analysis.comparison.compare_runs` of the two bootstraps ("no difference resolved"
    means no change was measured; a table without the bootstraps falls back to
    :func:`~green_profiles.analysis.comparison.compare_exponents`, "intervals overlap"); ``random_verdict``: the
    verdict of the ``@random`` twin.
    """
    out: dict[str, dict[str, Any]] = {}
    for model, group in table.groupby("model", sort=False):
        trained = group[group["checkpoint"] != RANDOM_INIT].sort_values("tokens")
        twin = group[group["checkpoint"] == RANDOM_INIT]
        verdicts = list(trained["verdict_word"])
        start = len(verdicts)
        while start > 0 and verdicts[start - 1] == "power law":
            start -= 1
        first = trained.iloc[start] if start < len(verdicts) else None
        last = trained.iloc[-1]
        before = trained.iloc[-2] if len(trained) > 1 else last
        out[model] = {
            "first_power_step": float(first["step"]) if first is not None else math.nan,
            "first_power_tokens": float(first["tokens"]) if first is not None else math.nan,
            "last_not_power": verdicts[start - 1] if 0 < start < len(verdicts) else None,
            "p_final": float(last["p"]), "p_final_low": float(last["p_low"]), "p_final_high": float(last["p_high"]),
            "settles": (last["p_vs_previous"] if "p_vs_previous" in trained and len(trained) > 1
                        else compare_runs(last["bootstrap"], before["bootstrap"]) if "bootstrap" in trained
                        else compare_exponents(last, before)),
            "random_verdict": twin["verdict_word"].iloc[0] if len(twin) else None,
        }
    return out


def verdict_path(table: Any) -> dict[str, str]:
    """Per model of a :func:`dynamics_table`, its verdicts along training as one phrase, consecutive
    checkpoints with the same verdict joined: ``"flat through step 48, exponential at step 96, power law from
    step 384"`` (``"from"`` for a verdict that lasts to the last checkpoint)."""
    out: dict[str, str] = {}
    for model, group in table.groupby("model", sort=False):
        trained = group[group["checkpoint"] != RANDOM_INIT].sort_values("tokens")
        steps, words = [int(step) for step in trained["step"]], list(trained["verdict_word"])
        phrases, start = [], 0
        for end in range(1, len(words) + 1):
            if end < len(words) and words[end] == words[start]:
                continue
            if end == len(words) and end - start > 1:
                phrases.append(f"{words[start]} from step {steps[start]}")
            elif end - start == 1:
                phrases.append(f"{words[start]} at step {steps[start]}")
            else:
                phrases.append(f"{words[start]} from step {steps[start]} through {steps[end - 1]}")
            start = end
        out[model] = ", ".join(phrases)
    return out


def emergence_text(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """:func:`emergence` as a Markdown list, one sentence per model."""
    lines = []
    for model, item in summary.items():
        if math.isfinite(item["first_power_tokens"]):
            when = (f"the verdict names the power law from step {item['first_power_step']:.0f} "
                    f"({item['first_power_tokens']:,.0f} training tokens) on, at every later checkpoint")
            if item["last_not_power"]:
                when += f"; the checkpoint before was {item['last_not_power']}"
        else:
            when = "the verdict does not name the power law at the last checkpoint"
        if math.isfinite(item["p_final"]):
            p_text = (f"final p = {item['p_final']:.2f} [{item['p_final_low']:.2f}, {item['p_final_high']:.2f}], "
                      f"against the checkpoint before: {item['settles']}")
        else:
            p_text = "no final p (flat or at a bound)"
        lines.append(f"- **{model}**: {when}; {p_text}; random-init twin: {item['random_verdict']}.")
    return "\n".join(lines)
