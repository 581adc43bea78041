"""Time the window bootstrap at the paper's size: 16,384 rows (1024 windows x 16 targets) x 25 distances.

    .venv/bin/python benchmarks/bench_bootstrap.py [--n-boot 200]

Prints seconds per replicate and the total, the result and its verdict, and checks
that the fast per-distance median of a replicate equals numpy's median of the
explicitly resampled rows.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from green_profiles.runs.configuration import PAPER_DISTANCES
from green_profiles.analysis.fits import bootstrap_fits, verdict
from green_profiles.analysis.fits.bootstrap import _ColumnAggregator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-boot", type=int, default=200)
    args = parser.parse_args()
    r = np.array(PAPER_DISTANCES[:-1], dtype=float)
    rng = np.random.default_rng(0)
    n_windows, n_targets = 1024, 16
    profile = 0.02 + 0.9 * (r + 1) ** -0.85
    rows = profile * rng.lognormal(0.0, 0.8, size=(n_windows * n_targets, r.size))
    rows[:, 0] = 1.0
    group = np.repeat(np.arange(n_windows), n_targets)

    counts = np.bincount(rng.integers(0, n_windows, n_windows), minlength=n_windows)[group]
    fast = _ColumnAggregator(rows, "median")(counts)
    explicit = np.median(np.repeat(rows, counts, axis=0), axis=0)
    print(f"fast replicate median == numpy median of the resampled rows: {np.allclose(fast, explicit, rtol=0, atol=0)}")

    start = time.perf_counter()
    result = bootstrap_fits(r, rows, n_boot=args.n_boot, seed=0, group=group)
    seconds = time.perf_counter() - start
    print(f"{rows.shape[0]:,} rows x {r.size} distances, {args.n_boot} replicates over {n_windows} windows: "
          f"{seconds:.1f} s ({1000 * seconds / args.n_boot:.0f} ms per replicate)")
    print(result)
    print(verdict(result))


if __name__ == "__main__":
    main()
