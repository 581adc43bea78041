"""Measurement runs: from a model and a corpus to stored, aggregated gradient-norm profiles.

A run is fixed by a :class:`RunConfig` (model, corpus, window length, windows,
targets, distance grid, source buffer, shuffle, dtype, seed). :func:`run_profile`
samples the windows, runs the kernel for both token selections of the protocol
(``"pred"``: the model's argmax prediction, the paper's main figures; ``"true"``:
the observed next token) and keeps, for every (window, target) row, the raw norms
``G(j, r)`` at the grid distances. ``Ĝ = G / G(j, 0)`` is derived on load.

Runs are data. Each lives in ``<data>/runs/<key>/``, ``key`` a hash of the resolved
configuration and the dtype it ran in:

``profiles.npz``
    ``distances [n_r]``, ``targets [T]``, ``window_ids [n, L + 1]``,
    ``document [n]``, ``start [n]``, ``true_tokens``/``pred_tokens [n, T]``,
    ``true_log_probs [n, T]`` and the raw norms ``true_raw``/``pred_raw [n, T, n_r]``.
``rows.csv``
    one line per (window, target): document, title, start, target, both tokens
    (ids and text), whether the prediction was right, the observed token's log-probability.
``metadata.json``
    the configuration, key, package versions, git commit, device, timings,
    throughput and the SHA-256 of the two data files (a mismatch means corrupt).

The directory appears in one rename once everything is written. While a run is
under way, finished windows are flushed to ``<key>.partial/`` about once a minute
(and on Ctrl-C), so an interrupted run resumes where it stopped and yields the
same arrays as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from green_profiles.locations import default_data_dir, file_sha256
from green_profiles.precision import resolve_device, resolve_dtype

# The paper's distance grid (Pythia up to 1536; Qwen adds 2048).
PAPER_DISTANCES = (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768,
                   1024, 1280, 1536, 2048)
SELECTIONS = ("pred", "true")
Selection = Literal["pred", "true"]
RUN_FORMAT = 1
_DATA_FILES = ("profiles.npz", "rows.csv")
_FLUSH_SECONDS = 60.0


class CorruptRunError(RuntimeError):
    """A run directory is incomplete or its files do not match their recorded checksums."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers.

    Defaults left as ``None`` scale the paper's Pythia settings (``L = 2048``,
    targets ``1920..2047`` stride 8, buffer 384) to ``seq_len``: targets in the
    last sixteenth of the window, 16 of them, and a buffer of ``3 L / 16``.
    ``L = 2048`` reproduces the Pythia run exactly; :data:`PRESETS` holds both
    of the paper's runs.

    Attributes:
        model: a name understood by :func:`green_profiles.models.load_model`
            (``"smollm2-135m"``, ``"pythia-70m"``, ``"smollm2-135m@random"``, a hub id, a directory).
        corpus: a name understood by :func:`green_profiles.corpora.load_corpus`.
        seq_len: ``L``, tokens the model reads per window (windows hold ``L + 1``).
        n_windows: number of windows sampled.
        target_min, target_max, target_stride: target positions ``j`` (inclusive range).
        source_min_index: the left buffer: every source ``j - r`` is at least this index.
        distances: the grid of ``r`` (tokens); ``0`` is always included, and
            distances that would put a source inside the buffer for any target are dropped.
        shuffle: ``"none"``, ``"window"`` or ``"corpus"`` (see :mod:`green_profiles.windows`).
        dtype: ``"auto"``, ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        seed: seeds window sampling, shuffling and ``@random`` initialization.
        revision: hub revision of the model (e.g. a Pythia ``"step3000"``).
        split: corpus split, for hub corpora.
    """

    model: str = "smollm2-135m"
    corpus: str = "gutenberg"
    seq_len: int = 512
    n_windows: int = 32
    target_min: int | None = None
    target_max: int | None = None
    target_stride: int | None = None
    source_min_index: int | None = None
    distances: tuple[int, ...] | None = None
    shuffle: str = "none"
    dtype: str = "auto"
    seed: int = 0
    revision: str | None = None
    split: str = "test"

    def resolved(self) -> RunConfig:
        """The configuration with every default filled in and checked.

        Raises:
            ValueError: sizes that cannot work (targets outside the window, a
                buffer right of the first target, no distance left but 0, ...).
        """
        from green_profiles.windows import SHUFFLE_MODES

        length = int(self.seq_len)
        if length < 2:
            raise ValueError(f"seq_len must be at least 2, got {length}")
        if self.n_windows < 1:
            raise ValueError(f"n_windows must be positive, got {self.n_windows}")
        if self.shuffle not in SHUFFLE_MODES:
            raise ValueError(f"unknown shuffle {self.shuffle!r}: use one of {', '.join(SHUFFLE_MODES)}")
        target_min = length - max(1, length // 16) if self.target_min is None else int(self.target_min)
        target_max = length - 1 if self.target_max is None else int(self.target_max)
        stride = max(1, (target_max - target_min + 1) // 16) if self.target_stride is None else int(self.target_stride)
        buffer = 3 * length // 16 if self.source_min_index is None else int(self.source_min_index)
        if not 0 <= target_min <= target_max < length:
            raise ValueError(f"targets must satisfy 0 <= target_min <= target_max < seq_len = {length}; "
                             f"got {target_min}..{target_max}")
        if stride < 1:
            raise ValueError(f"target_stride must be positive, got {stride}")
        if not 0 <= buffer <= target_min:
            raise ValueError(f"source_min_index must lie in [0, target_min = {target_min}], got {buffer}")
        # The last target actually used, so that equivalent ranges share one cache key.
        target_max = target_min + (target_max - target_min) // stride * stride
        grid = PAPER_DISTANCES if self.distances is None else self.distances
        if any(int(r) < 0 for r in grid):
            raise ValueError(f"distances must be non-negative, got {tuple(grid)}")
        # A source j - r must stay >= the buffer for the first (smallest) target.
        distances = tuple(sorted({0, *(int(r) for r in grid if int(r) <= target_min - buffer)}))
        if len(distances) < 2:
            raise ValueError(f"no distance r >= 1 fits between the buffer ({buffer}) and the first target "
                             f"({target_min}); lower source_min_index or raise target_min")
        return dataclasses.replace(
            self, seq_len=length, target_min=target_min, target_max=target_max, target_stride=stride,
            source_min_index=buffer, distances=distances,
        )

    @property
    def targets(self) -> np.ndarray:
        """Target positions ``[T]`` (of the resolved configuration)."""
        config = self.resolved()
        return np.arange(config.target_min, config.target_max + 1, config.target_stride, dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (``distances`` as a list)."""
        record = dataclasses.asdict(self)
        if record["distances"] is not None:
            record["distances"] = list(record["distances"])
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> RunConfig:
        """The inverse of :meth:`to_dict`; unknown keys raise."""
        record = dict(record)
        if record.get("distances") is not None:
            record["distances"] = tuple(int(r) for r in record["distances"])
        return cls(**record)


