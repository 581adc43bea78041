"""Measuring a sample of a stored run's windows again: the one check a forged run cannot pass.

Checksums and a recomputed key (:mod:`green_profiles.runs.keys`) catch damage and runs filed under
the wrong key, but not a run whose numbers were changed and whose checksums and key were then
recomputed to match. Where the run's model and text are at hand, :func:`verify_run` samples a few of
its windows, runs the kernel on them again and compares the result with the stored rows, within
the rounding that another machine's arithmetic allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from green_profiles.kernel import jacobian
from green_profiles.kernel.precision import resolve_device
from green_profiles.runs.configuration import RunConfig
from green_profiles.runs.measurement import prepare_inputs, window_arrays
from green_profiles.runs.provenance import run_key, run_provenance
from green_profiles.runs.store import read_run, runs_directory
from green_profiles.text import load_corpus

__all__ = ["RELATIVE_TOLERANCE", "Verification", "VerificationError", "verify_run"]

# Largest relative difference of a norm measured again from its stored value: other BLAS kernels or
# another device round differently (float32: ~1e-6 here), half precisions far more.
RELATIVE_TOLERANCE = {"float32": 1e-3, "float64": 1e-6, "bfloat16": 5e-2, "float16": 2e-2}


class VerificationError(ValueError):
    """A run that cannot be verified here (other weights or text than it was measured from)."""


@dataclass(frozen=True)
class Verification:
    """The outcome of measuring some of a run's windows again.

    Attributes:
        key: the run.
        windows: indices of the windows measured again.
        rows: rows compared (windows x targets, both token selections counted once).
        max_relative_difference: the largest ``|new - stored| / max(|stored|, floor)`` over the
            compared norms (the floor: 1e-6 of the row's largest norm, for underflowed values).
        tolerance: the largest difference accepted, by the run's dtype.
        changed_predictions: rows whose predicted token differs (a near tie resolved otherwise);
            their ``pred`` norms are not compared.
        token_mismatches: rows whose observed token or window differs: never rounding, always a fault.
    """

    key: str
    windows: tuple[int, ...]
    rows: int
    max_relative_difference: float
    tolerance: float
    changed_predictions: int
    token_mismatches: int

    @property
    def matches(self) -> bool:
        """Whether the stored rows are what the kernel measures again."""
        return self.token_mismatches == 0 and self.max_relative_difference <= self.tolerance

    def __str__(self) -> str:
        outcome = "matches" if self.matches else "DOES NOT MATCH the stored rows"
        extra = f"; {self.changed_predictions} predicted tokens differ (not compared)" if self.changed_predictions else ""
        if self.token_mismatches:
            extra += f"; {self.token_mismatches} rows with other tokens than stored"
        return (f"run {self.key}: windows {', '.join(map(str, self.windows))} measured again ({self.rows} rows): "
                f"largest relative difference {self.max_relative_difference:.2e} (tolerance {self.tolerance:.0e})"
                f"{extra}: {outcome}")


def verify_run(key: str, data_dir: Path | None = None, *, n_windows: int = 2, seed: int = 0,
               device: str | torch.device = "auto") -> Verification:
    """Measure ``n_windows`` randomly chosen windows of stored run ``key`` again and compare.

    Args:
        key: a stored run's key.
        data_dir: the data directory (its ``runs/`` holds the run; its corpora and models are used).
        n_windows: windows to measure again (at most the run's).
        seed: chooses the windows.
        device: where to run the model.

    Raises:
        FileNotFoundError: no stored run ``key``.
        green_profiles.runs.store.CorruptRunError: the run is damaged.
        VerificationError: the model or text here differ from the run's (another key), so its numbers
            cannot be reproduced here.
        green_profiles.models.loading.ModelUnavailableError, green_profiles.text.CorpusUnavailableError:
            the run's model or text cannot be had here.
    """
    if n_windows < 1:
        raise ValueError(f"n_windows must be at least 1, got {n_windows}")
    path = runs_directory(data_dir) / key
    if not path.is_dir():
        raise FileNotFoundError(f"no stored run {key} in {path.parent}; `green-profiles list` shows them")
    stored = read_run(path)
    config = RunConfig.from_dict(stored.metadata["config"])
    target = resolve_device(device)
    documents = load_corpus(config.corpus, data_dir=data_dir, split=config.split)
    provenance = run_provenance(config, documents, data_dir)
    here = run_key(config, provenance, target)
    if here != key:
        changes = provenance.differences(stored.metadata["provenance"]) or [
            f"the dtype it runs in on {target} is not {stored.metadata['dtype']}"]
        raise VerificationError(f"run {key} cannot be verified here: {'; '.join(changes)} (key here {here})")
    inputs = prepare_inputs(config, documents, data_dir=data_dir, device=target)
    arrays = stored.arrays
    chosen = np.sort(np.random.default_rng(seed).choice(len(arrays["window_ids"]),
                                                        size=min(n_windows, len(arrays["window_ids"])),
                                                        replace=False))
    tolerance = RELATIVE_TOLERANCE.get(stored.metadata["dtype"], 5e-2)
    worst, changed, mismatched = 0.0, 0, 0
    for index in chosen.tolist():
        if not np.array_equal(inputs.windows.ids[index], arrays["window_ids"][index]):
            mismatched += len(inputs.targets)
            continue
        rows = jacobian.protocol_gradient_norms(inputs.model, torch.from_numpy(inputs.windows.ids[index]),
                                                torch.from_numpy(inputs.targets),
                                                min_source=config.source_min_index, per_layer=config.per_layer)
        again = window_arrays(rows, inputs.sources, config)
        mismatched += int((again["true_tokens"] != arrays["true_tokens"][index]).sum())
        same_prediction = again["pred_tokens"] == arrays["pred_tokens"][index]
        changed += int((~same_prediction).sum())
        worst = max(worst, _relative_difference(again["true_raw"], arrays["true_raw"][index]),
                    _relative_difference(again["pred_raw"][same_prediction], arrays["pred_raw"][index][same_prediction]))
    return Verification(key=key, windows=tuple(chosen.tolist()), rows=len(chosen) * len(inputs.targets),
                        max_relative_difference=worst, tolerance=tolerance, changed_predictions=changed,
                        token_mismatches=mismatched)


def _relative_difference(again: np.ndarray, stored: np.ndarray) -> float:
    """Largest ``|again - stored| / max(|stored|, floor)`` over rows ``[rows, n_r]``; NaNs (left of the buffer)
    must sit in the same places (else infinity)."""
    if again.size == 0:
        return 0.0
    if not np.array_equal(np.isnan(again), np.isnan(stored)):
        return float("inf")
    again, stored = np.nan_to_num(again.astype(np.float64)), np.nan_to_num(stored.astype(np.float64))
    floor = 1e-6 * np.abs(stored).max(axis=-1, keepdims=True) + np.finfo(np.float64).tiny
    return float((np.abs(again - stored) / np.maximum(np.abs(stored), floor)).max())
