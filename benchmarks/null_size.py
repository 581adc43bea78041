"""The size of each law's null-simulation test, and whether the fitted curve is to blame for its excess.

    .venv/bin/python benchmarks/null_size.py [--datasets 100] [--documents 16] [--noise documents] [--n-sim 300]

Synthetic runs of a true exponential with floor and a true power law with floor (green_profiles.analysis.synthetic);
for each, calibration.calibrate's p-value against the true law, as the book computes it (the null simulated
around the *fitted* curve, its fitted directions projected out), and with an oracle null simulated around the
*true* curve (no projection). Prints the share of runs whose p-value falls below 0.05 and 0.025: if only the
fitted null over-rejected, the excess would come from estimating the curve; if both do, from the document
bootstrap's picture of the noise.
"""

from __future__ import annotations

import argparse
from unittest import mock

import numpy as np

from green_profiles.analysis.fits import calibration
from green_profiles.analysis.synthetic import NOISE_MODELS, synthetic_run, truth_curve

P_VALUE = {"exp_floor": "p_exponential", "power_floor": "p_power"}


def p_values(truth: str, args: argparse.Namespace, oracle: bool) -> np.ndarray:
    out = []
    for seed in range(args.datasets):
        run = synthetic_run(truth, args.noise, args.documents, seed=[seed, args.documents, 1])
        if not oracle:
            checks = calibration.calibrate(run.distances, run.rows, run.group, n_sim=args.n_sim, seed=seed)
        else:
            calls = {"n": 0}
            scale = calibration.null_scale

            def true_scale(r, profile, curve):  # the laws are simulated in the order of calibration.LAWS
                law = calibration.LAWS[calls["n"] % 2]
                calls["n"] += 1
                return scale(r, profile, truth_curve(truth, r) if law == truth else curve)

            with mock.patch.object(calibration, "null_scale", true_scale), \
                    mock.patch.object(calibration, "without_fitted_directions", lambda fit, r, sim, w=None: sim):
                checks = calibration.calibrate(run.distances, run.rows, run.group, n_sim=args.n_sim, seed=seed)
        out.append(getattr(checks, P_VALUE[truth]))
    return np.asarray(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=int, default=100)
    parser.add_argument("--documents", type=int, default=16)
    parser.add_argument("--noise", default="documents", choices=[n for n in NOISE_MODELS if n != "resampled"])
    parser.add_argument("--n-sim", type=int, default=300)
    args = parser.parse_args()
    for truth in ("exp_floor", "power_floor"):
        for oracle in (False, True):
            values = p_values(truth, args, oracle)
            print(f"true {truth:<11} null around the {'true' if oracle else 'fitted'} curve: rejected "
                  f"{np.mean(values < 0.05):.2f} at 0.05, {np.mean(values < 0.025):.2f} at 0.025 "
                  f"({args.datasets} runs, {args.documents} documents, {args.noise} noise)", flush=True)


if __name__ == "__main__":
    main()
