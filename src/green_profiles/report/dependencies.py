"""Which package modules each experiment notebook runs, read from the source: the make prerequisites
of its executed copy.

A notebook runs the modules its code cells import and, transitively, every module those
import, at any level: a module's top, a function body (the heavy imports deferred until a
function needs them) or a class. Importing ``a.b.c`` also runs the packages ``a`` and
``a.b`` (their ``__init__``). Imports under ``if TYPE_CHECKING:`` run nothing and are left
out. :func:`make_include` writes the result for the Makefile (``green-profiles experiments
--make`` > ``book/experiments/.deps.mk``), so that editing a module re-executes only the
notebooks that run it.

Only the source is read (:mod:`ast`): nothing of the package is imported. A module started
in another process (``measure_runs`` with several processes launches ``python -m
green_profiles run``) is not an import and is not followed.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "green_profiles"


def package_modules(source_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package under ``source_dir`` (``src``)."""
    modules = {}
    for path in sorted((Path(source_dir) / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(source_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_modules(code: str, modules: dict[str, Path], *, module: str | None = None,
                     is_package: bool = False, filename: str = "<code>") -> set[str]:
    """The package modules ``code`` imports itself (a notebook's cells when ``module`` is None, else the
    module ``module``, whose relative imports resolve against it), with their parent packages."""
    tree = ast.parse(code, filename=filename)
    typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for statement in node.body for inner in ast.walk(statement)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            prefix = node.module or ""
            if node.level:
                if module is None:
                    continue  # a notebook has no package to be relative to
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            # `from a.b import c` runs a.b, and a.b.c when c is a module.
            names = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names
                                if f"{prefix}.{alias.name}" in modules]
        else:
            continue
        for name in names:
            found |= _with_parents(name, modules)
    return found


def _with_parents(name: str, modules: dict[str, Path]) -> set[str]:
    """``a.b.c`` and the packages ``a.b`` and ``a`` it runs, those that are package modules."""
    parts = name.split(".")
    return {".".join(parts[:end]) for end in range(1, len(parts) + 1)} & set(modules)


def notebook_code(path: Path) -> str:
    """The code cells of a notebook as one Python source (IPython's ``%magic`` and ``!shell`` lines dropped)."""
    cells = json.loads(Path(path).read_text())["cells"]
    lines = []
    for cell in cells:
        if cell.get("cell_type") == "code":
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            lines += [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return "\n".join(lines) + "\n"


def import_closure(start: Iterable[str], modules: dict[str, Path]) -> set[str]:
    """``start`` and every package module they import, directly or through other modules."""
    seen: set[str] = set()
    pending = list(start)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = modules[name]
        pending += imported_modules(path.read_text(), modules, module=name, is_package=path.name == "__init__.py",
                                    filename=str(path))
    return seen


def notebook_dependencies(notebook: Path, source_dir: Path) -> list[Path]:
    """The files of every package module ``notebook`` runs (under ``source_dir``, e.g. ``src``), sorted."""
    modules = package_modules(source_dir)
    direct = imported_modules(notebook_code(notebook), modules, filename=str(notebook))
    return sorted(modules[name] for name in import_closure(direct, modules))


def make_include(root: Path, experiments: Iterable[str]) -> str:
    """The make include of the project at ``root``: ``EXPERIMENTS`` (in the registry's order) and, for each,
    ``book/experiments/<name>.ipynb: <the package files its notebook runs>`` (paths relative to ``root``)."""
    names = list(experiments)
    lines = ["# Written by `green-profiles experiments --make` (the Makefile rewrites it when a notebook or the",
             "# package changes): the experiments of green_profiles.runs.experiments, and the package modules each",
             "# notebook imports, directly or through other modules (green_profiles.report.dependencies).",
             f"EXPERIMENTS := {' '.join(names)}"]
    for name in names:
        files = notebook_dependencies(root / "notebooks" / f"{name}.ipynb", root / "src")
        lines.append(f"book/experiments/{name}.ipynb: \\")
        lines += [f"  {path.relative_to(root).as_posix()} \\" for path in files]
        lines[-1] = lines[-1].removesuffix(" \\")
    return "\n".join(lines)

