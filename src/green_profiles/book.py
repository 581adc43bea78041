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

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
