"""How often each reading of the book comes out, on synthetic runs of known truth: error rates and power.

    .venv/bin/python benchmarks/error_rates.py [--datasets 30] [--documents 5 8 16 32 64] [--noise iid documents]
                                                 [--run KEY] [--out book/generated]

For each noise model (``green_profiles.analysis.synthetic``: ``iid``, ``documents``, and ``resampled`` when a
stored run is given with ``--run KEY``: the book's own rows), each number of documents (2 rows each, the
default build's distances) and each truth, ``--datasets`` synthetic runs are drawn and read as the book reads
a run:

- the verdict (``verdict(bootstrap_fits(...))``: power law / exponential / neither / undecided / flat / rising);
- the band test against the paper's 0.7–0.9 (``decisions.band_test``: inside / outside / inconclusive);
- the plateau test of the local slope (``local_slope.plateau``: a plateau claimed, and its level within 0.1 of
  the truth's exponent).

Truths: ``power_floor`` (p = 0.9, at the band's upper edge: its "inside" rate is the band test's size),
``exp_floor`` (the exponential nearest to it), ``stretched`` and ``broken`` (neither law), ``pure_power``
(p = 0.8, the band's centre, no floor: what a plateau test should find), ``small_drop`` (a power law losing 0.3
nats over the grid, for the power of the decay test) and ``flat`` (no decay: the decay test's size).

Writes ``error_rates.json`` (every count, the settings, the seeds, and the rule version
``green_profiles.analysis.fits.bootstrap.RULE_VERSION``) and ``error_rates.md`` (the tables the methods page
includes) into ``--out``. Runs on one core; ``--noise`` splits the work between processes, ``--merge`` joins
their JSON files into the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from green_profiles.analysis.decisions import band_test
from green_profiles.analysis.fits import bootstrap_fits, verdict
from green_profiles.analysis.fits.bootstrap import RULE_VERSION
from green_profiles.analysis.fits.resampling import resampled_profiles
from green_profiles.analysis.local_slope import plateau
from green_profiles.analysis.synthetic import PURE_P, TRUE_P, BorrowedNoise, synthetic_run

TRUTHS = ("power_floor", "exp_floor", "stretched", "broken", "pure_power", "small_drop", "flat")
EXPONENT = {"power_floor": TRUE_P, "pure_power": PURE_P}
VERDICTS = ("power law", "exponential", "neither", "undecided", "flat", "rising", "failed")
BANDS = ("inside the paper's band", "outside the paper's band", "inconclusive", "no estimate")


def one_dataset(truth: str, noise: str, n_documents: int, seed: int, *, n_boot: int, n_sim: int,
                borrowed: BorrowedNoise | None) -> dict[str, object]:
    run = synthetic_run(truth, noise, n_documents, seed=[seed, n_documents, TRUTHS.index(truth), 17],
                        borrowed=borrowed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = bootstrap_fits(run.distances, run.rows, n_boot=n_boot, seed=seed, group=run.group, n_sim=n_sim,
                                group_name="document")
        decision = verdict(result)
        band = band_test(result)
        full, replicates, _ = resampled_profiles(run.rows, run.group, n_boot=n_boot, seed=seed)
        found = plateau(run.distances, full, replicates)
    exponent = EXPONENT.get(truth, math.nan)
    return {"verdict": decision.winner, "band": band.verdict, "plateau": found is not None and found.decays,
            "plateau_near": found is not None and abs(found.level - exponent) <= 0.1,
            "p_vs_exp": decision.calibration.p_exponential if decision.calibration else math.nan,
            "p_vs_power": decision.calibration.p_power if decision.calibration else math.nan}


def simulate(args: argparse.Namespace) -> dict[str, object]:
    borrowed = None
    noises = list(args.noise)
    if args.run:
        from green_profiles.analysis.profiles import list_runs, load_run  # deferred: only with --run

        runs = list_runs()
        stored = load_run(runs.loc[runs["key"] == args.run, "path"].iloc[0])
        _, labels = stored.resampling_unit()
        borrowed = BorrowedNoise(stored.distances, stored.normalized("pred"), labels)
        noises.append("resampled")
    cells = []
    for noise in noises:
        for n_documents in args.documents:
            for truth in args.truths:
                start = time.time()
                outcomes = [one_dataset(truth, noise, n_documents, seed, n_boot=args.n_boot, n_sim=args.n_sim,
                                        borrowed=borrowed) for seed in range(args.datasets)]
                cells.append({"noise": noise, "documents": n_documents, "truth": truth, "datasets": args.datasets,
                              "verdict": dict(Counter(o["verdict"] for o in outcomes)),
                              "band": dict(Counter(o["band"] for o in outcomes)),
                              "plateau": sum(bool(o["plateau"]) for o in outcomes),
                              "plateau_near": sum(bool(o["plateau_near"]) for o in outcomes)})
                print(f"{noise:<9} {n_documents:>3} documents {truth:<11} {dict(cells[-1]['verdict'])} "
                      f"band {dict(cells[-1]['band'])} plateau {cells[-1]['plateau']} "
                      f"({time.time() - start:.0f} s)", flush=True)
    return {"rule_version": RULE_VERSION, "n_boot": args.n_boot, "n_sim": args.n_sim, "rows_per_document": 2,
            "run": args.run, "command": "benchmarks/error_rates.py " + " ".join(args.argv), "cells": cells}


def _share(count: int, total: int) -> str:
    return f"{count / total:.2f}" if total else "—"


def _rows(cells: list[dict], noises: list[str], truths: tuple[str, ...], values) -> list[str]:
    """One Markdown line per cell of ``truths`` x ``noises`` (by documents): its labels, then ``values(cell)``."""
    return [f"| {truth} | {noise} | {c['documents']} | " + " | ".join(values(c)) + " |\n"
            for truth in truths for noise in noises
            for c in cells if c["truth"] == truth and c["noise"] == noise]


def tables(results: dict[str, object]) -> str:
    """The Markdown tables of the methods page, from the JSON."""
    cells = sorted(results["cells"], key=lambda c: c["documents"])
    noises = sorted({c["noise"] for c in cells}, key=["iid", "documents", "resampled"].index)
    commands = "; ".join(f"`{command}`" for command in results["command"].split(" + "))
    out = [f"<!-- written by benchmarks/error_rates.py (rule version {results['rule_version']}); do not edit -->\n\n"
           f"Each line: {cells[0]['datasets']} synthetic runs of 2 rows per document, {results['n_boot']} "
           f"bootstrap replicates, {results['n_sim']} simulated profiles per law (rule version "
           f"{results['rule_version']}; written by {commands}, joined with `--merge`).\n\n"]
    out.append("**The verdict**: the share of runs given each verdict, by truth, noise model and documents.\n\n")
    out.append("| truth | noise | documents | " + " | ".join(f"*{v}*" for v in VERDICTS[:6]) + " |\n")
    out.append("|---|---|---|" + "---|" * 6 + "\n")
    out += _rows(cells, noises, ("power_floor", "exp_floor", "stretched", "broken", "small_drop", "flat"),
                 lambda c: [_share(c["verdict"].get(v, 0), c["datasets"]) for v in VERDICTS[:6]])
    out.append("\n**The band test** against 0.7–0.9: the share of runs read inside, outside or inconclusive. "
               f"Under `power_floor` (p = {TRUE_P}, the band's edge) \"inside\" is the test's error; under "
               f"`pure_power` (p = {PURE_P}, its centre) it is its power.\n\n")
    out.append("| truth | noise | documents | inside | outside | inconclusive |\n|---|---|---|---|---|---|\n")
    out += _rows(cells, noises, ("power_floor", "pure_power", "exp_floor"),
                 lambda c: [_share(c["band"].get(b, 0), c["datasets"]) for b in BANDS[:3]])
    out.append("\n**The plateau test** of the local slope: the share of runs in which a decaying plateau is "
               "claimed, and in which its level lies within 0.1 of the true exponent.\n\n")
    out.append("| truth | noise | documents | plateau claimed | level within 0.1 of p |\n|---|---|---|---|---|\n")
    out += _rows(cells, noises, ("pure_power", "power_floor", "exp_floor", "stretched"),
                 lambda c: [_share(c["plateau"], c["datasets"]),
                            _share(c["plateau_near"], c["datasets"]) if c["truth"] in EXPONENT else "—"])
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=int, default=30)
    parser.add_argument("--documents", type=int, nargs="+", default=[5, 8, 16, 32, 64])
    parser.add_argument("--noise", nargs="*", default=["iid", "documents"])
    parser.add_argument("--truths", nargs="+", default=list(TRUTHS))
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--n-sim", type=int, default=300)
    parser.add_argument("--run", default=None, help="a stored run's key: adds the 'resampled' noise model")
    parser.add_argument("--out", type=Path, default=Path("book/generated"))
    parser.add_argument("--name", default="error_rates", help="file name of the JSON (without .json)")
    parser.add_argument("--merge", type=Path, nargs="+", help="join these JSON files into the tables")
    args, _ = parser.parse_known_args()
    args.argv = [a for a in __import__("sys").argv[1:]]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        parts = [json.loads(path.read_text()) for path in args.merge]
        results = {**parts[0], "cells": [c for part in parts for c in part["cells"]],
                   "command": " + ".join(part["command"] for part in parts)}
        (args.out / "error_rates.json").write_text(json.dumps(results, indent=1) + "\n")
    else:
        results = simulate(args)
        (args.out / f"{args.name}.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "error_rates.md").write_text(tables(results))
    print(f"wrote {args.out / 'error_rates.md'}")


if __name__ == "__main__":
    main()
