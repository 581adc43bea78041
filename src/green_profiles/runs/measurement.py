"""Measuring a run: from a model and a corpus to stored raw gradient norms at the grid distances.

:func:`measure_run` samples the windows, runs the kernel for both token selections
of the protocol (``"pred"``: the model's argmax prediction, the paper's main
figures; ``"true"``: the observed next token) and keeps, for every (window,
target) row, the raw norms ``G(j, r)`` at the grid distances (with ``per_layer``, also
those with respect to every decoder block's input, from the same backward pass), and records how
many of them came out exactly zero or not finite (``norm_counts`` in its
metadata; a warning above :data:`ZERO_NORM_WARNING_FRACTION` zeros). A run that is
already stored under the same key (settings and provenance, see
:mod:`green_profiles.runs.provenance`) is loaded instead; an interrupted one resumes
from its flushed windows.

Under ``torchrun`` the processes of the job share one run's windows
(:mod:`green_profiles.runs.distributed`) and store the run a single process would;
``measure_run(..., processes=N)`` starts such a job itself.

Measuring is a short pipeline of steps, each usable on its own (:func:`_measure` runs them):
:func:`stored_or_none` (the stored run, unless missing, recomputed or damaged),
:func:`start_anew`, :func:`prepare_inputs` (model, windows and their checks),
:func:`resume` (the windows left over from flushed parts, and this process' share),
:func:`measure_windows` (the kernel, with progress and periodic flushes) and
:func:`gather_and_store`.
"""

from __future__ import annotations

import contextlib
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from green_profiles.runs import distributed
from green_profiles.runs.configuration import SELECTIONS, RunConfig, config_arguments
from green_profiles.runs.distributed import Group, World
from green_profiles.kernel.precision import device_description, resolve_device
from green_profiles.runs.provenance import Provenance, run_key, run_provenance, settings_key
from green_profiles.runs.signals import stop_signals_as_interrupt, stop_signals_held
from green_profiles.runs.store import (
    CorruptRunError,
    StoredRun,
    earlier_versions,
    flush_partial,
    key_lock,
    partial_directory,
    read_lock,
    read_partial,
    read_run,
    runs_directory,
    runs_with_settings,
    waiting_message,
    write_run,
)
from green_profiles.kernel.counts import count_norms
from green_profiles.kernel import jacobian
from green_profiles.models.loading import ModelUnavailableError, load_model
from green_profiles.runs.costs import kernel_flops
from green_profiles.text import CorpusUnavailableError, load_corpus
from green_profiles.text.token_cache import TokenCache, token_cache
from green_profiles.text.windows import (
    Windows,
    sample_windows,
    sample_windows_as_authors,
    shuffle_windows,
    tokenize_documents,
)

FLUSH_SECONDS = 60.0
# A run warns when more than this share of its norms at the grid points is exactly zero: values the
# profiles and fits leave out without a trace (underflow, e.g. in a half-precision backward pass).
ZERO_NORM_WARNING_FRACTION = 1e-3
# How often the first rank of a sharded run tries again for a key's lock held by another process (seconds).
LOCK_POLL_SECONDS = 2.0


