"""Executing the experiment notebooks with papermill, under named settings.

``notebooks/settings.yml`` maps a name (``smoke``, ``default``, ``full``,
``paper``) to notebook parameters: an ``all`` section shared by every notebook
and one section per notebook. :func:`execute_notebook` merges ``all``, the
notebook's section and the caller's overrides, passes papermill only the parameters the
notebook declares in its cell tagged ``parameters`` (an override it does not
declare is an error, not a silent no-op), and writes the executed copy
atomically, so a failed or interrupted execution never leaves a half-written
notebook where the book would pick it up.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from green_profiles.files.storage import atomic_file
from green_profiles.runs.experiments import SETTINGS_FILE, notebook_parameters, settings_parameters  # noqa: F401

def execute_notebook(
    notebook: str,
    *,
    settings: str = "default",
    overrides: Mapping[str, Any] | None = None,
    source_dir: Path = Path("notebooks"),
    output_dir: Path = Path("book/experiments"),
    settings_file: Path = SETTINGS_FILE,
    log_output: bool = True,
) -> Path:
    """Run ``<source_dir>/<notebook>.ipynb`` through papermill into ``<output_dir>/<notebook>.ipynb``.

    Args:
        notebook: the notebook's name without ``.ipynb`` (e.g. ``"coherent_text"``).
        settings: the named settings in ``settings_file``.
        overrides: parameters that win over the settings' (e.g. ``{"seq_len": 1024}``).
        source_dir, output_dir: where the notebook is read and its executed copy written.
        settings_file: the YAML file of named settings.
        log_output: relay the notebook's output (progress bars included) to this process' log.

    Returns:
        the path of the executed notebook.

    Raises:
        ValueError: unknown settings, or an override the notebook does not declare.
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
    parameters = {key: value for key, value in settings_parameters(notebook, settings, settings_file).items()
                  if key in declared} | dict(overrides or {})
    target = Path(output_dir) / f"{notebook}.ipynb"
    with atomic_file(target) as temporary:
        papermill.execute_notebook(str(source), str(temporary), parameters=parameters, kernel_name="python3",
                                   progress_bar=log_output, log_output=log_output,
                                   cwd=str(source.parent.resolve()))
        _collapse_parameter_cells(temporary)
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
