"""How far a half-precision run is from the float32 reference, on the same windows.

Measures (or loads from the store) two runs that differ only in the dtype the
model runs in: float32 and ``--dtype``. Same seed, so the same windows (checked).
Prints:

- the zero and non-finite norms at the grid points of each run (``norm_counts``);
- in how many rows the model's top-1 prediction differs between the dtypes (there the
  ``pred`` rows measure different logits, which is part of what half precision changes);
- the relative difference of the median normalized profile ``Ĝ`` over the distances
  ``r >= 1``: its largest and its median value;
- per row, the largest relative difference of ``Ĝ`` over ``r >= 1``: its median and its
  worst value over the rows (``pred`` rows only where both runs measured the same token);
- the same median-profile difference for ``pred`` over only the rows whose top-1 token
  agrees (with few rows, one flipped token can move a median to a neighbouring order statistic);
- ``p`` of the power law with floor fitted to the median ``pred`` profile, in both runs, and
  the float32 run's bootstrap 95% interval of ``p`` (200 document resamples) to compare with.

Defaults are the book's ``default`` settings (notebooks/settings.yml: SmolLM2-135M on
``gutenberg``, L = 512, target stride 8, so 4 targets per window) with fewer windows:

    python benchmarks/half_precision.py --dtype bfloat16 --n-windows 8

float16 is refused on a CPU (green_profiles.kernel.precision); run it on a GPU with ``--dtype float16``.
Runs are stored in the data directory (``--data-dir``, default ``$GREEN_PROFILES_DATA`` or ``data/``),
so a second call prints the same numbers without measuring again.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from green_profiles.runs.configuration import SELECTIONS, RunConfig
from green_profiles.files.locations import default_data_dir
from green_profiles.analysis.profiles import run_profile
from green_profiles.analysis.profiles import ProfileRun, aggregate_rows


def relative_difference(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """``|got / want - 1|`` elementwise (float64), NaN where either value is not finite and positive."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        usable = np.isfinite(got) & np.isfinite(want) & (got > 0) & (want > 0)
        return np.where(usable, np.abs(got / want - 1.0), np.nan)


def profile_difference(reference: ProfileRun, half: ProfileRun, selection: str,
                       rows: np.ndarray | None = None) -> tuple[float, int, float]:
    """Largest relative difference of the median profile over ``r >= 1``, its distance, and the median one.

    ``rows`` (``[n_rows]`` bool) restricts both profiles to those rows.
    """
    keep = slice(None) if rows is None else rows
    want = aggregate_rows(reference.normalized(selection)[keep], reference.distances)["median"].to_numpy()[1:]
    got = aggregate_rows(half.normalized(selection)[keep], half.distances)["median"].to_numpy()[1:]
    difference = relative_difference(got, want)
    worst = int(np.nanargmax(difference))
    return float(difference[worst]), int(reference.distances[1:][worst]), float(np.nanmedian(difference))


def row_differences(reference: ProfileRun, half: ProfileRun, selection: str) -> np.ndarray:
    """Per row, the largest relative difference of ``Ĝ`` over ``r >= 1``, ``[n_rows]`` (NaN: not comparable).

    ``pred`` rows whose top-1 token differs between the runs measure different
    logits and are left out (NaN).
    """
    per_entry = relative_difference(half.normalized(selection)[:, 1:], reference.normalized(selection)[:, 1:])
    per_row = np.fmax.reduce(per_entry, axis=1)  # NaN-ignoring; NaN only where a row has nothing to compare
    if selection == "pred":
        same = (reference.arrays["pred_tokens"] == half.arrays["pred_tokens"]).reshape(-1)
        per_row = np.where(same, per_row, np.nan)
    return per_row


def power_floor_p(run: ProfileRun) -> str:
    """``p`` of the power law with floor on the median ``pred`` profile, with the fit's issue if any."""
    fit = run.fit("pred").get("power_floor")
    if fit is None or not fit.success:
        return "failed"
    return f"{fit.params['p']:.4f}" + (f" ({fit.issue})" if fit.issue else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="bfloat16", help="the half precision to compare (bfloat16, float16)")
    parser.add_argument("--n-windows", type=int, default=8)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--corpus", default="gutenberg")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--target-stride", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: $GREEN_PROFILES_DATA or data/")
    args = parser.parse_args()

    base = RunConfig(model=args.model, corpus=args.corpus, seq_len=args.seq_len, n_windows=args.n_windows,
                     target_stride=args.target_stride, seed=args.seed, dtype="float32")
    data_dir = args.data_dir or default_data_dir()
    reference = run_profile(base, data_dir=data_dir, device=args.device)
    half = run_profile(dataclasses.replace(base, dtype=args.dtype), data_dir=data_dir, device=args.device)
    dtype = half.metadata.get("dtype", args.dtype)

    config = reference.config
    n_windows, n_targets = reference.arrays["pred_tokens"].shape
    print(f"{config.model} on {config.corpus}, L={config.seq_len}, {n_windows} windows x {n_targets} targets "
          f"(targets {config.target_min}..{config.target_max} stride {config.target_stride}, sources >= "
          f"{config.source_min_index}, {len(reference.distances)} distances), seed {config.seed}")
    print(f"device: {half.metadata['environment']['device']}; runs {reference.key} (float32), {half.key} ({dtype})")
    if not np.array_equal(reference.arrays["window_ids"], half.arrays["window_ids"]):
        raise SystemExit("the two runs drew different windows: nothing to compare")
    print("windows: the same token ids in both runs")

    print("norm counts at the grid points (zero / non-finite / total):")
    for run, name in ((reference, "float32"), (half, dtype)):
        counts = {selection: run.norm_counts(selection).summed() for selection in SELECTIONS}
        print(f"  {name:<9} " + "   ".join(f"{selection}: {c['zero']} / {c['non_finite']} / {c['total']}"
                                         for selection, c in counts.items()))
    differ = int((reference.arrays["pred_tokens"] != half.arrays["pred_tokens"]).sum())
    print(f"top-1 prediction differs between the dtypes in {differ} of {reference.n_rows} rows")

    print(f"median profile Ĝ, relative difference {dtype} vs float32 over r >= 1:")
    for selection in SELECTIONS:
        worst, at, median = profile_difference(reference, half, selection)
        print(f"  {selection}: max {worst:.3%} (at r = {at}), median {median:.3%}")
    same = (reference.arrays["pred_tokens"] == half.arrays["pred_tokens"]).reshape(-1)
    worst, at, median = profile_difference(reference, half, "pred", same)
    print(f"  pred, the {int(same.sum())} rows with the same top-1 token: max {worst:.3%} (at r = {at}), "
          f"median {median:.3%}")
    print("per row, max over r >= 1 of the relative difference of Ĝ; over rows:")
    for selection in SELECTIONS:
        per_row = row_differences(reference, half, selection)
        print(f"  {selection}: median {np.nanmedian(per_row):.3%}, worst {np.nanmax(per_row):.3%} "
              f"({int(np.isfinite(per_row).sum())} rows compared)")
    p_reference, p_half = power_floor_p(reference), power_floor_p(half)
    print(f"p (power law with floor, pred median profile): float32 {p_reference}, {dtype} {p_half}")
    low, high = reference.bootstrap("pred", n_boot=200, seed=0).intervals["p_power_floor"]
    print(f"  float32 bootstrap 95% interval of p (200 resamples): [{low:.4f}, {high:.4f}]")


if __name__ == "__main__":
    main()
