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
    commit, device, timings, throughput, the SHA-256 of the two data files
    and, in ``metadata_sha256``, that of the rest of the metadata itself
    (:func:`green_profiles.runs.keys.metadata_checksum`): a mismatch means damage.

Guarantees:

- Nothing stored is trusted: every read recomputes the run key and the settings key from
  the metadata (:func:`green_profiles.runs.keys.recorded_keys`) and checks them against the
  directory's name and the recorded ones, and checks the metadata's own checksum and the data
  files'. A run filed under another key, or whose metadata was edited, is a
  :class:`CorruptRunError`: served to no one, listed as damaged, measured again by ``run``.
  (Runs written before the metadata carried its checksum are read with the key checks only.)

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
from green_profiles.runs.keys import METADATA_CHECKSUM, metadata_checksum, recorded_keys
from green_profiles.files.storage import (
    atomic_directory,
    atomic_file,
    atomic_write,
    exclusive_lock,
    remove_staging,
    shared_lock,
)

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


@contextlib.contextmanager
def read_lock(store: Path, key: str, *, announce: bool = True) -> Iterator[None]:
    """Hold the shared lock of one run key for the block (reading a stored run to serve it).

    Readers do not wait for each other, only for a process measuring or replacing the key (then,
    with ``announce``, saying so on stderr); on a read-only store it is taken where it can be, or
    not at all (:func:`green_profiles.files.storage.shared_lock`).
    """
    def say_waiting() -> None:
        if announce:
            print(waiting_message(key), file=sys.stderr)

    with shared_lock(Path(store) / _LOCKS / f"{key}.lock", on_wait=say_waiting):
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
        metadata[METADATA_CHECKSUM] = metadata_checksum(metadata)
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


