"""How often the intervals are right, by simulation from a stored run's own noise (the verdict's error rates
are benchmarks/error_rates.py's).

    .venv/bin/python benchmarks/simulate_inference.py coverage    [--datasets 200] [--documents 5 8 16 64]
    .venv/bin/python benchmarks/simulate_inference.py power       [--datasets 60]  [--documents 8 16 32 64]

Synthetic data of known truth keep everything of a real run but its profile: the run
(``--run KEY``; by default the default book's coherent Gutenberg run) gives each row's
log deviation from the median profile, ``log Ĝ[i, r] − log median_r``. A synthetic
dataset draws ``--documents`` documents with replacement (a document drawn twice
counts as two), keeps their rows' deviations, and puts them around a known curve: the
run's own fitted power law with floor, or its fitted exponential with floor (or the power
law with another exponent). So the noise, its skew, its spread along the row and its
correlation within a document are the real run's; its median profile is the truth. Each drawn
document's rows get fresh jitter of 0.3 nats per row and per entry (so that a document drawn twice is two
similar documents, not duplicated rows, which make medians lumpy as no real corpus does; it widens the
entries' spread from about 1.09 to 1.17 nats).

- ``coverage``: the share of datasets whose 95% interval of ``p`` (power law with
  floor) contains the true ``p``, by the number of documents, for the percentile,
  expanded-percentile and BCa intervals of the same replicates
  (:mod:`green_profiles.analysis.fits.intervals`).
- ``power``: by the number of documents, how often a dataset from the power law is
  called "power law", and how often two independent datasets at ``p = 0.8`` and
  ``p = 1.0`` give an interval of the difference that excludes zero.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np

from green_profiles.analysis.fits import bootstrap_fits, fit_decay_models, model_curve, paired_difference, verdict
from green_profiles.analysis.fits.batched import fit_profiles
from green_profiles.analysis.fits.intervals import interval
from green_profiles.analysis.fits.resampling import jackknife_profiles, resampled_profiles
from green_profiles.analysis.profiles import list_runs, load_run
from green_profiles.kernel.counts import valid_mask


# Nats of normal jitter per row and per entry of a drawn document (the run's own entries spread by about 1.1).
JITTER = 0.3


def stored_run(key: str | None):
    """The run to borrow the noise from: ``key``, or the default book's coherent Gutenberg run."""
    runs = list_runs()
    if key is None:
        chosen = runs[(runs["corpus"] == "gutenberg") & (runs["shuffle"] == "none") & (runs["model"] == "smollm2-135m")
                      & (runs["n_windows"] == runs["n_windows"].max())]
        if chosen.empty:
            raise SystemExit("no stored default coherent Gutenberg run: run `make book` first, or pass --run KEY")
        key = chosen.iloc[0]["key"]
    return load_run(runs.loc[runs["key"] == key, "path"].iloc[0])