def measure_run(
    config: RunConfig,
    *,
    data_dir: Path | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    recompute: bool = False,
    kernel_options: Mapping[str, Any] | None = None,
    flush_seconds: float = FLUSH_SECONDS,
    processes: int = 1,
) -> StoredRun:
    """Load a run from the store, or measure it (resuming a partial one) and store it.

    Under ``torchrun`` (``RANK``/``WORLD_SIZE`` set, more than one process) every
    process calls this with the same arguments; they split the windows, the first rank
    stores the run, and all return it (:mod:`green_profiles.runs.distributed`).

    Args:
        config: what to measure.
        data_dir: the data directory (default :func:`~green_profiles.files.locations.default_data_dir`):
            corpora, converted models and ``runs/`` live there.
        device: where the model runs (not part of the cache key). Under torchrun,
            ``"auto"`` and ``"cuda"`` mean each rank's own GPU, ``cuda:LOCAL_RANK``.
        progress: show a progress bar with rows per second and the time left (under
            torchrun: the first rank's, over its share of the windows).
        recompute: ignore a stored result and measure again.
        kernel_options: passed to the kernel (``method``, ``chunk_size``, ...);
            they change speed, not results, and are not part of the key.
        flush_seconds: finished windows are written to the partial directory at
            least this often (and on Ctrl-C), so a killed run loses at most that much work.
        processes: when the run is not stored, measure it with this many processes on
            this machine: a torchrun job (``green-profiles run`` under
            ``python -m torch.distributed.run --nproc-per-node N``), one process per GPU
            where there are GPUs. 1 (the default) measures here; ignored inside a torchrun job.

    Returns:
        the stored run, read back and checked (:class:`~green_profiles.runs.store.StoredRun`).

    Raises:
        green_profiles.models.loading.ModelUnavailableError, green_profiles.text.CorpusUnavailableError:
            offline without the weights or text, and no run of the same settings stored
            (:func:`stored_without_inputs`).
        ValueError: a bad configuration, a corpus with no document of ``L + 1``
            tokens, a window longer than the model's context, ranks of a torchrun job
            that disagree on the key or the windows, or ``kernel_options`` with ``processes > 1``.
        green_profiles.kernel.jacobian.NonFiniteGradientError: the model produced inf/NaN gradients.
        green_profiles.runs.distributed.ShardedRunError: the job started for ``processes > 1`` failed.
    """
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    config = config.resolved()
    world = distributed.world_from_environment()
    target_device = distributed.rank_device(device, world) if world.sharded else resolve_device(device)
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
    options = dict(kernel_options or {})
    if world.sharded:
        return _run_sharded(world, config, key, provenance, documents, store, data_dir, target_device,
                            progress, recompute, options, flush_seconds)
    if processes > 1:
        return _launch_sharded(processes, config, key, store, device, progress, recompute, options, flush_seconds)
    if not recompute and (store / key).is_dir():  # served under a shared lock, which a read-only store allows too
        with read_lock(store, key, announce=progress):
            stored = stored_or_none(store, key, recompute, warn=False)
        if stored is not None:
            return stored
    with key_lock(store, key, announce=progress):
        stored = stored_or_none(store, key, recompute, stacklevel=2)
        if stored is not None:
            return stored
        start_anew(store, key, settings_key(config, target_device), provenance, recompute=recompute)
        return _measure(config, key, provenance, documents, store, data_dir, target_device, progress,
                        options, flush_seconds)


def stored_or_none(store: Path, key: str, recompute: bool, *, warn: bool = True,
                   stacklevel: int = 1) -> StoredRun | None:
    """The stored run ``key``, or ``None`` when it is to be measured: not stored, ``recompute``, or damaged.

    A damaged run (:class:`~green_profiles.runs.store.CorruptRunError`) is measured
    again, and a warning says so ("...; measuring it again").

    Args:
        store: the runs directory.
        key: the run's key.
        recompute: ignore a stored run (it is not even read).
        warn: warn about a damaged run; ``False`` where the processes that measure it say so themselves.
        stacklevel: the line the warning names, counted from the caller as for :func:`warnings.warn`
            (1: the caller's own line, 2: its caller's, ...).
    """
    if recompute or not (store / key).exists():
        return None
    try:
        return read_run(store / key)
    except CorruptRunError as error:
        if warn:
            warnings.warn(f"{error}; measuring it again", stacklevel=stacklevel + 1)
        return None


def start_anew(store: Path, key: str, settings: str, provenance: Provenance, *, recompute: bool) -> None:
    """Before measuring run ``key``: drop its flushed windows when ``recompute``, and say on stderr what
    changed since runs of the same ``settings`` were measured (:func:`_say_why_anew`)."""
    if recompute:
        shutil.rmtree(partial_directory(store, key), ignore_errors=True)
    _say_why_anew(store, settings, key, provenance)