PRESETS: dict[str, RunConfig] = {
    # The paper's two published runs (PROTOCOL.md): 1024 windows x 16 targets = 16,384 rows each.
    "pythia": RunConfig(model="pythia-14m", corpus="pg19", seq_len=2048, n_windows=1024, target_min=1920,
                        target_max=2047, target_stride=8, source_min_index=384),
    "qwen": RunConfig(model="qwen2.5-0.5b", corpus="pg19", seq_len=4096, n_windows=1024, target_min=3584,
                      target_max=4095, target_stride=32, source_min_index=1536),
}


def run_key(config: RunConfig, device: str | torch.device = "auto") -> str:
    """The cache key of a run: 16 hex digits of the SHA-256 of its resolved configuration.

    The dtype enters as the one the model will actually run in, so ``"auto"``
    on a CPU and ``"float32"`` share a key; the device does not (it changes
    results only by rounding) and is recorded in the metadata instead.
    """
    resolved = config.resolved()
    record = resolved.to_dict() | {"dtype": str(_run_dtype(resolved, device)).removeprefix("torch."),
                                   "format": RUN_FORMAT}
    blob = json.dumps(record, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def aggregate_rows(rows: np.ndarray, distances: Sequence[int] | np.ndarray) -> Any:
    """Per-distance statistics of profile rows over their finite, positive values.

    Args:
        rows: ``[n_rows, n_r]`` values (normalized or raw); NaN, inf, zero and
            negative entries are left out of every statistic.
        distances: ``[n_r]`` distances ``r`` in tokens.

    Returns:
        a pandas DataFrame indexed by ``r`` with ``count``, ``median``, ``mean``,
        ``trimmed_mean`` (10% cut from each end) and quantiles ``q10``, ``q25``,
        ``q75``, ``q90``; NaN where a distance has no valid value.
    """
    import pandas as pd
    from scipy.stats import trim_mean

    data = np.asarray(rows, dtype=np.float64)
    r = np.asarray(distances, dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != r.size:
        raise ValueError(f"rows must be [n_rows, {r.size}], got {data.shape}")
    records = []
    for column in data.T:
        valid = column[np.isfinite(column) & (column > 0)]
        if valid.size == 0:
            records.append({"count": 0} | dict.fromkeys(
                ("median", "mean", "trimmed_mean", "q10", "q25", "q75", "q90"), math.nan))
            continue
        q10, q25, median, q75, q90 = np.quantile(valid, [0.10, 0.25, 0.50, 0.75, 0.90])
        records.append({"count": int(valid.size), "median": median, "mean": float(valid.mean()),
                        "trimmed_mean": float(trim_mean(valid, 0.1)), "q10": q10, "q25": q25, "q75": q75,
                        "q90": q90})
    return pd.DataFrame.from_records(records, index=pd.Index(r, name="r"))


@dataclass(frozen=True, eq=False)  # arrays: no element-wise __eq__
class ProfileRun:
    """A finished run: the arrays, the per-row table and the metadata.

    Rows are (window, target) pairs in window-major order: row ``i * T + t`` is
    window ``i``, target ``targets[t]``.
    """

    config: RunConfig
    key: str
    path: Path | None
    arrays: Mapping[str, np.ndarray]
    table: Any  # pandas.DataFrame, one line per row
    metadata: Mapping[str, Any]

    @property
    def distances(self) -> np.ndarray:
        """``[n_r]`` distances in tokens, starting with 0."""
        return self.arrays["distances"]

    @property
    def targets(self) -> np.ndarray:
        """``[T]`` target positions."""
        return self.arrays["targets"]

    @property
    def n_rows(self) -> int:
        """Number of (window, target) rows."""
        return int(self.arrays["pred_raw"].shape[0] * self.arrays["pred_raw"].shape[1])

    @property
    def window_of_row(self) -> np.ndarray:
        """``[n_rows]`` window index of each row (for resampling whole windows)."""
        n_windows, n_targets = self.arrays["pred_raw"].shape[:2]
        return np.repeat(np.arange(n_windows), n_targets)

    def raw(self, selection: Selection = "pred") -> np.ndarray:
        """Raw norms ``G(j, r)``, ``[n_rows, n_r]`` float32 (gradient of a logit per unit embedding)."""
        _check_selection(selection)
        values = self.arrays[f"{selection}_raw"]
        return values.reshape(-1, values.shape[-1])

    def normalized(self, selection: Selection = "pred") -> np.ndarray:
        """Diagonal-normalized rows ``Ĝ(j, r) = G(j, r) / G(j, 0)``, ``[n_rows, n_r]`` float64.

        A row whose ``G(j, 0)`` is zero or not finite is all NaN.
        """
        raw = self.raw(selection).astype(np.float64)
        diagonal = raw[:, :1]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.isfinite(diagonal) & (diagonal > 0), raw / diagonal, np.nan)

    def profile(self, selection: Selection = "pred", normalized: bool = True) -> Any:
        """Per-distance statistics (:func:`aggregate_rows`) of the chosen rows."""
        rows = self.normalized(selection) if normalized else self.raw(selection)
        return aggregate_rows(rows, self.distances)

    def fit(self, selection: Selection = "pred", statistic: Literal["median", "mean"] = "median") -> Any:
        """The three decay models fitted to the normalized profile over ``r >= 1`` (a FitTable)."""
        from green_profiles.fits import fit_decay_models

        return fit_decay_models(self.distances, self.profile(selection)[statistic].to_numpy())

    def bootstrap(self, selection: Selection = "pred", n_boot: int = 200, seed: int = 0,
                  statistic: Literal["median", "mean"] = "median") -> Any:
        """Window bootstrap of the fits (a BootstrapResult): whole windows are resampled."""
        from green_profiles.fits import bootstrap_fits

        return bootstrap_fits(self.distances, self.normalized(selection), n_boot=n_boot, seed=seed,
                              group=self.window_of_row, statistic=statistic)

    def summary(self, selection: Selection = "pred", n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
        """One flat record of the run's headline numbers, for tables and forest plots.

        ``p`` (power + floor) and the log-RMSE gap (exponential minus best power
        law, positive when the power law fits better) with their window-bootstrap
        95% intervals, the best model by log-RMSE, the verdict sentence, top-1
        accuracy and mean loss at the targets.
        """
        from green_profiles.fits import verdict

        result = self.bootstrap(selection, n_boot=n_boot, seed=seed)
        point = result.point_estimates
        best = result.point.best
        return {
            "model": self.config.model, "corpus": self.config.corpus, "shuffle": self.config.shuffle,
            "selection": selection, "seq_len": self.config.seq_len, "windows": len(self.arrays["window_ids"]),
            "rows": self.n_rows, "top1_accuracy": self.top1_accuracy, "mean_loss": self.mean_loss,
            "best_model": best.name if best is not None else None,
            "p": point["p_power_floor"], "p_low": result.intervals["p_power_floor"][0],
            "p_high": result.intervals["p_power_floor"][1], "p_pure_power": point["p_power"],
            "floor_c": point["c_power_floor"], "xi": point["xi_exp_floor"],
            "rmse_gap": point["rmse_gap"], "rmse_gap_low": result.intervals["rmse_gap"][0],
            "rmse_gap_high": result.intervals["rmse_gap"][1], "power_wins": result.power_wins_fraction,
            "verdict": verdict(result), "key": self.key,
        }

    @property
    def top1_accuracy(self) -> float:
        """Share of rows where the argmax prediction was the observed next token."""
        return float(np.mean(self.arrays["pred_tokens"] == self.arrays["true_tokens"]))

    @property
    def mean_loss(self) -> float:
        """Mean next-token cross-entropy at the targets, in nats."""
        return float(-np.mean(self.arrays["true_log_probs"]))

    def __repr__(self) -> str:
        c = self.config
        return (f"ProfileRun({c.model} on {c.corpus}, L={c.seq_len}, {self.n_rows} rows, shuffle={c.shuffle}, "
                f"key={self.key})")


def runs_directory(data_dir: Path | None = None) -> Path:
    """Where runs are stored: ``<data>/runs``."""
    return (data_dir if data_dir is not None else default_data_dir()) / "runs"


def run_profile(
    config: RunConfig,
    *,
    data_dir: Path | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    recompute: bool = False,
    kernel_options: Mapping[str, Any] | None = None,
) -> ProfileRun:
    """Load a run from the store, or measure it (resuming a partial one) and store it.

    Args:
        config: what to measure.
        data_dir: the data directory (default :func:`default_data_dir`): corpora,
            converted models and ``runs/`` live there.
        device: where the model runs (not part of the cache key).
        progress: show a progress bar with rows per second and the time left.
        recompute: ignore a stored result and measure again.
        kernel_options: passed to the kernel (``method``, ``chunk_size``, ...);
            they change speed, not results, and are not part of the key.

    Returns:
        the :class:`ProfileRun`.

    Raises:
        green_profiles.models.ModelUnavailableError, green_profiles.corpora.CorpusUnavailableError:
            offline without the weights or text.
        ValueError: a bad configuration, a corpus with no document of ``L + 1``
            tokens, or a window longer than the model's context.
        green_profiles.jacobian.NonFiniteGradientError: the model produced inf/NaN gradients.
    """
    config = config.resolved()
    key = run_key(config, device)
    store = runs_directory(data_dir)
    final = store / key
    if final.exists() and not recompute:
        try:
            return load_run(final)
        except CorruptRunError as error:
            warnings.warn(f"{error}; measuring it again", stacklevel=2)
    partial = store / f"{key}.partial"
    if recompute:
        shutil.rmtree(partial, ignore_errors=True)
    return _measure(config, key, final, partial, data_dir, device, progress, dict(kernel_options or {}))


def load_run(path: Path) -> ProfileRun:
    """Read a stored run, checking that it is complete and its files match their checksums.

    Raises:
        CorruptRunError: missing files, unreadable metadata or a checksum mismatch.
    """
    import pandas as pd

    path = Path(path)
    try:
        metadata = json.loads((path / "metadata.json").read_text())
    except (OSError, ValueError) as error:
        raise CorruptRunError(f"run {path} has no readable metadata.json ({error})") from error
    for name in _DATA_FILES:
        file = path / name
        if not file.is_file() or file_sha256(file) != metadata.get("sha256", {}).get(name):
            raise CorruptRunError(f"run {path}: {name} is missing or does not match its checksum")
    with np.load(path / "profiles.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    table = pd.read_csv(path / "rows.csv", keep_default_na=False, na_values=[""])
    return ProfileRun(config=RunConfig.from_dict(metadata["config"]), key=metadata["key"], path=path,
                      arrays=arrays, table=table, metadata=metadata)


def list_runs(data_dir: Path | None = None) -> Any:
    """A table of the complete runs in the store: key, configuration, rows and when they ran."""
    import pandas as pd

    records = []
    for metadata_file in sorted(runs_directory(data_dir).glob("*/metadata.json")):
        metadata = json.loads(metadata_file.read_text())
        environment = metadata.get("environment", {})
        records.append({"key": metadata["key"], **metadata["config"], "dtype": metadata["dtype"], "rows": metadata["n_rows"],
                        "created": metadata["created"], "device": environment.get("device"),
                        "kernel_s": metadata["timings"].get("kernel_s"), "rows_per_s": metadata.get("rows_per_s"),
                        "git_commit": environment.get("git_commit"),
                        "torch": environment.get("versions", {}).get("torch"),
                        "transformers": environment.get("versions", {}).get("transformers")})
    return pd.DataFrame.from_records(records)


# ----------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------


def _measure(config: RunConfig, key: str, final: Path, partial: Path, data_dir: Path | None,
             device: str | torch.device, progress: bool, kernel_options: dict[str, Any]) -> ProfileRun:
    from tqdm import tqdm

    from green_profiles.corpora import load_corpus
    from green_profiles.jacobian import protocol_gradient_norms
    from green_profiles.models import load_model
    from green_profiles.windows import sample_windows, shuffle_windows, tokenize_documents

    timings: dict[str, float] = {}
    clock = time.perf_counter()
    target_device = resolve_device(device)
    model, tokenizer = load_model(config.model, dtype=config.dtype, device=target_device,
                                  revision=config.revision, seed=config.seed, data_dir=data_dir)
    timings["load_model_s"] = time.perf_counter() - clock
    context = getattr(model.config, "max_position_embeddings", None)
    if context is not None and config.seq_len > context:
        raise ValueError(f"seq_len = {config.seq_len} is longer than {config.model}'s context of {context} tokens")

    clock = time.perf_counter()
    documents = load_corpus(config.corpus, data_dir=data_dir, split=config.split)
    token_docs = tokenize_documents(documents, tokenizer)
    windows = sample_windows(token_docs, config.seq_len + 1, config.n_windows, config.seed)
    windows = shuffle_windows(windows, config.shuffle, config.seed, token_docs)
    timings["windows_s"] = time.perf_counter() - clock

    targets = config.targets
    distances = np.asarray(config.distances, dtype=np.int64)
    sources = torch.from_numpy(targets[:, None] - distances[None, :])  # [T, n_r] source index per grid point
    done = _read_partial(partial, windows.ids)
    pending = [i for i in range(len(windows)) if i not in done]
    fresh: dict[int, dict[str, np.ndarray]] = {}
    kernel_seconds, backward_rows = 0.0, 0
    last_flush = time.monotonic()
    # Inside a notebook (stderr not a terminal) redraw rarely: papermill --log-output relays each redraw.
    bar = tqdm(total=len(windows) * len(targets), initial=len(done) * len(targets), unit="row",
               desc=f"{config.model} {config.corpus} L={config.seq_len} shuffle={config.shuffle}",
               disable=not progress, smoothing=0.1, mininterval=0.5 if sys.stderr.isatty() else 20.0)
    try:
        for index in pending:
            clock = time.perf_counter()
            rows = protocol_gradient_norms(model, torch.from_numpy(windows.ids[index]), torch.from_numpy(targets),
                                           min_source=config.source_min_index, **kernel_options)
            kernel_seconds += time.perf_counter() - clock
            backward_rows += len(targets) + int((~rows.pred_correct).sum())
            at_grid = torch.arange(len(targets))[:, None]
            fresh[index] = {
                "true_raw": rows.true_norms[at_grid, sources].numpy(),
                "pred_raw": rows.pred_norms[at_grid, sources].numpy(),
                "true_tokens": rows.true_tokens.numpy(),
                "pred_tokens": rows.pred_tokens.numpy(),
                "true_log_probs": rows.true_log_probs.numpy(),
            }
            bar.update(len(targets))
            if kernel_seconds:
                bar.set_postfix_str(f"{backward_rows / kernel_seconds:.2f} backward/s", refresh=False)
            if time.monotonic() - last_flush > _FLUSH_SECONDS:
                _flush_partial(partial, config, key, windows.ids, fresh)
                done.update(fresh)
                fresh = {}
                last_flush = time.monotonic()
    finally:
        bar.close()
        # Windows finished before an interruption are kept for the next attempt.
        if fresh:
            _flush_partial(partial, config, key, windows.ids, fresh)
            done.update(fresh)

    per_window = [done[i] for i in range(len(windows))]
    arrays = {
        "distances": distances,
        "targets": targets,
        "window_ids": windows.ids,
        "document": windows.document,
        "start": windows.start,
        **{name: np.stack([w[name] for w in per_window]) for name in per_window[0]},
    }
    timings["kernel_s"] = kernel_seconds
    metadata = {
        "key": key,
        "format": RUN_FORMAT,
        "config": config.to_dict(),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "n_rows": int(len(windows) * len(targets)),
        "n_windows_resumed": len(windows) - len(pending),
        "backward_rows_this_session": backward_rows,
        "backward_rows_per_s": backward_rows / kernel_seconds if kernel_seconds else None,
        "rows_per_s": len(pending) * len(targets) / kernel_seconds if kernel_seconds else None,
        "top1_accuracy": float(np.mean(arrays["pred_tokens"] == arrays["true_tokens"])),
        "timings": timings,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": _environment(target_device),
        "corpus_documents": len(documents),
    }
    table = _row_table(arrays, documents, tokenizer)
    _write_run(final, arrays, table, metadata)
    shutil.rmtree(partial, ignore_errors=True)
    return load_run(final)


def _row_table(arrays: Mapping[str, np.ndarray], documents: Sequence[Any], tokenizer: Any) -> Any:
    import pandas as pd

    n_windows, n_targets = arrays["pred_tokens"].shape
    window = np.repeat(np.arange(n_windows), n_targets)
    document = arrays["document"][window]
    true_tokens = arrays["true_tokens"].reshape(-1)
    pred_tokens = arrays["pred_tokens"].reshape(-1)
    return pd.DataFrame({
        "window": window,
        "document": document,
        "title": [getattr(documents[d], "title", "") for d in document.tolist()],
        "start": arrays["start"][window],
        "target": np.tile(arrays["targets"], n_windows),
        "true_token": true_tokens,
        "pred_token": pred_tokens,
        "true_text": tokenizer.convert_ids_to_tokens(true_tokens.tolist()),
        "pred_text": tokenizer.convert_ids_to_tokens(pred_tokens.tolist()),
        "pred_correct": true_tokens == pred_tokens,
        "true_log_prob": arrays["true_log_probs"].reshape(-1),
    })


def _write_run(final: Path, arrays: Mapping[str, np.ndarray], table: Any, metadata: dict[str, Any]) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        np.savez_compressed(staging / "profiles.npz", **arrays)
        table.to_csv(staging / "rows.csv", index=False)
        metadata["sha256"] = {name: file_sha256(staging / name) for name in _DATA_FILES}
        (staging / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str) + "\n")
        if final.exists():  # a corrupt earlier attempt, or recompute=True
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _flush_partial(partial: Path, config: RunConfig, key: str, window_ids: np.ndarray,
                   fresh: Mapping[int, Mapping[str, np.ndarray]]) -> None:
    """Write finished windows as one part file, atomically (temporary name, then rename)."""
    partial.mkdir(parents=True, exist_ok=True)
    config_file = partial / "config.json"
    if not config_file.exists():
        config_file.write_text(json.dumps({"key": key, "config": config.to_dict()}, indent=2) + "\n")
    indices = np.array(sorted(fresh), dtype=np.int64)
    fields = {name: np.stack([fresh[i][name] for i in indices.tolist()]) for name in next(iter(fresh.values()))}
    handle, temporary = tempfile.mkstemp(prefix=".part-", suffix=".npz", dir=partial)
    os.close(handle)
    try:
        np.savez(temporary, indices=indices, window_ids=window_ids[indices], **fields)
        os.replace(temporary, partial / f"part-{indices[0]:06d}-{len(indices):06d}.npz")
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _read_partial(partial: Path, window_ids: np.ndarray) -> dict[int, dict[str, np.ndarray]]:
    """Windows already measured by an earlier, interrupted attempt; unreadable or foreign parts are skipped."""
    done: dict[int, dict[str, np.ndarray]] = {}
    for part in sorted(partial.glob("part-*.npz")):
        try:
            with np.load(part) as archive:
                indices = archive["indices"]
                if indices.max(initial=-1) >= len(window_ids) or not np.array_equal(
                        archive["window_ids"], window_ids[indices]):
                    raise ValueError("its windows are not this run's windows")
                fields = {name: archive[name] for name in archive.files if name not in ("indices", "window_ids")}
        except (OSError, ValueError, KeyError, EOFError) as error:
            warnings.warn(f"ignoring {part}: {error}", stacklevel=3)
            continue
        for position, index in enumerate(indices.tolist()):
            done[index] = {name: values[position] for name, values in fields.items()}
    return done


def _run_dtype(config: RunConfig, device: str | torch.device) -> torch.dtype:
    from green_profiles.models import NAMED_MODELS, RANDOM_SUFFIX

    spec = NAMED_MODELS.get(config.model.removesuffix(RANDOM_SUFFIX))
    return resolve_dtype(config.dtype, resolve_device(device), spec.checkpoint_dtype if spec else None)


def _check_selection(selection: str) -> None:
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")



def _environment(device: torch.device) -> dict[str, Any]:
    packages = ("green_profiles", "torch", "transformers", "numpy", "lmfit", "scipy", "pandas")
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "versions": versions,
        "git_commit": _git_commit(),
        "device": _device_name(device),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def _git_commit() -> str | None:
    """The checkout's commit (with ``-dirty`` when it has uncommitted changes), or None outside git."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"cpu: {platform.processor() or 'unknown'} ({os.cpu_count()} cores)"
