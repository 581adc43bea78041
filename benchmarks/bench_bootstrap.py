"""Time the bootstrap at the paper's size, and the batched fitter of its replicates against a loop of lmfit fits.

    .venv/bin/python benchmarks/bench_bootstrap.py [--n-boot 2000] [--lmfit-replicates N] [--stored-runs K]
        [--repeats 5] [--resampling-only]

0. The batched resampling against the per-replicate loop it replaced (a copy of which is kept here):
   ``--n-boot`` replicate median profiles at the paper's size, and ``bootstrap_fits`` with no null
   simulations (``n_sim=0``) using either; old and new timed alternately in one process, ``--repeats``
   times each (the machine may be shared), printing the minimum times, their ratio and whether the
   replicates are bitwise identical. ``--resampling-only`` stops there.
1. The paper's bootstrap: 16,384 rows (1024 windows x 16 targets) x 25 distances, ``--n-boot``
   replicates: the total, and its two halves (the replicates' median profiles; their fits).
2. The same replicate profiles fitted by the batched fitter (all at once) and by lmfit one at a
   time (what the bootstrap did before), the three laws each: both times, their ratio, and the
   agreement (same optimum within 1e-5 relative, or which objective is lower).
3. The agreement on the replicates of up to ``--stored-runs`` runs of the data directory's store
   (the real measured runs, where there are any), and on 600 nearly flat profiles with 20% noise per
   point (the hardest case for a multi-start: several local optima).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import green_profiles.analysis.fits.bootstrap as fits_bootstrap
from green_profiles.analysis.fits import bootstrap_fits, fit_decay_models, verdict
from green_profiles.analysis.fits.batched import fit_profiles
from green_profiles.analysis.fits.resampling import ColumnAggregator, group_index, resampled_profiles
from green_profiles.analysis.fits.laws import FIT_PARAMS, MODEL_NAMES
from green_profiles.kernel.counts import measured_mask
from green_profiles.runs.configuration import PAPER_DISTANCES


def paper_rows(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic rows at the paper's size around a power law with floor (p = 0.85), and their windows."""
    r = np.array(PAPER_DISTANCES[:-1], dtype=float)
    rng = np.random.default_rng(seed)
    n_windows, n_targets = 1024, 16
    profile = 0.02 + 0.9 * (r + 1) ** -0.85
    rows = profile * rng.lognormal(0.0, 0.8, size=(n_windows * n_targets, r.size))
    rows[:, 0] = 1.0
    return r, rows, np.repeat(np.arange(n_windows), n_targets)


def replicate_profiles(rows: np.ndarray, group: np.ndarray, n_boot: int, seed: int = 0) -> np.ndarray:
    """``[n_boot, n_r]`` median profiles of group-resampled rows, the ones bootstrap_fits draws."""
    return resampled_profiles(rows, group, n_boot=n_boot, seed=seed)[1]