def read_checked(path: Path, *, key: str | None = None,
                 require_checksum: bool = False) -> tuple[dict[str, Any], dict[str, np.ndarray], Any]:
    """``(metadata, arrays, rows table)`` of a stored run, after checking it is complete and intact.

    ``key`` and ``require_checksum`` as for :func:`read_metadata`.

    Raises:
        CorruptRunError: missing files, unreadable or inconsistent metadata, or a checksum mismatch.
    """
    import pandas as pd

    path = Path(path)
    metadata = read_metadata(path, key=key, require_checksum=require_checksum)
    _check_data_files(path, metadata)
    try:
        with np.load(path / "profiles.npz") as archive:
            arrays = {name: archive[name] for name in archive.files}
        table = pd.read_csv(path / "rows.csv", keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as error:  # intact checksums of unreadable files: written by a broken writer
        raise CorruptRunError(f"run {path}: its data files cannot be read ({error})") from error
    return metadata, arrays, table


def read_metadata(path: Path, *, key: str | None = None, require_checksum: bool = False) -> dict[str, Any]:
    """A run's ``metadata.json``, checked against its own checksum and the key it is read under.

    The run key and settings key are recomputed from the recorded settings, dtype and provenance
    (:func:`green_profiles.runs.keys.recorded_keys`); the run key must equal ``key`` (by default the
    directory's name) and the recorded one, and the settings key the recorded one.

    Args:
        path: the run directory.
        key: the key it is read under (a staging directory's name is not its key).
        require_checksum: refuse metadata without ``metadata_sha256`` (written before it was recorded;
            a bundle's runs must have it, a store's own older runs are read without it).

    Raises:
        CorruptRunError: missing, unreadable, incomplete, edited, or filed under another key; the
            message names the file and, for a key mismatch, both keys.
    """
    path = Path(path)
    file = path / "metadata.json"
    expected = path.name if key is None else key
    try:
        metadata = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CorruptRunError(f"run {path} has no readable metadata.json ({error})") from error
    check_metadata(metadata, expected, where=str(file), require_checksum=require_checksum)
    return metadata


def check_metadata(metadata: Any, key: str, *, where: str, require_checksum: bool = False) -> None:
    """Check a run's metadata (as loaded from JSON) against its own checksum and the run ``key``.

    ``where`` names the file in messages. The checks of :func:`read_metadata`, for metadata not read
    from a store (a bundle's, before anything is written).

    Raises:
        CorruptRunError: as :func:`read_metadata`.
    """
    if not isinstance(metadata, dict):
        raise CorruptRunError(f"{where} is not a JSON object (damaged)")
    missing = [field for field in ("key", "config", "dtype", "sha256", "provenance") if field not in metadata]
    if missing or not isinstance(metadata["sha256"], dict):
        raise CorruptRunError(f"{where} lacks {', '.join(missing) or 'the data files checksums'} "
                              "(damaged, or written by an older version)")
    recorded = metadata.get(METADATA_CHECKSUM)
    if recorded is None and require_checksum:
        raise CorruptRunError(f"{where} has no {METADATA_CHECKSUM} (written by an older version of green_profiles,"
                              " or stripped): it cannot be checked")
    if recorded is not None and recorded != metadata_checksum(metadata):
        raise CorruptRunError(f"{where} does not match its recorded checksum (edited or damaged)")
    try:
        computed, computed_settings = recorded_keys(metadata)
    except (KeyError, TypeError, ValueError) as error:
        raise CorruptRunError(f"{where}: its settings cannot be read ({error})") from error
    if computed != key or metadata["key"] != key:
        raise CorruptRunError(f"run {key} ({where}): its settings and provenance give key {computed} and it "
                              f"records key {metadata['key']}, but it is stored as {key}")
    if metadata.get("settings_key", computed_settings) != computed_settings:
        raise CorruptRunError(f"run {key} ({where}): it records settings key {metadata['settings_key']}, "
                              f"its settings give {computed_settings}")


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
                  fresh: Mapping[int, Mapping[str, np.ndarray]], *, distances: np.ndarray,
                  writer: str | None = None) -> None:
    """Write finished windows (index -> arrays) as one part file, atomically.

    A part is named by its first window and its number of windows
    (``part-000004-000002.npz``), which is unique as long as every window is measured
    by one writer; ``writer`` (``"rank1"`` for the ranks of a sharded run) is appended
    to the name, so that the parts of concurrent writers stay apart even if that ever failed.
    Each part records the run ``key`` and the ``distances [n_r]`` it was measured at, so that
    :func:`read_partial` can tell it from a part of another run.
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
        np.savez(staging, indices=indices, window_ids=window_ids[indices], run_key=np.array(key),
                 distances=np.asarray(distances, dtype=np.int64), **fields)


_PART_RECORDS = ("indices", "window_ids", "run_key", "distances")
SET_ASIDE_SUFFIX = ".set-aside"


def read_partial(partial: Path, window_ids: np.ndarray, *, key: str, distances: np.ndarray,
                 n_targets: int) -> dict[int, dict[str, np.ndarray]]:
    """Windows already measured by an earlier, interrupted attempt at run ``key``.

    A part is used only where it records this run's key and ``distances``, its window token ids
    equal this run's, and every field has ``n_targets`` targets (and ``n_r`` distances where it
    has a distance axis). Any other part (of another run, of an older version without a recorded
    key, or unreadable) is set aside, renamed ``<part>.set-aside``, with a warning naming it; so is
    the whole folder when its ``key.json`` names another run.
    """
    partial = Path(partial)
    named = _partial_key(partial)
    if named is not None and named != key:
        for part in sorted(partial.glob("part-*.npz")):
            _set_aside(part, f"its folder's key.json names run {named}, not {key}")
        return {}
    distances = np.asarray(distances, dtype=np.int64)
    done: dict[int, dict[str, np.ndarray]] = {}
    for part in sorted(partial.glob("part-*.npz")):
        try:
            with np.load(part) as archive:
                if "run_key" not in archive.files:
                    raise ValueError("it records no run key (written by an older version)")
                if str(archive["run_key"]) != key:
                    raise ValueError(f"it belongs to run {archive['run_key']}, not {key}")
                if not np.array_equal(archive["distances"], distances):
                    raise ValueError("its distances are not this run's")
                indices = archive["indices"]
                if indices.max(initial=-1) >= len(window_ids) or not np.array_equal(
                        archive["window_ids"], window_ids[indices]):
                    raise ValueError("its windows are not this run's windows")
                fields = {name: archive[name] for name in archive.files if name not in _PART_RECORDS}
                for name, values in fields.items():
                    if values.shape[:2] != (len(indices), n_targets) or (
                            name.endswith(("_raw", "_layers")) and values.shape[-1] != len(distances)):
                        raise ValueError(f"its {name} has shape {values.shape}, not this run's")
        except (OSError, ValueError, KeyError, EOFError) as error:
            _set_aside(part, str(error))
            continue
        for position, index in enumerate(indices.tolist()):
            done[index] = {name: values[position] for name, values in fields.items()}
    return done


def _partial_key(partial: Path) -> str | None:
    """The run key a partial folder's ``key.json`` names (None: no readable one)."""
    try:
        named = json.loads((partial / "key.json").read_text(encoding="utf-8")).get("key")
    except (OSError, ValueError, AttributeError):
        return None
    return named if isinstance(named, str) else None


def _set_aside(part: Path, why: str) -> None:
    """Rename a part that cannot be used so that no later resume reads it either, and say so."""
    aside = part.with_name(part.name + SET_ASIDE_SUFFIX)
    try:
        part.rename(aside)
    except OSError:
        aside = part
    warnings.warn(f"ignoring {part}: {why} (set aside as {aside.name})", stacklevel=4)


def _check_data_files(path: Path, metadata: Mapping[str, Any]) -> None:
    """Raise :class:`CorruptRunError` when a data file is missing or differs from its recorded checksum."""
    for name in DATA_FILES:
        file = path / name
        if not file.is_file() or file_sha256(file) != metadata["sha256"].get(name):
            raise CorruptRunError(f"run {path}: {name} is missing or does not match its checksum")