def stored_without_inputs(store: Path, settings: str, error: Exception) -> StoredRun | None:
    """The newest stored run of these settings, for when its text or weights cannot be had here.

    Runs measured elsewhere (a GPU machine with the hub) and imported into the store
    are read back this way on a machine without the hub: their key cannot be
    recomputed here, so they are matched on settings alone, and a warning says so.
    ``None`` when no run of these settings is stored.
    """
    candidates = runs_with_settings(store, settings)
    if not candidates:
        return None
    newest = max(candidates, key=lambda metadata: str(metadata.get("created", "")))
    reason = str(error).split(". ")[0]
    warnings.warn(f"{reason}; using stored run {newest['key']} of the same settings (measured "
                  f"{newest.get('created', '?')}), whose text and weights cannot be checked here", stacklevel=3)
    return read_run(store / newest["key"])


def _say_why_anew(store: Path, settings: str, key: str, provenance: Provenance) -> None:
    """One line on stderr when the same settings were measured before with other inputs or code."""
    for metadata in earlier_versions(store, settings, key):
        changes = provenance.differences(metadata.get("provenance", {}))
        if changes:
            print(f"green-profiles: measuring anew: since run {metadata['key']}, {'; '.join(changes)}",
                  file=sys.stderr)


def _run_sharded(world: World, config: RunConfig, key: str, provenance: Provenance, documents: Sequence[Any],
                 store: Path, data_dir: Path | None, device: torch.device, progress: bool, recompute: bool,
                 kernel_options: dict[str, Any], flush_seconds: float) -> StoredRun:
    """This rank's part of a run shared by a torchrun job: every rank returns the stored run."""
    first = world.rank == 0
    with stop_signals_as_interrupt(), distributed.process_group(world) as group:
        group.agree("the run key", key)
        with contextlib.ExitStack() as lock:
            _lock_for_group(group, store, key, lock, announce=progress)
            stored = stored_or_none(store, key, recompute, stacklevel=3) if first else None
            if first and stored is None:
                start_anew(store, key, settings_key(config, device), provenance, recompute=recompute)
            if group.broadcast(stored is not None):
                return stored if stored is not None else read_run(store / key)
            return _measure(config, key, provenance, documents, store, data_dir, device, progress and first,
                            kernel_options, flush_seconds, group=group)


def _lock_for_group(group: Group, store: Path, key: str, stack: contextlib.ExitStack, *, announce: bool) -> None:
    """Rank 0 takes the key's lock into ``stack`` on behalf of all ranks; returns once it holds it.

    It tries without blocking, in rounds that every rank joins: waiting for another
    process to finish the key (hours, possibly) then never runs into the group's timeout.
    """
    said = False
    while True:
        held = False
        if group.rank == 0:
            try:
                stack.enter_context(key_lock(store, key, announce=False, wait=False))
                held = True
            except BlockingIOError:
                if announce and not said:
                    print(waiting_message(key), file=sys.stderr)
                    said = True
        if group.broadcast(held):
            return
        time.sleep(LOCK_POLL_SECONDS)


def _launch_sharded(processes: int, config: RunConfig, key: str, store: Path, device: str | torch.device,
                    progress: bool, recompute: bool, kernel_options: dict[str, Any],
                    flush_seconds: float) -> StoredRun:
    """The stored run, or a torchrun job of ``processes`` processes measures it first."""
    stored = stored_or_none(store, key, recompute, warn=False)  # a damaged run: the job measures it again, and says why
    if stored is not None:
        return stored
    if kernel_options:
        raise ValueError("kernel_options reach only a run measured in this process; "
                         f"measure with processes=1 to use {', '.join(kernel_options)}")
    arguments = [f"--data-dir={store.parent}", "run", *config_arguments(config), f"--device={device}",
                 f"--flush-seconds={float(flush_seconds)!r}", "--bootstrap=0"]
    arguments += ([] if progress else ["--no-progress"]) + (["--recompute"] if recompute else [])
    distributed.launch(processes, arguments)
    if not (store / key).is_dir():  # e.g. the job's processes computed another key (other code or inputs)
        raise distributed.ShardedRunError(f"the sharded run finished without storing run {key} in {store}")
    return read_run(store / key)


