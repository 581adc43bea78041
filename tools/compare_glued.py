"""Compare the glued values (the numbers the book's pages show) of two builds' executed notebooks.

    python tools/compare_glued.py OLD_DIR NEW_DIR [NOTEBOOK ...]

OLD_DIR and NEW_DIR hold executed notebooks (``book/experiments`` of two checkouts, or copies). Prints each
glued value that differs, ``old -> new``, and per notebook how many are unchanged. Exit 1 when any differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RECORD = "application/papermill.record/text/plain"  # how myst_nb's glue stores a value in a notebook


def glued(path: Path) -> dict[str, str]:
    """``{name: text}`` of every value glued in an executed notebook."""
    values = {}
    for cell in json.loads(path.read_text())["cells"]:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                values[name] = "".join(output.get("data", {}).get(RECORD, "")).strip("'\"")
    return values


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    old_dir, new_dir = Path(argv[0]), Path(argv[1])
    names = argv[2:] or sorted(path.stem for path in new_dir.glob("*.ipynb") if (old_dir / path.name).is_file())
    differs = False
    for name in names:
        old, new = glued(old_dir / f"{name}.ipynb"), glued(new_dir / f"{name}.ipynb")
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                differs = True
                print(f"{name}::{key}: {old.get(key)!r} -> {new.get(key)!r}")
        print(f"{name}: {sum(old.get(key) == new.get(key) for key in old)} of {len(old)} glued values unchanged")
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