class LoopAggregator:
    """The median aggregator as it was before the batching (kept for the comparison): each sorted column read
    one replicate at a time, in a Python loop over the columns."""

    def __init__(self, rows: np.ndarray) -> None:
        valid = measured_mask(rows)
        self.columns = []
        for j in range(rows.shape[1]):
            idx = np.nonzero(valid[:, j])[0]
            order = np.argsort(rows[idx, j], kind="stable")
            self.columns.append((idx[order], rows[idx[order], j]))

    def __call__(self, multiplicity: np.ndarray) -> np.ndarray:
        out = np.full(len(self.columns), np.nan)
        for j, (idx, values) in enumerate(self.columns):
            counts = multiplicity[idx]
            cum = np.cumsum(counts)
            total = int(cum[-1]) if cum.size else 0
            if total == 0:
                continue
            lo = int(np.searchsorted(cum, (total - 1) // 2, side="right"))
            hi = int(np.searchsorted(cum, total // 2, side="right"))
            out[j] = 0.5 * (values[lo] + values[hi])
        return out


def loop_resampled_profiles(rows, group=None, *, n_boot: int, seed=0, statistic: str = "median"):
    """:func:`resampled_profiles` as it was (median only): one draw and one aggregate per replicate."""
    if statistic != "median":
        raise ValueError("the kept copy of the loop reads the median only")
    data = np.asarray(rows, dtype=np.float64)
    inverse, names = group_index(data.shape[0], group)
    n_groups = len(names)
    aggregate = LoopAggregator(data)
    rng = np.random.default_rng(seed)
    replicates = np.empty((n_boot, data.shape[1]))
    for b in range(n_boot):
        group_count = np.bincount(rng.integers(0, n_groups, size=n_groups), minlength=n_groups)
        replicates[b] = aggregate(group_count[inverse])
    return aggregate(np.ones(data.shape[0], dtype=np.int64)), replicates, names


def resampling_comparison(r: np.ndarray, rows: np.ndarray, group: np.ndarray, n_boot: int, repeats: int) -> None:
    """Part 0: the per-replicate loop against the batched resampling, alone and inside ``bootstrap_fits``
    (``n_sim=0``), timed alternately; prints the minimum of ``repeats`` runs of each and their ratio."""
    times: dict[str, list[float]] = {"loop": [], "batched": [], "fits with loop": [], "fits batched": []}
    identical = True
    for _ in range(repeats):
        start = time.perf_counter()
        old = loop_resampled_profiles(rows, group, n_boot=n_boot, seed=0)
        times["loop"].append(time.perf_counter() - start)
        start = time.perf_counter()
        new = resampled_profiles(rows, group, n_boot=n_boot, seed=0)
        times["batched"].append(time.perf_counter() - start)
        identical &= np.array_equal(old[0], new[0]) and np.array_equal(old[1], new[1]) and old[2] == new[2]
    for _ in range(repeats):
        fits_bootstrap.resampled_profiles = loop_resampled_profiles
        try:
            start = time.perf_counter()
            old_result = bootstrap_fits(r, rows, n_boot=n_boot, seed=0, group=group, n_sim=0)
            times["fits with loop"].append(time.perf_counter() - start)
        finally:
            fits_bootstrap.resampled_profiles = resampled_profiles
        start = time.perf_counter()
        new_result = bootstrap_fits(r, rows, n_boot=n_boot, seed=0, group=group, n_sim=0)
        times["fits batched"].append(time.perf_counter() - start)
        identical &= all(np.array_equal(old_result.replicates[key], new_result.replicates[key], equal_nan=True)
                         for key in new_result.replicates)
    best = {key: min(values) for key, values in times.items()}
    print(f"0. resampling, {n_boot} replicates of {rows.shape[0]:,} rows ({len(np.unique(group))} groups) x "
          f"{r.size} distances, median, no null simulations; minimum of {repeats} alternating runs each:")
    print(f"  replicate profiles: per-replicate loop {best['loop']:.3f} s, batched {best['batched']:.3f} s "
          f"(old/new {best['loop'] / best['batched']:.1f}x)")
    print(f"  bootstrap_fits(n_sim=0): with the loop {best['fits with loop']:.2f} s, batched "
          f"{best['fits batched']:.2f} s (old/new {best['fits with loop'] / best['fits batched']:.2f}x)")
    print(f"  replicates and fits bitwise identical: {identical}")
    print("  all runs (s): " + "; ".join(f"{key} " + ", ".join(f"{t:.2f}" for t in values)
                                         for key, values in times.items()))


def agreement(r: np.ndarray, profiles: np.ndarray, warm: dict | None = None) -> tuple[float, dict, dict]:
    """Fit ``profiles`` both ways; returns the lmfit loop's seconds, the batched fits, and per law the counts
    ``same`` (parameters within 1e-5 relative), ``tied`` (other parameters, objectives within 1e-6 relative: a
    flat direction of the objective), ``lower`` (the batched objective lower), ``higher`` (lmfit's lower, with
    the largest relative excess)."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tables = [fit_decay_models(r, profile, start_params=warm) for profile in profiles]
    seconds = time.perf_counter() - start
    fits = fit_profiles(r, profiles, start_params=warm)
    counts = {}
    for name in MODEL_NAMES:
        same = tied = lower = higher = 0
        worst = 0.0
        for b, table in enumerate(tables):
            reference = table.get(name)
            if not reference.success:
                continue
            expected = np.array([reference.params[key] for key in FIT_PARAMS[name]])
            if np.allclose(fits[name].values[b], expected, rtol=1e-5, atol=1e-5):
                same += 1
            elif abs(fits[name].rss[b] - reference.rss) <= 1e-6 * reference.rss + 1e-14:
                tied += 1
            elif fits[name].rss[b] < reference.rss:
                lower += 1
            else:
                higher += 1
                worst = max(worst, (fits[name].rss[b] - reference.rss) / reference.rss)
        counts[name] = {"same": same, "tied": tied, "lower": lower, "higher": higher, "worst": worst}
    return seconds, fits, counts


def print_agreement(label: str, counts: dict) -> None:
    parts = []
    for name, c in counts.items():
        text = f"{name}: {c['same']} same, {c['tied']} tied, {c['lower']} lower"
        if c["higher"]:
            text += f", {c['higher']} higher (up to {100 * c['worst']:.2g}% in RSS)"
        parts.append(text)
    print(f"  {label}: " + "; ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--lmfit-replicates", type=int, default=None,
                        help="replicates fitted by the lmfit loop for the comparison (default: all of --n-boot)")
    parser.add_argument("--stored-runs", type=int, default=4, help="stored runs whose replicates are compared")
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs of old and new resampling (part 0)")
    parser.add_argument("--resampling-only", action="store_true", help="stop after part 0")
    args = parser.parse_args()
    r, rows, group = paper_rows()

    resampling_comparison(r, rows, group, args.n_boot, args.repeats)
    if args.resampling_only:
        return
    print()

    counts = np.bincount(np.random.default_rng(1).integers(0, 1024, 1024), minlength=1024)[group]
    fast = ColumnAggregator(rows, "median")(counts)
    explicit = np.median(np.repeat(rows, counts, axis=0), axis=0)
    print(f"fast replicate median == numpy median of the resampled rows: {np.array_equal(fast, explicit)}")

    start = time.perf_counter()
    result = bootstrap_fits(r, rows, n_boot=args.n_boot, seed=0, group=group)
    total = time.perf_counter() - start
    start = time.perf_counter()
    profiles = replicate_profiles(rows, group, args.n_boot)
    medians = time.perf_counter() - start
    warm = {f.name: f.params for f in result.point if f.success}
    start = time.perf_counter()
    fit_profiles(r, profiles, start_params=warm)
    batched = time.perf_counter() - start
    print(f"\n1. {rows.shape[0]:,} rows x {r.size} distances, {args.n_boot} replicates over 1024 windows: "
          f"{total:.2f} s in all (replicate medians {medians:.2f} s, batched fits of 3 laws {batched:.2f} s)")
    print(verdict(result))

    n_lmfit = min(args.lmfit_replicates or args.n_boot, args.n_boot)
    lmfit_seconds, _, agree = agreement(r, profiles[:n_lmfit], warm)
    start = time.perf_counter()
    fit_profiles(r, profiles[:n_lmfit], start_params=warm)
    batched_same = time.perf_counter() - start
    print(f"\n2. the same {n_lmfit} replicates, 3 laws: lmfit loop {lmfit_seconds:.1f} s, batched {batched_same:.2f} s "
          f"({lmfit_seconds / batched_same:.0f}x)")
    print_agreement("agreement", agree)

    print("\n3. agreement elsewhere")
    from green_profiles.analysis.profiles import load_run  # deferred: only this part reads the store
    from green_profiles.runs.store import runs_directory, stored_metadata

    readable = [(path, meta) for path, meta in stored_metadata(runs_directory()) if isinstance(meta, dict)]
    # The largest runs first (longest windows, most windows): the replicates most like the book's.
    readable.sort(key=lambda item: (-item[1]["config"]["seq_len"], -item[1]["config"]["n_windows"], item[0].name))
    stored = [path for path, _ in readable[: args.stored_runs]]
    for path in stored:
        run = load_run(path)
        unit, labels = run.resampling_unit()
        profile, replicates, _ = resampled_profiles(run.normalized("pred"), labels, n_boot=200)
        point = fit_decay_models(run.distances, profile)
        _, _, agree = agreement(run.distances, replicates, {f.name: f.params for f in point if f.success})
        print_agreement(f"{run.config.model} {run.config.corpus} L={run.config.seq_len} (200 {unit} replicates)",
                        agree)
    if not stored:
        print("  no stored runs in the data directory")
    rng = np.random.default_rng(2)
    flat = 0.3 * np.exp(rng.normal(0.0, 0.2, (600, r.size - 1)))
    _, _, agree = agreement(r[1:], flat)
    print_agreement("600 flat profiles, 20% noise per point", agree)


if __name__ == "__main__":
    main()