# --- measuring: the steps of _measure ------------------------------------------------------------


def _measure(config: RunConfig, key: str, provenance: Provenance, documents: Sequence[Any], store: Path,
             data_dir: Path | None, device: torch.device, progress: bool, kernel_options: dict[str, Any],
             flush_seconds: float, group: Group | None = None) -> StoredRun:
    """Measure the pending windows and store the run; with a ``group`` (sharded), this rank's share of them."""
    inputs = prepare_inputs(config, documents, data_dir=data_dir, device=device)
    if group is not None:
        # A rank that sampled other windows would store its rows under the wrong window indices.
        group.agree("the sampled windows (SHA-256 of their token ids)", distributed.windows_digest(inputs.windows.ids))
    partial = partial_directory(store, key)
    work = resume(partial, inputs.windows.ids, group, key=key, distances=inputs.distances,
                  n_targets=len(inputs.targets))
    bar = progress_bar(config, work, len(inputs.windows), group, enabled=progress)
    measured = measure_windows(inputs, config, work, partial=partial, key=key, bar=bar,
                               kernel_options=kernel_options, flush_seconds=flush_seconds,
                               writer=None if group is None else f"rank{group.rank}")
    return gather_and_store(config, key, provenance, documents, store, device, inputs, work, measured, group)


@dataclass(frozen=True, eq=False)  # arrays: no element-wise __eq__
class Inputs:
    """What a run is measured from, checked and ready for the kernel (:func:`prepare_inputs`).

    Attributes:
        model, tokenizer: as loaded by :func:`~green_profiles.models.loading.load_model`.
        windows: the run's sampled (and shuffled) windows of ``L + 1`` tokens.
        targets: ``[T]`` target positions; distances: ``[n_r]`` int64 grid distances.
        sources: ``[T, n_r]`` source position of each target's grid distances.
        timings: seconds spent loading the model (``load_model_s``) and sampling (``windows_s``).
    """

    model: Any
    tokenizer: Any
    windows: Windows
    targets: np.ndarray
    distances: np.ndarray
    sources: torch.Tensor
    timings: dict[str, float]


def prepare_inputs(config: RunConfig, documents: Sequence[Any], *, data_dir: Path | None,
                   device: torch.device) -> Inputs:
    """Load the model, sample the run's windows and check that they fit the model.

    Raises:
        ValueError: a window longer than the model's context (checked before sampling), a corpus
            with no document of ``L + 1`` tokens, or token ids beyond the model's embeddings.
    """
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    model, tokenizer = load_model(config.model, dtype=config.dtype, device=device,
                                  revision=config.revision, seed=config.seed, data_dir=data_dir)
    timings["load_model_s"] = time.perf_counter() - clock
    check_context(model, config)
    clock = time.perf_counter()
    windows = sample_run_windows(config, documents, tokenizer, cache=token_cache(data_dir))
    timings["windows_s"] = time.perf_counter() - clock
    check_token_ids(model, windows, config.model)
    targets = config.targets
    distances = np.asarray(config.distances, dtype=np.int64)
    sources = torch.from_numpy(targets[:, None] - distances[None, :])  # [T, n_r] source index per grid point
    return Inputs(model=model, tokenizer=tokenizer, windows=windows, targets=targets, distances=distances,
                  sources=sources, timings=timings)


def check_context(model: Any, config: RunConfig) -> None:
    """Raise ``ValueError`` when the run's windows (``seq_len`` tokens) exceed the model's context.

    A model whose configuration names no context (``max_position_embeddings``) passes.
    """
    context = getattr(model.config, "max_position_embeddings", None)
    if context is not None and config.seq_len > context:
        raise ValueError(f"seq_len = {config.seq_len} is longer than {config.model}'s context of {context} tokens")