class Noise:
    """The rows' log deviations from their median profile, by document, and the run's fitted laws."""

    def __init__(self, run) -> None:
        self.key = run.key
        self.r = run.distances.astype(float)
        rows = run.normalized("pred")
        unit, labels = run.resampling_unit()
        self.unit = unit
        profile = np.nanmedian(np.where(valid_mask(rows), rows, np.nan), axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.deviation = np.log(rows) - np.log(profile)[None, :]
        self.deviation[~np.isfinite(self.deviation) & (rows != 0)] = np.nan  # missing stays missing; zeros -inf
        self.deviation[:, self.r < 1] = 0.0
        self.documents = [np.nonzero(labels == label)[0] for label in np.unique(labels)]
        table = fit_decay_models(self.r, profile)
        self.fits = {name: table.get(name).params for name in ("power_floor", "exp_floor")}

    def curve(self, law: str, p: float | None = None) -> np.ndarray:
        """The law's fitted curve at the run's distances (``p`` replaced when given); 1 at ``r = 0``."""
        params = dict(self.fits[law])
        if p is not None:
            params = {k: v for k, v in params.items() if k in ("logA", "logc")} | {"p": p}
        values = model_curve(law, params, np.maximum(self.r, 1.0))
        return np.where(self.r < 1, 1.0, values)

    def dataset(self, curve: np.ndarray, n_documents: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n_documents`` documents drawn with replacement, their rows around ``curve``: rows and group labels.

        A drawn document's rows get fresh jitter (``JITTER`` nats per row and per entry), so that a
        document drawn twice is two documents, not one counted twice: repeated identical rows make
        medians lumpy in a way no real corpus is (a smoothed bootstrap).
        """
        chosen = rng.integers(0, len(self.documents), size=n_documents)
        index = np.concatenate([self.documents[d] for d in chosen])
        labels = np.concatenate([np.full(self.documents[d].size, i) for i, d in enumerate(chosen)])
        jitter = JITTER * (rng.standard_normal((index.size, 1)) + rng.standard_normal((index.size, self.r.size)))
        jitter[:, self.r < 1] = 0.0
        return curve[None, :] * np.exp(self.deviation[index] + jitter), labels


def coverage(noise: Noise, args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    curve = noise.curve("power_floor")
    # The truth is the p of the synthetic population's own median profile (a sample of 4,000 documents):
    # the jitter moves that median a little off the curve (the entries' spread is skewed).
    population, _ = noise.dataset(curve, 4000, np.random.default_rng([args.seed, 1]))
    truth = float(fit_decay_models(noise.r, resampled_profiles(population, n_boot=0)[0]).get("power_floor").params["p"])
    methods = ("percentile", "expanded", "bca")
    print(f"coverage of 95% intervals of p (true p = {truth:.3f}; the curve's {noise.fits['power_floor']['p']:.3f}), "
          f"{args.datasets} datasets each, "
          f"{args.n_boot} replicates")
    for n_documents in args.documents:
        hits = dict.fromkeys(methods, 0)
        widths: dict[str, list[float]] = {method: [] for method in methods}
        usable = 0
        start = time.perf_counter()
        for _ in range(args.datasets):
            rows, labels = noise.dataset(curve, n_documents, rng)
            result = bootstrap_fits(noise.r, rows, n_boot=args.n_boot, seed=int(rng.integers(2**31)), group=labels,
                                    group_name=noise.unit, n_sim=0)
            point = result.point_estimates["p_power_floor"]
            values = result.replicates["p_power_floor"]
            jack = fit_profiles(noise.r, jackknife_profiles(rows, labels), models=("power_floor",))["power_floor"]
            jackknife = np.where(jack.usable, jack.param("p"), np.nan)
            bounds = {method: interval(values, 0.95, method, n_groups=result.n_groups, point=point,
                                       jackknife=jackknife) for method in methods}
            if not all(math.isfinite(low) and math.isfinite(high) for low, high in bounds.values()):
                continue
            usable += 1
            for method, (low, high) in bounds.items():
                hits[method] += low <= truth <= high
                widths[method].append(high - low)
        text = ", ".join(f"{method} {hits[method] / usable:.3f} (width {np.median(widths[method]):.3f})"
                         for method in methods) if usable else "no usable interval"
        print(f"  {n_documents:>4} {noise.unit}s: {text}; {usable} datasets with all three "
              f"({time.perf_counter() - start:.0f} s)")


def power(noise: Noise, args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    print(f"power by documents, {args.datasets} datasets each, {args.n_boot} replicates, {args.n_sim} simulations")
    for n_documents in args.documents:
        called = resolved = 0
        for _ in range(args.datasets):
            rows, labels = noise.dataset(noise.curve("power_floor"), n_documents, rng)
            seed = int(rng.integers(2**31))
            called += verdict(bootstrap_fits(noise.r, rows, n_boot=args.n_boot, seed=seed, group=labels,
                                             group_name=noise.unit, n_sim=args.n_sim)).winner == "power law"
            pair = []
            for p in (0.8, 1.0):
                rows, labels = noise.dataset(noise.curve("power_floor", p), n_documents, rng)
                pair.append(bootstrap_fits(noise.r, rows, n_boot=args.n_boot, seed=int(rng.integers(2**31)),
                                           group=labels, group_name=noise.unit, n_sim=0))
            resolved += paired_difference(*pair).resolved
        print(f"  {n_documents:>4} {noise.unit}s: 'power law' from a power law {called / args.datasets:.2f}; "
              f"p = 0.8 vs 1.0 told apart (unpaired 95% interval) {resolved / args.datasets:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("coverage", "power"))
    parser.add_argument("--run", help="stored run key to borrow the noise from")
    parser.add_argument("--datasets", type=int, default=None)
    parser.add_argument("--documents", type=int, nargs="+", default=None)
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--n-sim", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    defaults = {"coverage": (200, [5, 8, 16, 64]), "power": (60, [8, 16, 32, 64])}
    datasets, documents = defaults[args.what]
    args.datasets = args.datasets or datasets
    args.documents = args.documents or documents
    warnings.simplefilter("ignore")  # few-document fallbacks and flat replicates are counted, not shown
    noise = Noise(stored_run(args.run))
    print(f"noise of run {noise.key}: {len(noise.documents)} {noise.unit}s, {len(noise.r)} distances")
    {"coverage": coverage, "power": power}[args.what](noise, args)


if __name__ == "__main__":
    main()
