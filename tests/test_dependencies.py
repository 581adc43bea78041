"""What each executed notebook depends on (green_profiles.report.dependencies): the package modules its
code runs, read from the real notebooks and source, so that `make book` re-executes a notebook only when
something it runs changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from green_profiles.report.dependencies import (
    import_closure,
    imported_modules,
    make_include,
    notebook_dependencies,
    package_modules,
)
from green_profiles.runs.experiments import EXPERIMENTS

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src"


@pytest.fixture(scope="module")
def dependencies() -> dict[str, set[str]]:
    """Experiment -> the package files (relative to src/green_profiles) its notebook runs."""
    return {name: {path.relative_to(SOURCE / "green_profiles").as_posix() for path in
                   notebook_dependencies(ROOT / "notebooks" / f"{name}.ipynb", SOURCE)} for name in EXPERIMENTS}


def test_each_notebook_depends_on_what_it_runs_and_nothing_else(dependencies):
    for name, files in dependencies.items():
        # What every notebook runs: the registry, the package's __init__, the measurement (through the page
        # helpers), the figures, and the kernel (a package __init__ runs its submodules).
        assert {"__init__.py", "runs/experiments.py", "report/book.py", "report/figures.py",
                "runs/measurement.py", "kernel/jacobian.py", "kernel/__init__.py", "runs/__init__.py"} <= files, name
        # Nothing a notebook does not import: bundles (export/import), the plan, the CLI, papermill's runner.
        assert not {"runs/bundles.py", "runs/plans.py", "cli.py", "__main__.py", "report/execution.py",
                    "report/dependencies.py", "report/plotly_offline.py"} & files, name
    assert "report/shading.py" in dependencies["coherent_text"]
    assert "report/shading.py" not in dependencies["model_sweep"]
    # The interactive figures: only the pages that show one.
    assert {name for name, files in dependencies.items() if "report/interactive.py" in files} == {
        "model_sweep", "depth", "training_dynamics", "robustness"}
    # Training code only where the trained family's curves are read (analysis.dynamics imports it).
    assert {name for name, files in dependencies.items() if "models/training.py" in files} == {"training_dynamics"}


def test_imports_are_read_at_any_level_with_their_packages_and_not_for_type_checking(tmp_path):
    package = tmp_path / "green_profiles"
    for name in ("__init__", "a/__init__", "a/one", "a/two", "a/three", "b/__init__", "b/four", "b/typed"):
        (package / f"{name}.py").parent.mkdir(parents=True, exist_ok=True)
        (package / f"{name}.py").write_text("")
    (package / "a" / "one.py").write_text("from . import two\n\ndef f():\n    from .three import x  # deferred\n")
    (package / "b" / "four.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from green_profiles.b import typed\n")
    modules = package_modules(tmp_path)
    code = "import os\n%matplotlib inline\nfrom green_profiles.a.one import f\nimport green_profiles.b.four as g\n"
    notebook = tmp_path / "n.ipynb"
    notebook.write_text(json.dumps({"cells": [{"cell_type": "code", "source": code.splitlines(True)},
                                              {"cell_type": "markdown", "source": "import green_profiles.b.typed"}]}))
    direct = imported_modules("from green_profiles.a.one import f\nimport green_profiles.b.four", modules)
    assert direct == {"green_profiles", "green_profiles.a", "green_profiles.a.one", "green_profiles.b",
                      "green_profiles.b.four"}
    assert import_closure(direct, modules) == direct | {"green_profiles.a.two", "green_profiles.a.three"}
    assert [path.relative_to(tmp_path).as_posix() for path in notebook_dependencies(notebook, tmp_path)] == [
        "green_profiles/__init__.py", "green_profiles/a/__init__.py", "green_profiles/a/one.py",
        "green_profiles/a/three.py", "green_profiles/a/two.py", "green_profiles/b/__init__.py",
        "green_profiles/b/four.py"]


def test_the_make_include_lists_the_experiments_and_their_prerequisites():
    include = make_include(ROOT, EXPERIMENTS)
    assert f"EXPERIMENTS := {' '.join(EXPERIMENTS)}" in include.splitlines()
    assert "  src/green_profiles/report/figures.py \\" in include.splitlines()
    assert include.count("book/experiments/") == len(EXPERIMENTS) and "bundles.py" not in include


def test_the_cli_names_the_experiments_and_writes_the_include(capsys, monkeypatch):
    from green_profiles.cli import main

    monkeypatch.chdir(ROOT / "notebooks")  # the project root is found from any directory inside it
    assert main(["experiments"]) == 0
    assert capsys.readouterr().out.split() == list(EXPERIMENTS)
    assert main(["experiments", "--make"]) == 0
    assert capsys.readouterr().out == make_include(ROOT, EXPERIMENTS) + "\n"
