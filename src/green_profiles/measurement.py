"""Measuring a run: from a model and a corpus to stored raw gradient norms at the grid distances.

:func:`run_profile` samples the windows, runs the kernel for both token selections
of the protocol (``"pred"``: the model's argmax prediction, the paper's main
figures; ``"true"``: the observed next token) and keeps, for every (window,
target) row, the raw norms ``G(j, r)`` at the grid distances, and records how
many of them came out exactly zero or not finite (``norm_counts`` in its
metadata; a warning above :data:`ZERO_NORM_WARNING_FRACTION` zeros). A run that is
already stored under the same key (settings and provenance, see
:mod:`green_profiles.provenance`) is loaded instead; an interrupted one resumes
from its flushed windows.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from green_profiles.configuration import SELECTIONS, RunConfig
from green_profiles.precision import device_description, resolve_device
from green_profiles.profiles import ProfileRun, load_run
from green_profiles.provenance import Provenance, run_key, run_provenance, settings_key
from green_profiles.store import (
    CorruptRunError,
    earlier_versions,
    flush_partial,
    key_lock,
    partial_directory,
    read_partial,
    runs_directory,
    stored_metadata,
    write_run,
)
from green_profiles.values import count_norms

FLUSH_SECONDS = 60.0
# A run warns when more than this share of its norms at the grid points is exactly zero: values the
# profiles and fits leave out without a trace (underflow, e.g. in a half-precision backward pass).
ZERO_NORM_WARNING_FRACTION = 1e-3


def run_profile(
    config: RunConfig,
    *,
    data_dir: Path | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    recompute: bool = False,
    kernel_options: Mapping[str, Any] | None = None,
    flush_seconds: float = FLUSH_SECONDS,
) -> ProfileRun:
    """Load a run from the store, or measure it (resuming a partial one) and store it.

    Args:
        config: what to measure.
        data_dir: the data directory (default :func:`~green_profiles.locations.default_data_dir`):
            corpora, converted models and ``runs/`` live there.
        device: where the model runs (not part of the cache key).
        progress: show a progress bar with rows per second and the time left.
        recompute: ignore a stored result and measure again.
        kernel_options: passed to the kernel (``method``, ``chunk_size``, ...);
            they change speed, not results, and are not part of the key.
        flush_seconds: finished windows are written to the partial directory at
            least this often (and on Ctrl-C), so a killed run loses at most that much work.

    Returns:
        the :class:`~green_profiles.profiles.ProfileRun`.

    Raises:
        green_profiles.models.ModelUnavailableError, green_profiles.corpora.CorpusUnavailableError:
            offline without the weights or text, and no run of the same settings stored
            (:func:`stored_without_inputs`).
        ValueError: a bad configuration, a corpus with no document of ``L + 1``
            tokens, or a window longer than the model's context.
        green_profiles.jacobian.NonFiniteGradientError: the model produced inf/NaN gradients.
    """
    from green_profiles.corpora import load_corpus

    from green_profiles.corpora import CorpusUnavailableError
    from green_profiles.models import ModelUnavailableError

    config = config.resolved()
    target_device = resolve_device(device)
    store = runs_directory(data_dir)
    try:
        documents = load_corpus(config.corpus, data_dir=data_dir, split=config.split)
        provenance = run_provenance(config, documents, data_dir)
    except (CorpusUnavailableError, ModelUnavailableError) as error:
        stored = None if recompute else stored_without_inputs(store, settings_key(config, target_device), error)
        if stored is None:
            raise
        return stored
    key = run_key(config, provenance, target_device)
    with key_lock(store, key, announce=progress):
        if (store / key).exists() and not recompute:
            try:
                return load_run(store / key)
            except CorruptRunError as error:
                warnings.warn(f"{error}; measuring it again", stacklevel=2)
        partial = partial_directory(store, key)
        if recompute:
            shutil.rmtree(partial, ignore_errors=True)
        _say_why_anew(store, settings_key(config, target_device), key, provenance)
        return _measure(config, key, provenance, documents, store, data_dir, target_device, progress,
                        dict(kernel_options or {}), flush_seconds)


def stored_without_inputs(store: Path, settings: str, error: Exception) -> ProfileRun | None:
    """The newest stored run of these settings, for when its text or weights cannot be had here.

    Runs measured elsewhere (a GPU machine with the hub) and imported into the store
    are read back this way on a machine without the hub: their key cannot be
    recomputed here, so they are matched on settings alone, and a warning says so.
    ``None`` when no run of these settings is stored.
    """
    candidates = [metadata for _, metadata in stored_metadata(store)
                  if isinstance(metadata, dict) and metadata.get("settings_key") == settings]
    if not candidates:
        return None
    newest = max(candidates, key=lambda metadata: str(metadata.get("created", "")))
    reason = str(error).split(". ")[0]
    warnings.warn(f"{reason}; using stored run {newest['key']} of the same settings (measured "
                  f"{newest.get('created', '?')}), whose text and weights cannot be checked here", stacklevel=3)
    return load_run(store / newest["key"])


def _say_why_anew(store: Path, settings: str, key: str, provenance: Provenance) -> None:
    """One line on stderr when the same settings were measured before with other inputs or code."""
    for metadata in earlier_versions(store, settings, key):
        changes = provenance.differences(metadata.get("provenance", {}))
        if changes:
            print(f"green-profiles: measuring anew: since run {metadata['key']}, {'; '.join(changes)}",
                  file=sys.stderr)


def _measure(config: RunConfig, key: str, provenance: Provenance, documents: Sequence[Any], store: Path,
             data_dir: Path | None, device: torch.device, progress: bool, kernel_options: dict[str, Any],
             flush_seconds: float) -> ProfileRun:
    from tqdm import tqdm

    from green_profiles import jacobian
    from green_profiles.costs import kernel_flops
    from green_profiles.models import load_model
    from green_profiles.windows import sample_windows, sample_windows_as_authors, shuffle_windows, tokenize_documents

    timings: dict[str, float] = {}
    clock = time.perf_counter()
    model, tokenizer = load_model(config.model, dtype=config.dtype, device=device,
                                  revision=config.revision, seed=config.seed, data_dir=data_dir)
    timings["load_model_s"] = time.perf_counter() - clock
    context = getattr(model.config, "max_position_embeddings", None)
    if context is not None and config.seq_len > context:
        raise ValueError(f"seq_len = {config.seq_len} is longer than {config.model}'s context of {context} tokens")

    clock = time.perf_counter()
    # The authors' rule tokenizes only the documents it needs (a few of 1,500 books); a corpus-wide
    # shuffle needs them all.
    token_docs = (tokenize_documents(documents, tokenizer)
                  if config.sampler == "uniform" or config.shuffle == "corpus" else None)
    if config.sampler == "authors":
        windows = sample_windows_as_authors([doc.text for doc in documents], tokenizer, config.seq_len + 1,
                                            config.n_windows, config.seed)
    else:
        windows = sample_windows(token_docs, config.seq_len + 1, config.n_windows, config.seed)
    windows = shuffle_windows(windows, config.shuffle, config.seed, token_docs)
    timings["windows_s"] = time.perf_counter() - clock
    n_embeddings = model.get_input_embeddings().num_embeddings
    if windows.ids.max(initial=0) >= n_embeddings:
        raise ValueError(f"the tokenizer of {config.model} produced token id {int(windows.ids.max())}, but the "
                         f"model has only {n_embeddings} embeddings: the tokenizer does not belong to these weights")

    targets = config.targets
    distances = np.asarray(config.distances, dtype=np.int64)
    sources = torch.from_numpy(targets[:, None] - distances[None, :])  # [T, n_r] source index per grid point
    partial = partial_directory(store, key)
    done = read_partial(partial, windows.ids)
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
            rows = jacobian.protocol_gradient_norms(model, torch.from_numpy(windows.ids[index]),
                                                    torch.from_numpy(targets), min_source=config.source_min_index,
                                                    **kernel_options)
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
            if time.monotonic() - last_flush >= flush_seconds:
                flush_partial(partial, key, windows.ids, fresh)
                done.update(fresh)
                fresh = {}
                last_flush = time.monotonic()
    finally:
        bar.close()
        # Windows finished before an interruption are kept for the next attempt.
        flush_partial(partial, key, windows.ids, fresh)
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
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    # Every grid point is a source at or left of its target and right of the buffer, so each of these
    # norms is positive in exact arithmetic: a zero is underflow, and a NaN a failed gradient.
    norm_counts = {selection: count_norms(arrays[f"{selection}_raw"]).summed() for selection in SELECTIONS}
    metadata = {
        "key": key,
        "settings_key": settings_key(config, device),
        "config": config.to_dict(),
        "provenance": provenance.to_dict(),
        "dtype": dtype,
        "norm_counts": norm_counts,
        "n_rows": int(len(windows) * len(targets)),
        "n_windows_resumed": len(windows) - len(pending),
        "backward_rows_this_session": backward_rows,
        "backward_rows_per_s": backward_rows / kernel_seconds if kernel_seconds else None,
        "rows_per_s": len(pending) * len(targets) / kernel_seconds if kernel_seconds else None,
        # The work of this session's windows, so that plans can turn FLOPs into time on this device.
        "kernel_flops": kernel_flops(model, len(pending), targets, config.source_min_index,
                                     backward_rows=backward_rows) if pending else None,
        "top1_accuracy": float(np.mean(arrays["pred_tokens"] == arrays["true_tokens"])),
        "timings": timings,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": _environment(device),
        "corpus_documents": len(documents),
    }
    table = _row_table(arrays, documents, tokenizer)
    final = write_run(store, key, arrays, table, metadata)
    shutil.rmtree(partial, ignore_errors=True)
    warn_on_lost_norms(f"run {key} ({config.model}, {config.corpus}, L={config.seq_len}, {dtype})", norm_counts)
    return load_run(final)


def warn_on_lost_norms(run: str, norm_counts: Mapping[str, Mapping[str, int]],
                       threshold: float = ZERO_NORM_WARNING_FRACTION) -> None:
    """One warning line when a run lost more than ``threshold`` of its norms to zeros, or any to NaN/inf.

    Args:
        run: how the warning names the run.
        norm_counts: per selection, ``{"zero": ..., "non_finite": ..., "total": ...}`` over the grid points.
        threshold: the largest share of zero norms that passes silently.
    """
    lost = []
    for selection, counts in norm_counts.items():
        total = counts["total"] or 1
        if counts["zero"] / total > threshold:
            lost.append(f"{counts['zero'] / total:.2%} of the {selection} norms are exactly zero")
        if counts["non_finite"]:
            lost.append(f"{counts['non_finite'] / total:.2%} of the {selection} norms are not finite")
    if lost:
        warnings.warn(f"{run}: {'; '.join(lost)} (of those at the grid points); profiles and fits leave "
                      "them out", RuntimeWarning, stacklevel=3)


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
        "device": device_description(device),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
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
