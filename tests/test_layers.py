"""The package's layers, read from its source: no module imports from a layer above its own, no import
circle, and imports inside functions only where a comment says why they are deferred.

The layers, bottom to top (each may import from those below it and from its own):

    kernel, files  ->  text  ->  models  ->  runs  ->  analysis  ->  report  ->  cli

``kernel`` is the self-contained heart: it imports nothing of the package outside itself.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "green_profiles"
LAYERS = {"kernel": 0, "files": 0, "text": 1, "models": 2, "runs": 3, "analysis": 4, "report": 5,
          "cli": 6, "__init__": 6, "__main__": 6}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS["__init__" if len(parts) == 1 else parts[1]]


def _imports(module: str, path: Path) -> Iterator[tuple[str, ast.stmt, bool]]:
    """(imported package module, statement, inside a function?) for every import of the package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    functions = {id(node) for parent in ast.walk(tree) if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for node in ast.walk(parent) if node is not parent}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in MODULES else prefix
                     for alias in node.names]
        else:
            continue
        for name in names:
            if name == "green_profiles" or name.startswith("green_profiles."):
                while name not in MODULES:
                    name = name.rsplit(".", 1)[0]
                yield name, node, id(node) in functions


def _under_type_checking(path: Path) -> set[int]:
    tree = ast.parse(path.read_text())
    return {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If)
            and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING") for inner in ast.walk(node)}


def test_every_module_is_in_a_layer():
    for module in MODULES:
        _layer(module)  # a KeyError names a module outside the layers
    top = {module for module in MODULES if module.count(".") == 1 and not (PACKAGE / module.split(".")[1]).is_dir()}
    assert top == {"green_profiles.cli", "green_profiles.__main__"}, "the top level keeps only the CLI"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_from_a_layer_above(module):
    upward = [f"line {node.lineno}: {name}" for name, node, _ in _imports(module, MODULES[module])
              if _layer(name) > _layer(module)]
    assert not upward, f"{module} (layer {_layer(module)}) imports from above: {upward}"


def test_the_kernel_imports_only_itself():
    for module, path in MODULES.items():
        if module.startswith("green_profiles.kernel"):
            outside = [name for name, _, _ in _imports(module, path) if not name.startswith("green_profiles.kernel")]
            assert not outside, f"{module} imports {outside}: the kernel must stay copyable alone"


def test_imports_inside_functions_say_why():
    """An import of the package inside a function hides a dependency; allowed only to defer a heavy
    import, with a ``# deferred`` comment on the line (the CLI defers every subcommand's modules)."""
    hidden = []
    for module, path in MODULES.items():
        if module == "green_profiles.cli":
            continue
        lines = path.read_text().splitlines()
        for name, node, inside in _imports(module, path):
            if inside and "# deferred" not in lines[node.lineno - 1] and "# deferred" not in lines[node.end_lineno - 1]:
                hidden.append(f"{module}:{node.lineno} imports {name}")
    assert not hidden, "imports inside functions without a '# deferred' reason:\n" + "\n".join(hidden)


def test_no_import_circles():
    graph = {module: set() for module in MODULES}
    for module, path in MODULES.items():
        typing_only = _under_type_checking(path)
        for name, node, inside in _imports(module, path):
            if not inside and id(node) not in typing_only and name != module:
                graph[module].add(name)
    # A package's __init__ importing its own submodules is how packages work; a submodule importing its
    # package's __init__ back is the circle to catch.
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for child in sorted(graph[node]):
            if state.get(child) == 1:
                circle = stack[stack.index(child):] + [child]
                if not all(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(circle, circle[1:])):
                    circles.append(" -> ".join(circle))
            elif child not in state:
                visit(child, stack + [child])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, "import circles:\n" + "\n".join(circles)
