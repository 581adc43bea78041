"""Helpers of the book's notebooks: how a notebook gets its runs, and how results read on a page.

:func:`measure_runs` gets a notebook's planned runs (measured once, then read
from the store; with ``make book NPROC=N``, each run not stored is measured by N
processes: :mod:`green_profiles.runs.distributed`); :func:`summary_table`, :func:`verdict_list`,
:func:`compare_with_paper`, :func:`compare_exponents` and :func:`corpus_family`
turn run summaries into tables, lists and the words the summary page pastes in.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from green_profiles.analysis.comparison import compare_exponents, compare_with_paper  # noqa: F401
from green_profiles.analysis.fits import N_BOOT, NO_DECAY, verdict
from green_profiles.analysis.profiles import MIN_DOCUMENTS_TO_RESAMPLE, run_profile

if TYPE_CHECKING:
    from green_profiles.runs.configuration import RunConfig
    from green_profiles.analysis.profiles import ProfileRun

K = TypeVar("K")
# Processes that measure each run not yet stored (make book NPROC=N sets it).
PROCESSES_VARIABLE = "GREEN_PROFILES_PROCESSES"


class PlainText(str):
    """A string that displays without quotes: glue it, and ``{glue}`page.ipynb::key``` pastes the bare text.

    (Glued values pasted into another page are rendered from their ``text/plain``
    form, which for an ordinary ``str`` is its quoted ``repr``.)
    """

    def __repr__(self) -> str:
        return str(self)


def measure_runs(plan: Mapping[K, RunConfig], device: str = "auto",
                 processes: int | None = None) -> dict[K, ProfileRun]:
    """Every planned run (:func:`green_profiles.runs.plans.notebook_runs`), by the same keys: read from the
    store, or measured first where it is not stored (progress goes to the build log).

    Args:
        plan: role -> configuration.
        device: where the model runs.
        processes: measure a run that is not stored with this many processes (a torchrun
            job: ``run_profile(..., processes=N)``). Default ``$GREEN_PROFILES_PROCESSES``,
            which ``make book NPROC=N`` sets, else 1: so the notebooks need no parameter of
            their own, and the number of processes changes no result.
    """
    count = processes_from_environment() if processes is None else processes
    return {role: run_profile(config, device=device, processes=count) for role, config in plan.items()}


def processes_from_environment(environ: Mapping[str, str] | None = None) -> int:
    """``$GREEN_PROFILES_PROCESSES`` as a positive integer, 1 when unset or empty.

    Raises:
        ValueError: set to anything but a positive integer.
    """
    text = (os.environ if environ is None else environ).get(PROCESSES_VARIABLE, "").strip()
    if not text:
        return 1
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{PROCESSES_VARIABLE} must be a positive integer (processes per run), got {text!r}")
    return int(text)


def role_label(role: Sequence[str], models: Sequence[str]) -> str:
    """``"pythia-14m · wikitext-103"``: a run's role as a label, without the model when only one is measured."""
    parts = list(role)
    if len(models) == 1 and parts and parts[0] == models[0]:
        parts = parts[1:]
    return " · ".join(parts)


def interval_text(record: Mapping[str, Any], key: str, spec: str) -> str:
    """``"0.97 [0.89, 1.05]"``: a summary record's estimate ``key`` with its interval (``key_low``, ``key_high``).

    Where there is no estimate, says why: "flat — no decay" for a flat profile, "rising — no decay" for one
    that grows with distance, else "no estimate".
    """
    if not math.isfinite(record[key]):
        word = record.get("verdict_word")
        return f"{word} — no decay" if word in NO_DECAY else "no estimate"
    low, high = record[f"{key}_low"], record[f"{key}_high"]
    return f"{record[key]:{spec}} [{low:{spec}}, {high:{spec}}]"


def summary_table(records: list[Mapping[str, Any]]) -> Any:
    """The headline numbers of several runs (:meth:`ProfileRun.summary` records with a ``label``),
    one line per run, intervals written next to their estimates so the table fits the text column.

    A run without a usable exponent (a flat profile, or a fit stuck at a bound) shows why instead of a number.
    """
    import pandas as pd

    return pd.DataFrame.from_records([{
        "label": record["label"],
        "rows": record["rows"],
        "top-1 acc.": f"{record['top1_accuracy']:.1%}",
        "loss (nats)": f"{record['mean_loss']:.2f}",
        "best law": record["best_model"],
        "p [95% CI]": interval_text(record, "p", ".2f"),
        "gap exp − power, descriptive [95% CI]": interval_text(record, "rmse_gap", "+.3f"),
        "verdict": record["verdict_word"],
    } for record in records]).set_index("label")


def specification_table(table: Any) -> Any:
    """A specification curve's table (:func:`~green_profiles.analysis.robustness.specification_curve`) as the
    page shows it: one line per specification, the axis and choice, the fitted range, the rows, ``p`` and the
    gap with their intervals, the verdict, and ``p`` minus the paper protocol's with its interval."""
    import pandas as pd

    return pd.DataFrame.from_records([{
        "axis": record["axis"],
        "choice": record["setting"],
        "fitted r": record["fitted r"],
        "rows": record["rows"],
        "p [95% CI]": interval_text(record, "p", ".2f"),
        "gap exp − power, descriptive [95% CI]": interval_text(record, "rmse_gap", "+.3f"),
        "verdict": record["verdict_word"],
        "p − paper's [95% CI]": _difference_text(record["p − paper"]),
    } for record in table.to_dict("records")]).set_index(["axis", "choice"])