def sample_run_windows(config: RunConfig, documents: Sequence[Any], tokenizer: Any, *,
                       cache: TokenCache | None = None) -> Windows:
    """The run's windows of ``seq_len + 1`` tokens, sampled by ``config.sampler`` and shuffled by ``config.shuffle``.

    ``cache`` keeps the documents' token ids between runs that share a tokenizer and a corpus.
    """
    # The authors' rule tokenizes only the documents it needs (a few of 1,500 books); a corpus-wide
    # shuffle needs them all.
    token_docs = (tokenize_documents(documents, tokenizer, cache=cache)
                  if config.sampler == "uniform" or config.shuffle == "corpus" else None)
    if config.sampler == "authors":
        windows = sample_windows_as_authors([doc.text for doc in documents], tokenizer, config.seq_len + 1,
                                            config.n_windows, config.seed, cache=cache)
    else:
        windows = sample_windows(token_docs, config.seq_len + 1, config.n_windows, config.seed)
    return shuffle_windows(windows, config.shuffle, config.seed, token_docs)


def check_token_ids(model: Any, windows: Windows, model_name: str) -> None:
    """Raise ``ValueError`` when a window holds a token id the model has no embedding for."""
    n_embeddings = model.get_input_embeddings().num_embeddings
    if windows.ids.max(initial=0) >= n_embeddings:
        raise ValueError(f"the tokenizer of {model_name} produced token id {int(windows.ids.max())}, but the "
                         f"model has only {n_embeddings} embeddings: the tokenizer does not belong to these weights")


@dataclass(frozen=True, eq=False)
class Work:
    """Which windows of a run are done, which are pending, and this process' share of the pending ones.

    Attributes:
        done: window index -> its arrays: those read from the partial parts (by the first
            process only), and the windows of this session once they are flushed.
        pending: the windows in no part, in order; the same list on every rank.
        mine: the pending windows this process measures (all of them without a group).
    """

    done: dict[int, dict[str, np.ndarray]]
    pending: list[int]
    mine: list[int]


def resume(partial: Path, window_ids: np.ndarray, group: Group | None = None, *, key: str,
           distances: np.ndarray, n_targets: int) -> Work:
    """What is left to measure of a run whose earlier attempts flushed windows to ``partial``.

    Rank 0 alone reads the parts (unusable ones are skipped with a warning,
    :func:`~green_profiles.runs.store.read_partial`) and tells the others, so that all
    split one list (:func:`~green_profiles.runs.distributed.shard`).
    """
    rank, world_size = (0, 1) if group is None else (group.rank, group.world_size)
    done = read_partial(partial, window_ids, key=key, distances=distances, n_targets=n_targets) if rank == 0 else {}
    pending = [i for i in range(len(window_ids)) if i not in done]
    if group is not None:
        pending = group.broadcast(pending)
    return Work(done=done, pending=pending, mine=distributed.shard(pending, rank, world_size))


def progress_bar(config: RunConfig, work: Work, n_windows: int, group: Group | None, *, enabled: bool) -> Any:
    """The progress bar over the run's rows (a ``tqdm``); under a group, over this rank's share of the windows."""
    from tqdm import tqdm

    n_targets = len(config.targets)
    description = f"{config.model} {config.corpus} L={config.seq_len} shuffle={config.shuffle}"
    if group is None:
        total, initial = n_windows, len(work.done)
    else:  # the first rank's own share; the others advance alike
        total, initial = len(work.mine), 0
        description += f" [rank 0 of {group.world_size}: {len(work.mine)} of {len(work.pending)} windows]"
    # Inside a notebook (stderr not a terminal) redraw rarely: papermill --log-output relays each redraw.
    return tqdm(total=total * n_targets, initial=initial * n_targets, unit="row", desc=description,
                disable=not enabled, smoothing=0.1, mininterval=0.5 if sys.stderr.isatty() else 20.0)


