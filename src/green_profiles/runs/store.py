"""The run store: finished runs on disk, the partial work of unfinished ones, and who may write them.

Each run lives in ``<data>/runs/<key>/`` (the key: :func:`green_profiles.runs.provenance.run_key`):

``profiles.npz``
    ``distances [n_r]``, ``targets [T]``, ``window_ids [n, L + 1]``,
    ``document [n]``, ``start [n]``, ``true_tokens``/``pred_tokens [n, T]``,
    ``true_log_probs [n, T]`` (nats) and the raw norms ``true_raw``/``pred_raw [n, T, n_r]``
    (float32, logit per unit embedding; ``n`` windows, ``T`` targets, ``n_r`` distances);
    a ``per_layer`` run adds ``true_layers``/``pred_layers [n, T, n_layers, n_r]``, the norms
    with respect to each decoder block's input (layer 0 equals ``*_raw``); a ``full_rows`` run
    adds ``true_full``/``pred_full [n, T, L]``, every target's whole row over all sources.
``rows.csv``
    one line per (window, target): document, title, start, target, both tokens
    (ids and text), whether the prediction was right, the observed token's log-probability.
``metadata.json``
    the configuration, key, settings key, provenance, package versions, git
    commit, device, timings, throughput and the SHA-256 of the two data files
    (a mismatch means damage).

Guarantees:

- A run directory appears in one rename once everything is written
  (:func:`green_profiles.files.storage.atomic_directory`); replacing a damaged one
  renames it aside first, so no reader ever sees a half-deleted run.
- One process at a time measures and writes a key: :func:`key_lock` holds an
  exclusive lock on ``runs/.locks/<key>.lock``; a second process asking for the
  same key waits and then loads what the first stored. (The ranks of a sharded run,
  :mod:`green_profiles.runs.distributed`, count as one: their first rank holds the lock.)
- While a run is under way, finished windows are flushed as part files to
  ``<key>.partial/`` (each part written atomically; each rank of a sharded run
  writes its own), so even a hard kill loses at most the windows since the last flush.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from green_profiles.files.locations import default_data_dir, file_sha256
from green_profiles.files.storage import atomic_directory, atomic_file, atomic_write, exclusive_lock, remove_staging

DATA_FILES = ("profiles.npz", "rows.csv")
_LOCKS = ".locks"


class CorruptRunError(RuntimeError):
    """A run directory is incomplete or its files do not match their recorded checksums."""


def runs_directory(data_dir: Path | None = None) -> Path:
    """Where runs are stored: ``<data>/runs``."""
    return (Path(data_dir) if data_dir is not None else default_data_dir()) / "runs"


@contextlib.contextmanager
def key_lock(store: Path, key: str, *, announce: bool = True, wait: bool = True) -> Iterator[None]:
    """Hold the exclusive lock of one run key for the block (measuring, resuming, writing it).

    When another process holds it, says so on stderr (with ``announce``) and waits;
    with ``wait=False`` raises ``BlockingIOError`` instead.
    """
    def say_waiting() -> None:
        if announce:
            print(waiting_message(key), file=sys.stderr)

    with exclusive_lock(Path(store) / _LOCKS / f"{key}.lock", on_wait=say_waiting, wait=wait):
        yield


def waiting_message(key: str) -> str:
    """The line a process prints when another one holds the lock of run ``key``."""
    return f"green-profiles: another process is measuring run {key}; waiting for it"


def write_run(store: Path, key: str, arrays: Mapping[str, np.ndarray], table: Any,
              metadata: dict[str, Any]) -> Path:
    """Write a finished run as ``<store>/<key>/`` in one rename; an existing one is replaced.

    ``arrays`` become ``profiles.npz`` (names and shapes in the module docstring), ``table``
    ``rows.csv``. Call it while holding :func:`key_lock`. ``metadata`` gains the data files' checksums.
    """
    final = Path(store) / key
    remove_staging(Path(store), key)  # of a writer of this key that died
    with atomic_directory(final, replace=True) as staging:
        np.savez_compressed(staging / "profiles.npz", **arrays)
        table.to_csv(staging / "rows.csv", index=False)
        metadata["sha256"] = {name: file_sha256(staging / name) for name in DATA_FILES}
        (staging / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str) + "\n")
    return final


@dataclass(frozen=True, eq=False)  # arrays: no element-wise __eq__
class StoredRun:
    """A stored run as read from its directory, checked: what :mod:`green_profiles.runs.measurement` returns.

    ``arrays`` are the contents of ``profiles.npz`` and ``table`` those of ``rows.csv`` (module
    docstring). The analysis layer wraps it (:class:`green_profiles.analysis.profiles.ProfileRun`).
    """

    path: Path
    metadata: dict[str, Any]
    arrays: dict[str, np.ndarray]
    table: Any  # pandas.DataFrame, one line per (window, target) row


def read_run(path: Path) -> StoredRun:
    """A stored run, after checking it is complete and intact (:func:`read_checked`).

    Raises:
        CorruptRunError: missing files, unreadable metadata or a checksum mismatch.
    """
    metadata, arrays, table = read_checked(path)
    return StoredRun(path=Path(path), metadata=metadata, arrays=arrays, table=table)


def read_checked(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], Any]:
    """``(metadata, arrays, rows table)`` of a stored run, after checking it is complete and intact.

    Raises:
        CorruptRunError: missing files, unreadable metadata or a checksum mismatch.
    """
    import pandas as pd

    path = Path(path)
    metadata = read_metadata(path)
    _check_data_files(path, metadata)
    try:
        with np.load(path / "profiles.npz") as archive:
            arrays = {name: archive[name] for name in archive.files}
        table = pd.read_csv(path / "rows.csv", keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as error:  # intact checksums of unreadable files: written by a broken writer
        raise CorruptRunError(f"run {path}: its data files cannot be read ({error})") from error
    return metadata, arrays, table


def read_metadata(path: Path) -> dict[str, Any]:
    """A run's ``metadata.json``, checked for the fields every run has.

    Raises:
        CorruptRunError: missing, unreadable or incomplete.
    """
    try:
        metadata = json.loads((Path(path) / "metadata.json").read_text())
    except (OSError, ValueError) as error:
        raise CorruptRunError(f"run {path} has no readable metadata.json ({error})") from error
    missing = [field for field in ("key", "config", "sha256", "provenance") if field not in metadata]
    if not isinstance(metadata, dict) or missing:
        raise CorruptRunError(f"run {path}: metadata.json lacks {', '.join(missing) or 'an object'} "
                              "(damaged, or written by an older version)")
    return metadata


def stored_metadata(store: Path) -> Iterator[tuple[Path, dict[str, Any] | CorruptRunError]]:
    """Every run directory in the store with its metadata, or the error that makes it unusable.

    Checks the data files' checksums too, so a damaged run is reported here, not
    by whoever reads it next.
    """
    store = Path(store)
    if not store.is_dir():
        return
    for path in sorted(store.iterdir()):
        if not path.is_dir() or path.name.startswith(".") or path.name.endswith(".partial"):
            continue
        try:
            metadata = read_metadata(path)
            _check_data_files(path, metadata)
        except CorruptRunError as error:
            yield path, error
            continue
        yield path, metadata


def runs_with_settings(store: Path, settings_key: str) -> list[dict[str, Any]]:
    """Metadata of the intact stored runs of these settings, whatever their provenance."""
    return [metadata for _, metadata in stored_metadata(store)
            if isinstance(metadata, dict) and metadata.get("settings_key") == settings_key]


def earlier_versions(store: Path, settings_key: str, key: str) -> list[dict[str, Any]]:
    """Metadata of intact stored runs with the same settings as ``key`` but another provenance."""
    return [metadata for metadata in runs_with_settings(store, settings_key) if metadata.get("key") != key]


def partial_directory(store: Path, key: str) -> Path:
    """Where the finished windows of an unfinished run ``key`` are kept."""
    return Path(store) / f"{key}.partial"


def flush_partial(partial: Path, key: str, window_ids: np.ndarray,
                  fresh: Mapping[int, Mapping[str, np.ndarray]], *, writer: str | None = None) -> None:
    """Write finished windows (index -> arrays) as one part file, atomically.

    A part is named by its first window and its number of windows
    (``part-000004-000002.npz``), which is unique as long as every window is measured
    by one writer; ``writer`` (``"rank1"`` for the ranks of a sharded run) is appended
    to the name, so that the parts of concurrent writers stay apart even if that ever failed.
    """
    if not fresh:
        return
    partial.mkdir(parents=True, exist_ok=True)
    if not (partial / "key.json").exists():
        atomic_write(partial / "key.json", json.dumps({"key": key}) + "\n")
    indices = np.array(sorted(fresh), dtype=np.int64)
    fields = {name: np.stack([fresh[i][name] for i in indices.tolist()]) for name in next(iter(fresh.values()))}
    suffix = "" if writer is None else f"-{writer}"
    with atomic_file(partial / f"part-{indices[0]:06d}-{len(indices):06d}{suffix}.npz") as staging:
        np.savez(staging, indices=indices, window_ids=window_ids[indices], **fields)


def read_partial(partial: Path, window_ids: np.ndarray) -> dict[int, dict[str, np.ndarray]]:
    """Windows already measured by an earlier, interrupted attempt.

    A part is used only where its window token ids equal this run's; unreadable
    parts and parts of other windows are skipped with a warning.
    """
    done: dict[int, dict[str, np.ndarray]] = {}
    for part in sorted(Path(partial).glob("part-*.npz")):
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


def _check_data_files(path: Path, metadata: Mapping[str, Any]) -> None:
    """Raise :class:`CorruptRunError` when a data file is missing or differs from its recorded checksum."""
    for name in DATA_FILES:
        file = path / name
        if not file.is_file() or file_sha256(file) != metadata["sha256"].get(name):
            raise CorruptRunError(f"run {path}: {name} is missing or does not match its checksum")
