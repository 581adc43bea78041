"""The experiments' named settings: ``notebooks/settings.yml`` and each notebook's declared parameters.

``notebooks/settings.yml`` maps a name (``smoke``, ``default``, ``full``, ``paper``, ...) to
notebook parameters: an ``all`` section shared by every notebook and one section per notebook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SETTINGS_FILE = Path("notebooks/settings.yml")


def settings_parameters(notebook: str, settings: str, settings_file: Path = SETTINGS_FILE) -> dict[str, Any]:
    """The parameters named settings give one notebook (``all`` merged with the notebook's own section)."""
    import yaml

    named = yaml.safe_load(Path(settings_file).read_text())
    if settings not in named:
        raise ValueError(f"unknown settings {settings!r}: {settings_file} defines {', '.join(named)}")
    sections = named[settings] or {}
    return dict(sections.get("all") or {}) | dict(sections.get(notebook) or {})


def notebook_parameters(notebook: str, settings: str, *, source_dir: Path = Path("notebooks"),
                        settings_file: Path = SETTINGS_FILE) -> dict[str, Any]:
    """All parameters a notebook runs with under named settings: its ``parameters`` cell's values,
    overridden by the settings' (those it declares).

    Raises:
        ValueError: unknown settings or notebook, or a default that is not a Python literal.
    """
    import ast

    import papermill

    source = Path(source_dir) / f"{notebook}.ipynb"
    if not source.is_file():
        raise ValueError(f"no notebook {source}")
    declared = papermill.inspect_notebook(str(source))
    parameters = {}
    for name, spec in declared.items():
        try:
            parameters[name] = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError):
            raise ValueError(f"{source}: the default of {name} ({spec['default']}) is not a literal") from None
    chosen = settings_parameters(notebook, settings, settings_file)
    return parameters | {name: value for name, value in chosen.items() if name in declared}
