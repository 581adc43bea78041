"""Executing the experiment notebooks with papermill, under a named settings profile.

``notebooks/profiles.yml`` maps a profile name (``smoke``, ``default``, ``full``,
``paper``) to parameters: an ``all`` section shared by every notebook and one
section per notebook. :func:`execute_notebook` merges ``all``, the notebook's
section and the caller's overrides, passes papermill only the parameters the
notebook declares in its cell tagged ``parameters`` (an override it does not
declare is an error, not a silent no-op), and writes the executed copy
atomically, so a failed or interrupted execution never leaves a half-written
notebook where the book would pick it up.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from green_profiles.fits import PAPER_P_RANGE

if TYPE_CHECKING:
    from green_profiles.profiles import ProfileRun, RunConfig

PROFILES_FILE = Path("notebooks/profiles.yml")


def profile_parameters(notebook: str, profile: str, profiles_file: Path = PROFILES_FILE) -> dict[str, Any]:
    """The parameters a profile sets for one notebook (``all`` merged with the notebook's own section)."""
    import yaml

    profiles = yaml.safe_load(Path(profiles_file).read_text())
    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r}: {profiles_file} defines {', '.join(profiles)}")
    sections = profiles[profile] or {}
    return dict(sections.get("all") or {}) | dict(sections.get(notebook) or {})


def execute_notebook(
    notebook: str,
    *,
    profile: str = "default",
    overrides: Mapping[str, Any] | None = None,
    source_dir: Path = Path("notebooks"),
    output_dir: Path = Path("book/experiments"),
    profiles_file: Path = PROFILES_FILE,
    log_output: bool = True,
) -> Path:
    """Run ``<source_dir>/<notebook>.ipynb`` through papermill into ``<output_dir>/<notebook>.ipynb``.

    Args:
        notebook: the notebook's name without ``.ipynb`` (e.g. ``"coherent_text"``).
        profile: the settings profile in ``profiles_file``.
        overrides: parameters that win over the profile's (e.g. ``{"seq_len": 1024}``).
        source_dir, output_dir: where the notebook is read and its executed copy written.
        profiles_file: the YAML file of profiles.
        log_output: relay the notebook's output (progress bars included) to this process' log.

    Returns:
        the path of the executed notebook.

    Raises:
        ValueError: an unknown profile, or an override the notebook does not declare.
        papermill.PapermillExecutionError: a cell failed (its traceback says which).
    """
    import papermill

    source = Path(source_dir) / f"{notebook}.ipynb"
    if not source.is_file():
        available = ", ".join(sorted(p.stem for p in Path(source_dir).glob("*.ipynb")))
        raise ValueError(f"no notebook {source}; available: {available}")
    declared = papermill.inspect_notebook(str(source))
    unknown = sorted(set(overrides or {}) - set(declared))
    if unknown:
        raise ValueError(f"{notebook} has no parameter {', '.join(unknown)}; it declares {', '.join(declared)}")
    parameters = {key: value for key, value in profile_parameters(notebook, profile, profiles_file).items()
                  if key in declared} | dict(overrides or {})
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / f"{notebook}.ipynb"
    handle, temporary = tempfile.mkstemp(prefix=f".{notebook}.", suffix=".ipynb", dir=output_dir)
    os.close(handle)
    try:
        papermill.execute_notebook(str(source), temporary, parameters=parameters, kernel_name="python3",
                                   progress_bar=log_output, log_output=log_output,
                                   cwd=str(source.parent.resolve()))
        _collapse_parameter_cells(Path(temporary))
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return target