def measure_windows(inputs: Inputs, config: RunConfig, work: Work, *, partial: Path, key: str, bar: Any,
                    kernel_options: Mapping[str, Any], flush_seconds: float,
                    writer: str | None = None) -> tuple[float, int]:
    """Run the kernel on this process' windows (``work.mine``), flushing finished ones to ``partial``.

    Finished windows are written as a part at least every ``flush_seconds`` and once more at
    the end, also when interrupted (Ctrl-C, an error), and added to ``work.done`` as they
    are. ``bar`` advances by each window's rows and is closed at the end.

    Returns:
        ``(kernel seconds, backward rows)`` of this session: the kernel's time, and the
        backward passes it ran (one per row, and another where the prediction is wrong).
    """
    fresh: dict[int, dict[str, np.ndarray]] = {}
    kernel_seconds, backward_rows = 0.0, 0
    last_flush = time.monotonic()
    finished = False
    try:
        for index in work.mine:
            clock = time.perf_counter()
            rows = jacobian.protocol_gradient_norms(inputs.model, torch.from_numpy(inputs.windows.ids[index]),
                                                    torch.from_numpy(inputs.targets),
                                                    min_source=config.source_min_index,
                                                    per_layer=config.per_layer, **kernel_options)
            kernel_seconds += time.perf_counter() - clock
            backward_rows += len(inputs.targets) + int((~rows.pred_correct).sum())
            fresh[index] = window_arrays(rows, inputs.sources, config)
            bar.update(len(inputs.targets))
            if kernel_seconds:
                bar.set_postfix_str(f"{backward_rows / kernel_seconds:.2f} backward/s", refresh=False)
            if time.monotonic() - last_flush >= flush_seconds:
                with stop_signals_held():  # a stop waits for the part to be whole, then stops the loop here
                    flush_partial(partial, key, inputs.windows.ids, fresh, distances=inputs.distances, writer=writer)
                    work.done.update(fresh)
                    fresh = {}
                last_flush = time.monotonic()
        finished = True
    finally:
        bar.close()
        # Windows finished before an interruption are kept for the next attempt; a further stop signal during
        # this write is dropped when already stopping, else delivered after it.
        with stop_signals_held(deliver=finished):
            flush_partial(partial, key, inputs.windows.ids, fresh, distances=inputs.distances, writer=writer)
            work.done.update(fresh)
    return kernel_seconds, backward_rows


def window_arrays(rows: Any, sources: torch.Tensor, config: RunConfig) -> dict[str, np.ndarray]:
    """One window's arrays as flushed and stored, from the kernel's rows
    (:func:`~green_profiles.kernel.jacobian.protocol_gradient_norms`): both selections' norms at the
    grid points (:func:`at_grid_points`), the tokens, the log-probabilities and, with ``full_rows``, whole rows."""
    return {
        **{f"{selection}_{name}": values
           for selection, norms in (("true", rows.true_norms), ("pred", rows.pred_norms))
           for name, values in at_grid_points(norms, sources, config.per_layer).items()},
        "true_tokens": rows.true_tokens.numpy(),
        "pred_tokens": rows.pred_tokens.numpy(),
        "true_log_probs": rows.true_log_probs.numpy(),
        **({f"{selection}_full": full_rows(norms, config.per_layer)
            for selection, norms in (("true", rows.true_norms), ("pred", rows.pred_norms))}
           if config.full_rows else {}),
    }


