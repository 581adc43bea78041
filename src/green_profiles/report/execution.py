"""Executing the experiment notebooks with papermill, under named settings.

An experiment's parameters are its registry entry's defaults, the named settings' values
(``notebooks/settings.yml``) and the caller's overrides
(:func:`green_profiles.runs.experiments.experiment_parameters`). :func:`execute_notebook`
checks them first (an unknown experiment, settings or parameter is an error, not a silent
no-op), passes papermill only the settings' name and the overrides (the notebook's
``parameters`` cell: the notebook resolves its parameters itself, with the same function),
and writes the executed copy atomically, so a failed or interrupted execution never leaves
a half-written notebook where the book would pick it up.

The kernel runs in the notebooks' folder, so the data directory it measures into is handed to
it as an absolute path: a relative ``data`` would otherwise name ``notebooks/data``, a second
store beside the real one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from green_profiles.files.locations import default_data_dir
from green_profiles.files.storage import atomic_file
from green_profiles.runs.experiments import experiment_parameters, project_root


def execute_notebook(
    notebook: str,
    *,
    settings: str = "default",
    overrides: Mapping[str, Any] | None = None,
    source_dir: Path | None = None,
    output_dir: Path | None = None,
    settings_file: Path | None = None,
    data_dir: Path | None = None,
    log_output: bool = True,
) -> Path:
    """Run ``<source_dir>/<notebook>.ipynb`` through papermill into ``<output_dir>/<notebook>.ipynb``.

    Args:
        notebook: the experiment's name, its notebook's without ``.ipynb`` (e.g. ``"coherent_text"``).
        settings: the named settings in the settings file.
        overrides: parameters that win over the settings' (e.g. ``{"seq_len": 1024}``).
        source_dir, output_dir: where the notebook is read and its executed copy written (default:
            ``notebooks`` and ``book/experiments`` of the project root,
            :func:`~green_profiles.runs.experiments.project_root`).
        settings_file: the YAML file of named settings (default: ``notebooks/settings.yml`` of the project root).
        data_dir: the data directory the notebook reads and measures into (default:
            :func:`~green_profiles.files.locations.default_data_dir` as seen from the caller's directory).
        log_output: relay the notebook's output (progress bars included) to this process' log.

    Returns:
        the path of the executed notebook.

    Raises:
        ValueError: an unknown experiment or settings, or an override the experiment does not declare.
        papermill.PapermillExecutionError: a cell failed (its traceback says which).
    """
    import papermill

    overrides = dict(overrides or {})
    experiment_parameters(notebook, settings, overrides, settings_file=settings_file)  # the errors, before running
    source = Path(source_dir if source_dir is not None else project_root() / "notebooks") / f"{notebook}.ipynb"
    if not source.is_file():
        raise ValueError(f"no notebook {source} for the experiment {notebook}")
    parameters: dict[str, Any] = {"settings": settings, "overrides": overrides}
    if settings_file is not None:
        parameters["settings_file"] = str(Path(settings_file).resolve())
    target = Path(output_dir if output_dir is not None else project_root() / "book" / "experiments") / f"{notebook}.ipynb"
    data = Path(data_dir if data_dir is not None else default_data_dir()).resolve()
    with atomic_file(target) as temporary, _environment(GREEN_PROFILES_DATA=str(data)):
        papermill.execute_notebook(str(source), str(temporary), parameters=parameters, kernel_name="python3",
                                   progress_bar=log_output, log_output=log_output,
                                   cwd=str(source.parent.resolve()))
        _collapse_parameter_cells(temporary)
    return target


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the kernel papermill starts (it inherits ours), then restore them."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _collapse_parameter_cells(path: Path) -> None:
    """Tag papermill's injected-parameters cell ``hide-input`` so the book shows it collapsed, like the defaults."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            cell.metadata["tags"] = [*tags, "hide-input"]
    nbformat.write(notebook, path)