def axis_effects_table(effects: Any) -> Any:
    """Each axis' largest move of ``p`` (:func:`~green_profiles.analysis.robustness.axis_effects`) as the page
    shows it: the axis, its choice and ``p`` minus the paper protocol's with its interval. Whether a move is
    resolved is a test over the whole curve (:func:`~green_profiles.analysis.robustness.effects_tests_table`,
    Holm), not this interval's reading."""
    import pandas as pd

    return pd.DataFrame.from_records([{
        "axis": record["axis"],
        "choice": record["setting"],
        "p − paper's [95% CI]": _difference_text(record["p − paper"]),
    } for record in effects.to_dict("records")], columns=["axis", "choice", "p − paper's [95% CI]"]).set_index("axis")


def _difference_text(difference: Any) -> str:
    """``"+0.12 [+0.05, +0.20] paired"``, short, or "—" for the paper's own line or a missing value."""
    if not math.isfinite(difference.difference):
        return "no estimate"
    if difference.difference == 0.0 and difference.low == difference.high == 0.0:
        return "—"
    kind = "paired" if difference.paired else "unpaired"
    return f"{difference.difference:+.2f} [{difference.low:+.2f}, {difference.high:+.2f}] {kind}"


def checks_table(records: list[Mapping[str, Any]]) -> Any:
    """The tests behind each run's verdict (the rule is the methods page's), one line per run.

    The null simulations' p-values (small: the observed gap is unlikely under that law; a law is rejected below
    the verdict's level, α/2 = 0.025) and the decay trend with its interval (the test of decay). Runs whose
    profile does not decay show no law tests.
    """
    import pandas as pd

    def pvalue(value: float) -> str:
        return f"{value:.3f}" if math.isfinite(value) else "—"

    def trend(record: Mapping[str, Any]) -> str:
        value = record.get("trend", math.nan)
        return f"{value:.2f} [{record['trend_low']:.2f}, {record['trend_high']:.2f}]" if math.isfinite(value) else "—"

    return pd.DataFrame.from_records([{
        "label": record["label"],
        "decay trend": trend(record),
        "p vs exp+floor": pvalue(record["p_vs_exp"]),
        "p vs power+floor": pvalue(record["p_vs_power"]),
        "verdict": record["verdict_word"],
    } for record in records]).set_index("label")


def checks_text(record: Mapping[str, Any]) -> str:
    """The null-simulation p-values of one summary record in a phrase: ``"p vs exp 0.002, vs power 0.22 (each
    read at 0.025)"``."""
    if not math.isfinite(record.get("p_vs_exp", math.nan)):
        return "—"
    level = record.get("verdict_level", math.nan)
    at = f" (each read at {level:g})" if math.isfinite(level) else ""
    return f"p vs exp {record['p_vs_exp']:.3f}, vs power {record['p_vs_power']:.3f}{at}"


def verdict_list(records: list[Mapping[str, Any]]) -> str:
    """The verdict sentences of several runs as a Markdown list (display it with ``IPython.display.Markdown``)."""
    return "\n".join(f"- **{record['label']}**: {record['verdict']}" for record in records)


# The summary page names its rows by kind of text, so that the offline corpora and the paper's
# hub corpora fill the same rows.
_CORPUS_FAMILIES = {"gutenberg": "gutenberg", "paper-gutenberg": "gutenberg", "pg19": "gutenberg",
                    "botchan": "gutenberg", "wikipedia": "wikipedia", "wikitext-103": "wikipedia"}


def corpus_family(corpus: str) -> str:
    """``"gutenberg"`` for books (our Gutenberg novels, the paper's Gutenberg file, PG-19), ``"wikipedia"`` for encyclopedia text
    (our Wikipedia sample, WikiText-103), the corpus' own name otherwise: the key of its summary rows."""
    return _CORPUS_FAMILIES.get(corpus, corpus)


def resampling_comparison(runs: Mapping[str, ProfileRun], selection: str = "pred", n_boot: int = N_BOOT,
                          seed: int = 0) -> Any:
    """The same runs' intervals with windows and with documents as the bootstrap's resampling unit.

    One line per (run label, unit): how many units were resampled, ``p`` and the
    RMSE gap with their 95% intervals, and the verdict. Windows may overlap and
    share a document's text, so resampling them treats correlated rows as
    independent; the document intervals are the ones the book reports.
    """
    import numpy as np
    import pandas as pd

    records = []
    for label, run in runs.items():
        for unit in ("window", "document"):
            n_documents = np.unique(run.document_of_row).size
            if unit == "document" and n_documents < MIN_DOCUMENTS_TO_RESAMPLE:
                records.append({"run": label, "resampled": f"{n_documents} documents",
                                "p [95% CI]": "too few documents", "gap exp − power, descriptive [95% CI]": "", "verdict": ""})
                continue
            decision = verdict(run.bootstrap(selection, n_boot=n_boot, seed=seed, unit=unit))
            record = {"p": decision.p, "p_low": decision.p_low, "p_high": decision.p_high, "rmse_gap": decision.gap,
                      "rmse_gap_low": decision.gap_low, "rmse_gap_high": decision.gap_high,
                      "verdict_word": decision.winner}
            records.append({"run": label, "resampled": f"{decision.n_groups} {unit}s",
                            "p [95% CI]": interval_text(record, "p", ".2f"),
                            "gap exp − power, descriptive [95% CI]": interval_text(record, "rmse_gap", "+.3f"),
                            "verdict": decision.winner})
    return pd.DataFrame.from_records(records).set_index(["run", "resampled"])