def gather_and_store(config: RunConfig, key: str, provenance: Provenance, documents: Sequence[Any], store: Path,
                     device: torch.device, inputs: Inputs, work: Work, measured: tuple[float, int],
                     group: Group | None = None) -> StoredRun:
    """Store the measured run and return it read back; under a group, every rank returns it.

    Each process' session (its windows, kernel time and backward rows, ``measured``) goes to
    the first rank, which assembles all windows (under a group, from the parts every rank
    flushed) and writes the run; the others wait for it and read it, or raise its error.
    """
    rank = 0 if group is None else group.rank
    kernel_seconds, backward_rows = measured
    session = {"rank": rank, "windows": work.mine, "kernel_s": kernel_seconds, "backward_rows": backward_rows,
               "host": socket.gethostname(), "pid": os.getpid(), "device": str(device)}
    sessions = [session] if group is None else group.all_gather(session)
    if rank != 0:
        failure = group.broadcast(None)
        if failure is not None:
            raise RuntimeError(failure)
        return read_run(store / key)
    try:
        if group is None:
            done = work.done
        else:  # every rank's parts
            done = read_partial(partial_directory(store, key), inputs.windows.ids, key=key,
                                distances=inputs.distances, n_targets=len(inputs.targets))
        final = _store_measured(config, key, provenance, documents, store, device, inputs, done, work.pending,
                                sessions)
    except Exception as error:
        if group is not None:  # the other ranks wait for the outcome; tell them instead of leaving them to time out
            group.broadcast(f"rank 0 could not store run {key}: {error}")
        raise
    if group is not None:
        group.broadcast(None)
    return read_run(final)


def _store_measured(config: RunConfig, key: str, provenance: Provenance, documents: Sequence[Any], store: Path,
                    device: torch.device, inputs: Inputs, done: Mapping[int, Mapping[str, np.ndarray]],
                    pending: Sequence[int], sessions: Sequence[Mapping[str, Any]]) -> Path:
    """Assemble every window's arrays into the run, write it and remove its partial directory."""
    arrays = assemble_arrays(inputs, done, key=key, partial=partial_directory(store, key))
    metadata = _run_metadata(config, key, provenance, documents, device, inputs, arrays, pending, sessions)
    table = _row_table(arrays, documents, inputs.tokenizer)
    final = write_run(store, key, arrays, table, metadata)
    shutil.rmtree(partial_directory(store, key), ignore_errors=True)
    warn_on_lost_norms(f"run {key} ({config.model}, {config.corpus}, L={config.seq_len}, {metadata['dtype']})",
                       metadata["norm_counts"])
    return final


def assemble_arrays(inputs: Inputs, done: Mapping[int, Mapping[str, np.ndarray]], *, key: str,
                    partial: Path) -> dict[str, np.ndarray]:
    """The run's arrays (``profiles.npz``): the grid, the windows, and every window's arrays stacked in order.

    Raises:
        RuntimeError: windows missing from ``done`` (e.g. ranks of a sharded run that wrote
            their parts to different data directories).
    """
    windows = inputs.windows
    missing = [i for i in range(len(windows)) if i not in done]
    if missing:
        raise RuntimeError(f"windows {missing[:10]}{' ...' if len(missing) > 10 else ''} of run {key} are not in "
                           f"{partial}: every rank of a sharded run must use one data "
                           "directory (on several machines, a shared file system)")
    per_window = [done[i] for i in range(len(windows))]
    return {
        "distances": inputs.distances,
        "targets": inputs.targets,
        "window_ids": windows.ids,
        "document": windows.document,
        "start": windows.start,
        **{name: np.stack([w[name] for w in per_window]) for name in per_window[0]},
    }