def _collapse_parameter_cells(path: Path) -> None:
    """Tag papermill's injected-parameters cell ``hide-input`` so the book shows it collapsed, like the defaults."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            cell.metadata["tags"] = [*tags, "hide-input"]
    nbformat.write(notebook, path)


class PlainText(str):
    """A string that displays without quotes: glue it, and ``{glue}`page.ipynb::key``` pastes the bare text.

    (Glued values pasted into another page are rendered from their ``text/plain``
    form, which for an ordinary ``str`` is its quoted ``repr``.)
    """

    def __repr__(self) -> str:
        return str(self)


@dataclass(frozen=True)
class Experiment:
    """The shared settings of one notebook's runs, and the one way a notebook gets a run.

    ``base`` holds the settings every run of the notebook shares; :meth:`measure`
    varies some of them (a corpus, a shuffle, a model) and returns the run from the
    store, measuring it first only if it is not there.
    """

    base: RunConfig
    device: str = "auto"

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> Experiment:
        """Build from a notebook's parameters (pass ``globals()``): names that are
        :class:`~green_profiles.profiles.RunConfig` fields, plus ``device``; anything else is ignored.
        A ``model`` parameter sets the base model; a notebook with ``models`` chooses one per run."""
        from green_profiles.profiles import RunConfig

        fields = {field.name for field in dataclasses.fields(RunConfig)}
        settings = {name: parameters[name] for name in fields if name in parameters}
        if settings.get("distances") is not None:
            settings["distances"] = tuple(int(r) for r in settings["distances"])
        return cls(base=RunConfig(**settings), device=str(parameters.get("device", "auto")))

    def measure(self, **changes: Any) -> ProfileRun:
        """The run with ``changes`` applied to :attr:`base` (progress goes to the build log)."""
        from green_profiles.profiles import run_profile

        return run_profile(dataclasses.replace(self.base, **changes), device=self.device)


def compare_with_paper(p: float, low: float, high: float, paper: tuple[float, float] = PAPER_P_RANGE) -> str:
    """Where an exponent with its interval ``[low, high]`` stands against the paper's range of ``p``.

    "within" when the point estimate lies in the range; otherwise "overlaps" when
    the interval reaches into it, "steeper" or "shallower" when the whole interval
    lies above or below it; "no estimate" when the fit failed.
    """
    if not all(value == value for value in (p, low, high)):  # NaN
        return "no estimate"
    if paper[0] <= p <= paper[1]:
        return "within the paper's range"
    if low > paper[1]:
        return "steeper than the paper's range"
    if high < paper[0]:
        return "shallower than the paper's range"
    return "interval overlaps the paper's range"


def summary_table(records: list[Mapping[str, Any]]) -> Any:
    """The headline numbers of several runs (:meth:`ProfileRun.summary` records with a ``label``),
    one line per run, intervals written next to their estimates so the table fits the text column."""
    import pandas as pd

    def interval(record: Mapping[str, Any], key: str, spec: str) -> str:
        return f"{record[key]:{spec}} [{record[key + '_low']:{spec}}, {record[key + '_high']:{spec}}]"

    return pd.DataFrame.from_records([{
        "label": record["label"],
        "rows": record["rows"],
        "top-1 acc.": f"{record['top1_accuracy']:.1%}",
        "loss (nats)": f"{record['mean_loss']:.2f}",
        "best law": record["best_model"],
        "p [95% CI]": interval(record, "p", ".2f"),
        "gap exp − power [95% CI]": interval(record, "rmse_gap", "+.3f"),
        "verdict": record["verdict"].split(":")[0],
    } for record in records]).set_index("label")


def verdict_list(records: list[Mapping[str, Any]]) -> str:
    """The verdict sentences of several runs as a Markdown list (display it with ``IPython.display.Markdown``)."""
    return "\n".join(f"- **{record['label']}**: {record['verdict']}" for record in records)


# The summary page names its rows by kind of text, so that the offline corpora and the paper's
# hub corpora fill the same rows.
_CORPUS_FAMILIES = {"gutenberg": "gutenberg", "pg19": "gutenberg", "botchan": "gutenberg",
                    "wikipedia": "wikipedia", "wikitext-103": "wikipedia"}


def corpus_family(corpus: str) -> str:
    """``"gutenberg"`` for books (our Gutenberg novels, PG-19), ``"wikipedia"`` for encyclopedia text
    (our Wikipedia sample, WikiText-103), the corpus' own name otherwise: the key of its summary rows."""
    return _CORPUS_FAMILIES.get(corpus, corpus)
