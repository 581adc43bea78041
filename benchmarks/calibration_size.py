"""How often the gap test rejects a true power law, on synthetic runs of independent documents.

    .venv/bin/python benchmarks/calibration_size.py [--datasets 40] [--n-sim 200]

`simulate_inference.py error-rates` borrows a real run's rows, so its synthetic runs all draw on the same 16
documents. Here every run has 16 documents of its own, 4 rows each, with log-normal document, row and entry
effects of about the sizes the default Gutenberg run shows (standard deviations 0.39, 0.78 and 0.6 nats;
entries also Gumbel-skewed, or without row effects), around c + A (r+1)^-p with p = 1. Prints the share of
runs whose p-value against the power law (calibration.calibrate, its null simulation) is below 0.05.
"""

from __future__ import annotations

import argparse

import numpy as np

from green_profiles.analysis.fits.calibration import calibrate

R = np.array([0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384], dtype=float)


def rows_of(seed: int, *, n_documents: int = 16, per_document: int = 4, document_sd: float = 0.39,
            row_sd: float = 0.78, entry_sd: float = 0.6, skewed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic run: ``[n_documents * per_document, len(R)]`` rows and their document labels."""
    rng = np.random.default_rng(seed)
    n_rows = n_documents * per_document
    level = np.repeat(rng.normal(0, document_sd, n_documents), per_document) + rng.normal(0, row_sd, n_rows)
    noise = (rng.gumbel(0, entry_sd, (n_rows, R.size)) if skewed else rng.normal(0, entry_sd, (n_rows, R.size)))
    rows = (0.01 + 0.9 * (R + 1.0) ** -1.0)[None, :] * np.exp(level[:, None] + noise)
    rows[:, 0] = 1.0
    return rows, np.repeat(np.arange(n_documents), per_document)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=int, default=40)
    parser.add_argument("--n-sim", type=int, default=200)
    args = parser.parse_args()
    cases = {"document, row and entry effects": {}, "no row effects": {"row_sd": 0.0},
             "row effects, skewed entries": {"skewed": True}}
    for label, options in cases.items():
        values = np.array([calibrate(R, *rows_of(seed, **options), n_sim=args.n_sim, seed=seed, n_splits=2).p_power
                           for seed in range(args.datasets)])
        print(f"{label:<34} rejected at 0.05: {np.mean(values < 0.05):.3f} of {args.datasets}; "
              f"p-value quartiles {np.round(np.quantile(values, [0.25, 0.5, 0.75]), 2)}")


if __name__ == "__main__":
    main()