def _run_metadata(config: RunConfig, key: str, provenance: Provenance, documents: Sequence[Any],
                  device: torch.device, inputs: Inputs, arrays: Mapping[str, np.ndarray], pending: Sequence[int],
                  sessions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The run's ``metadata.json`` (less the data files' checksums, which :func:`write_run` adds)."""
    model, targets, n_windows = inputs.model, inputs.targets, len(inputs.windows)
    kernel_seconds = device_seconds(sessions)
    backward_rows = sum(int(session["backward_rows"]) for session in sessions)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    return {
        "key": key,
        "settings_key": settings_key(config, device),
        "config": config.to_dict(),
        "provenance": provenance.to_dict(),
        "dtype": dtype,
        **_norm_metadata(arrays, config.per_layer),
        "n_rows": int(n_windows * len(targets)),
        "n_windows_resumed": n_windows - len(pending),
        # Which process measured which window in this session (resumed windows are in none).
        "world_size": len(sessions),
        "windows_by_rank": [list(session["windows"]) for session in sessions],
        "ranks": [{name: session[name] for name in ("host", "pid", "device", "kernel_s", "backward_rows")}
                  for session in sessions],
        "backward_rows_this_session": backward_rows,
        "backward_rows_per_s": backward_rows / kernel_seconds if kernel_seconds else None,
        "rows_per_s": len(pending) * len(targets) / kernel_seconds if kernel_seconds else None,
        # The work of this session's windows, so that plans can turn FLOPs into time on this device.
        "kernel_flops": kernel_flops(model, len(pending), targets, config.source_min_index,
                                     backward_rows=backward_rows) if pending else None,
        "top1_accuracy": float(np.mean(arrays["pred_tokens"] == arrays["true_tokens"])),
        "timings": {**inputs.timings, "kernel_s": kernel_seconds},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": _environment(device),
        "corpus_documents": len(documents),
    }


def _norm_metadata(arrays: Mapping[str, np.ndarray], per_layer: bool) -> dict[str, Any]:
    """``norm_counts`` per selection (zero and non-finite norms at the grid points) and, per layer,
    ``n_layers`` and ``layer_norm_counts``."""
    # Every grid point is a source at or left of its target and right of the buffer, so each of these
    # norms is positive in exact arithmetic: a zero is underflow, and a NaN a failed gradient.
    counts: dict[str, Any] = {"norm_counts": {selection: count_norms(arrays[f"{selection}_raw"]).summed()
                                              for selection in SELECTIONS}}
    if per_layer:
        counts["n_layers"] = int(arrays["pred_layers"].shape[2])
        counts["layer_norm_counts"] = {selection: count_norms(arrays[f"{selection}_layers"]).summed()
                                       for selection in SELECTIONS}
    return counts


def at_grid_points(norms: torch.Tensor, sources: torch.Tensor, per_layer: bool) -> dict[str, np.ndarray]:
    """A window's kernel rows at the grid points, as stored: ``{"raw": [T, n_r]}``, and with ``per_layer``
    also ``{"layers": [T, n_layers, n_r]}`` (``raw`` is then layer 0, the embeddings).

    Args:
        norms: the kernel's rows of one window, ``[T, L]`` or, per layer, ``[T, n_layers, L]``.
        sources: ``[T, n_r]`` source position of each target's grid distances.
    """
    if not per_layer:
        return {"raw": norms[torch.arange(len(sources))[:, None], sources].numpy()}
    layers = norms.gather(-1, sources[:, None, :].expand(-1, norms.shape[1], -1)).numpy()
    return {"raw": layers[:, 0].copy(), "layers": layers}


def full_rows(norms: torch.Tensor, per_layer: bool) -> np.ndarray:
    """A window's whole kernel rows as stored with ``full_rows``: ``[T, L]`` float32 over every source.

    The kernel's own numbers, unchanged: NaN left of the buffer (never computed), zero right
    of the target. With ``per_layer`` the rows of layer 0 (the embeddings), as ``*_raw``.
    """
    values = norms[:, 0] if per_layer else norms
    return values.numpy().astype(np.float32, copy=True)


def device_seconds(sessions: Sequence[Mapping[str, Any]]) -> float:
    """Kernel time of a run in device-seconds, from each process' ``host``, ``device`` and ``kernel_s``.

    Processes on one device (the CPU of one host, or one GPU) ran at the same time and
    shared it: that device was busy for the longest of their times. Separate devices
    add up. So a run's ``kernel_flops`` over this is the throughput of one device, as
    for a single process, whatever the number of processes (the plans' time estimates
    divide by it).
    """
    busy: dict[tuple[str, str], float] = {}
    for session in sessions:
        where = (str(session["host"]), str(session["device"]))
        busy[where] = max(busy.get(where, 0.0), float(session["kernel_s"]))
    return sum(busy.values())


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
