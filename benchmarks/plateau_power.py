"""The plateau test of the local slope where it has the rows to work with: synthetic runs of the paper's size.

    .venv/bin/python benchmarks/plateau_power.py [--runs 5] [--documents 1024] [--per-document 16] [--noise documents]

At the book's default design (16 documents) the plateau test finds no plateau even in a pure power law
(benchmarks/error_rates.py, the methods page's table); this prints what it finds on runs of the paper's size
(16,384 rows) for a pure power law (p = 0.8), a power law with floor (p = 0.9) and the exponential with floor
nearest to it: the range, the level and the interval of the largest change of slope between thirds.
"""

from __future__ import annotations

import argparse

from green_profiles.analysis.local_slope import local_slope
from green_profiles.analysis.synthetic import NOISE_MODELS, synthetic_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--documents", type=int, default=1024)
    parser.add_argument("--per-document", type=int, default=16)
    parser.add_argument("--noise", default="documents", choices=[n for n in NOISE_MODELS if n != "resampled"])
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()
    for truth in ("pure_power", "power_floor", "exp_floor"):
        found = []
        for seed in range(args.runs):
            run = synthetic_run(truth, args.noise, args.documents, per_document=args.per_document, seed=seed)
            plateau = local_slope(run.distances, run.rows, run.group, n_boot=args.n_boot, seed=seed).plateau
            found.append("none" if plateau is None else
                         f"r={plateau.start:g}-{plateau.stop:g} level {plateau.level:.3f} "
                         f"change [{plateau.change_low:+.2f}, {plateau.change_high:+.2f}]")
        print(f"{truth:<12} {args.documents} documents x {args.per_document}: " + "; ".join(found))


if __name__ == "__main__":
    main()
