"""Verdicts of stored runs under an older commit's statistics and under today's, on the same arrays.

    .venv/bin/python benchmarks/compare_statistics.py --before 2776ea1 --seq-len 512 --n-windows 16

For every matching run in the store it prints three verdicts (pred token, 200
replicates, seed 0): the ``fits`` module of commit ``--before`` (read with
``git show``) resampling windows, today's resampling windows, and today's
resampling documents (the book's). Measurements are not repeated: only the
statistics differ. The before/after table of the run-store issue was printed by
this script at ``--before 2776ea1`` (the last commit with the single-file ``fits.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from types import ModuleType

from green_profiles.analysis.fits import verdict
from green_profiles.analysis.profiles import list_runs, load_run


def fits_module_at(revision: str) -> ModuleType:
    """The single-file ``src/green_profiles/fits.py`` of an older commit, imported under another name."""
    source = subprocess.run(["git", "show", f"{revision}:src/green_profiles/fits.py"], capture_output=True,
                            text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "fits_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("fits_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fits_before"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="commit whose fits.py gives the 'before' verdicts")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--n-windows", type=int, default=16)
    parser.add_argument("--n-boot", type=int, default=200)
    args = parser.parse_args()
    before = fits_module_at(args.before)
    runs = list_runs()
    runs = runs[(runs.seq_len == args.seq_len) & (runs.n_windows == args.n_windows)]
    for row in runs.itertuples():
        run = load_run(Path(row.path))
        n_documents = len(set(run.arrays["document"].tolist()))
        print(f"\n== {row.model} {row.corpus} shuffle={row.shuffle} ({run.key}, {n_documents} documents in "
              f"{len(run.arrays['document'])} windows)")
        old = before.bootstrap_fits(run.distances, run.normalized("pred"), n_boot=args.n_boot, seed=0,
                                    group=run.window_of_row)
        print("  before:            ", before.verdict(old))
        for unit in ("window", "document"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = run.bootstrap("pred", n_boot=args.n_boot, seed=0, unit=unit)
            print(f"  after, {unit + 's':<10}:", verdict(result))


if __name__ == "__main__":
    main()
