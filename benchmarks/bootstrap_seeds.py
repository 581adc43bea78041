"""How far the endpoints of the bootstrap intervals move with the seed, at 200 and at 2,000 replicates.

    .venv/bin/python benchmarks/bootstrap_seeds.py [--settings default] [--seeds 5]

Reads the coherent_text runs of the named settings from the data directory's store (build the book at
those settings first); prints, per run, the largest change of each endpoint of p's and the gap's 95%
intervals over the seeds. Measures nothing.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from green_profiles.analysis.profiles import load_run
from green_profiles.runs.experiments import experiment_parameters, notebook_runs
from green_profiles.runs.provenance import settings_key
from green_profiles.runs.store import runs_directory, runs_with_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", default="default")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the few-documents warning is not this script's subject
    store = runs_directory()
    plan = notebook_runs("coherent_text", experiment_parameters("coherent_text", args.settings))
    for role, config in plan.items():
        stored = runs_with_settings(store, settings_key(config))
        if "shading" in role or not stored:
            continue
        run = load_run(store / stored[0]["key"])
        for n_boot in (200, 2000):
            ends = []
            for seed in range(args.seeds):
                result = run.bootstrap("pred", n_boot=n_boot, seed=seed)
                ends.append(result.intervals["p_power_floor"] + result.intervals["rmse_gap"])
            spread = np.ptp(np.array(ends), axis=0)
            print(f"{' '.join(role)}, {n_boot} replicates, {args.seeds} seeds: p's endpoints move by "
                  f"{spread[0]:.3f} (low) and {spread[1]:.3f} (high); the gap's by {spread[2]:.3f} and "
                  f"{spread[3]:.3f} nats")


if __name__ == "__main__":
    main()
