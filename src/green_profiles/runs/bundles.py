"""Runs as data that travels: export stored runs to one checksummed bundle, import bundles into a store.

A bundle is a ``.tar.gz`` file with a ``MANIFEST.json`` first and then, for each
run, its directory as stored (:mod:`green_profiles.runs.store`) under ``runs/<key>/``::

    MANIFEST.json
    runs/3f1c0a9e2b7d4c55/metadata.json
    runs/3f1c0a9e2b7d4c55/profiles.npz
    runs/3f1c0a9e2b7d4c55/rows.csv
    ...

The manifest records the format version, when and by which ``green_profiles``
version the bundle was made, and for each run its key, settings (the stored
configuration), provenance, number of rows and the SHA-256 and size in bytes of
every file. Runs measured on a GPU machine are exported there and imported into
the store of the machine that builds the book (``published/README.md``).

Importing checks everything that can be checked without the model and the text: every member
must be a plain file at a ``runs/<16 hex digits>/<name>`` path listed in the manifest, every
file must match its recorded checksum and size, and each run must pass the store's own check
(:func:`green_profiles.runs.store.read_checked`): its key recomputed from its settings, dtype
and provenance must be its directory name, and its metadata must match its own checksum, all
before anything is written. What these cannot catch is a run forged with every checksum and
the key recomputed to match; against that, ``--require-listed`` accepts only files whose
SHA-256 a maintainer committed (``published/SHA256SUMS``), and ``green-profiles verify``
measures a sample of a run's windows again. Each run then appears in the
store in one rename (:func:`green_profiles.files.storage.atomic_directory`) under the
run key's lock, so an interrupted import leaves whole runs or nothing.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import re
import tarfile
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from green_profiles.files.locations import file_sha256
from green_profiles.runs.keys import METADATA_CHECKSUM, metadata_checksum
from green_profiles.runs.store import (
    DATA_FILES,
    CorruptRunError,
    check_metadata,
    key_lock,
    read_checked,
    remove_staging,
)
from green_profiles.files.storage import atomic_directory, atomic_file

__all__ = ["BUNDLE_FORMAT", "BUNDLE_FORMAT_VERSION", "BundleError", "ImportReport", "export_runs", "import_runs",
           "read_manifest", "trusted_checksums"]

BUNDLE_FORMAT = "green-profiles-runs"
BUNDLE_FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"
RUN_FILES = ("metadata.json", *DATA_FILES)  # what every stored run directory holds

_KEY = re.compile(r"[0-9a-f]{16}")
# A run's file: a plain name, no hidden files (staging names of the store start with a dot).
_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_BLOCK = 1 << 20


class BundleError(ValueError):
    """A bundle that cannot be trusted or read: damaged, tampered with, unsafe, or of an unknown format.

    (A ``ValueError``: for the command line it is bad input, one line and exit 2.)
    """


@dataclass
class ImportReport:
    """What :func:`import_runs` did with each run of a bundle, by run key.

    Attributes:
        imported: keys written to the store (new, replacing a damaged copy, or replaced with ``replace=True``).
        already_present: keys whose stored run is identical, file for file, to the bundle's (left as is).
        refused: key -> why the run was not written (e.g. a different run with the same key is stored).
    """

    imported: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every run of the bundle is now in the store as the bundle has it."""
        return not self.refused


# --- export -----------------------------------------------------------------------------------------

def export_runs(store: Path, keys: Sequence[str], destination: Path) -> Path:
    """Write the stored runs ``keys`` of ``store`` (a runs directory, ``<data>/runs``) into one bundle.

    Each run must first pass the store's check (complete, readable, data files
    matching their recorded checksums, metadata key equal to the directory name).
    Members are written in a fixed order (the manifest, then runs by key, files by
    name), and the bundle appears at ``destination`` in one rename.

    Returns:
        ``destination``.

    Raises:
        ValueError: no keys, a key that is not 16 hex digits, or a destination that is a directory.
        FileNotFoundError: no stored run with one of the keys.
        green_profiles.runs.store.CorruptRunError: a run is damaged (the message names it).
    """
    store, destination = Path(store), Path(destination)
    if destination.is_dir():
        raise ValueError(f"{destination} is a directory: name the bundle file to write, e.g. {destination / 'runs.tar.gz'}")
    chosen = sorted(set(keys))
    if not chosen:
        raise ValueError("no runs to export")
    for key in chosen:
        if not _KEY.fullmatch(key):
            raise ValueError(f"{key!r} is not a run key (16 hex digits; `green-profiles list` shows them)")
        if not (store / key).is_dir():
            raise FileNotFoundError(f"no stored run {key} in {store}")

    checked = [_manifest_entry(store, key) for key in chosen]
    entries = [entry for entry, _ in checked]
    replaced = {entry["key"]: upgraded for entry, upgraded in checked if upgraded is not None}
    manifest = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_FORMAT_VERSION,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "green_profiles_version": _package_version(),
                "runs": entries}
    stamp = int(time.time())
    with atomic_file(destination) as staging, tarfile.open(staging, "w:gz") as archive:
        _add_bytes(archive, MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode(), stamp)
        for entry in entries:
            key = entry["key"]
            for name, recorded in entry["files"].items():
                # Read again now: a run replaced since its check must not slip in under the old checksums.
                data = replaced[key] if name == "metadata.json" and key in replaced else (store / key / name).read_bytes()
                if hashlib.sha256(data).hexdigest() != recorded["sha256"]:
                    raise CorruptRunError(f"run {store / key}: {name} changed while it was being exported")
                _add_bytes(archive, f"runs/{key}/{name}", data, stamp)
    return destination


def _manifest_entry(store: Path, key: str) -> tuple[dict[str, Any], bytes | None]:
    """A run's manifest record after the store's check of the run (under its key's lock), and the bytes
    to export as its ``metadata.json`` where they differ from the stored file (``None`` otherwise).

    A run stored before metadata carried its own checksum is exported with it added (import requires it).
    """
    path = store / key
    with key_lock(store, key):  # a run being measured again is waited for, not exported half-replaced
        metadata, _, _ = read_checked(path)  # the key is recomputed from the metadata there
        files = {}
        for file in sorted(path.iterdir()):
            if not file.is_file() or file.is_symlink() or not _FILE_NAME.fullmatch(file.name):
                raise CorruptRunError(f"run {path}: unexpected entry {file.name!r} in the run directory")
            files[file.name] = {"sha256": file_sha256(file), "size": file.stat().st_size}
        upgraded = None
        if METADATA_CHECKSUM not in metadata:
            metadata[METADATA_CHECKSUM] = metadata_checksum(metadata)
            upgraded = (json.dumps(metadata, indent=2, default=str) + "\n").encode()
            files["metadata.json"] = {"sha256": hashlib.sha256(upgraded).hexdigest(), "size": len(upgraded)}
    return {"key": key, "settings": metadata["config"], "provenance": metadata["provenance"],
            "rows": metadata.get("n_rows"), "files": files}, upgraded


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    """Add ``data`` as a plain file, with owner and mode fixed so bundles do not carry the exporter's."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    archive.addfile(info, io.BytesIO(data))


def _package_version() -> str:
    return importlib.metadata.version("green_profiles")


# --- import -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Verified:
    """One run of a bundle that passed verification: its manifest entry and its archive members by file name."""

    key: str
    files: Mapping[str, Mapping[str, Any]]
    members: Mapping[str, tarfile.TarInfo]


def read_manifest(bundle: Path) -> dict[str, Any]:
    """A bundle's manifest, checked for its format (without verifying the runs' files).

    Raises:
        BundleError: not a bundle, unreadable, or of another format version.
    """
    with _open(bundle) as archive:
        return _manifest(archive, _members(archive, Path(bundle)), Path(bundle))


def trusted_checksums(path: Path) -> dict[str, str]:
    """The SHA-256 of trusted bundles listed in a ``sha256sum``-format file (``published/SHA256SUMS``):
    hex digest -> the file name it was listed with. Blank lines and ``#`` comments are skipped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line that is not ``<64 hex digits>  <name>`` (the message names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no list of trusted checksums at {path} (write it with `sha256sum published/*.tar.gz "
                                f"> published/SHA256SUMS`)")
    listed = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line.strip())
        if match is None:
            raise ValueError(f"{path}, line {number}: expected '<SHA-256>  <file name>', as sha256sum writes it")
        listed[match.group(1).lower()] = match.group(2)
    return listed


def import_runs(bundle: Path, store: Path, *, replace: bool = False,
                trusted: Mapping[str, str] | None = None) -> ImportReport:
    """Verify a bundle and install its runs into ``store`` (a runs directory, ``<data>/runs``).

    Nothing is written until the whole bundle is verified: the manifest, every
    member's path and type, every file's SHA-256 and size. A run whose directory
    name is not its metadata's key is refused; so is one that fails the store's
    check. A stored run identical to the bundle's (every file's checksum) is left
    as is; a stored run with the same key but other content is left alone and
    reported as refused unless ``replace``; a damaged stored run is replaced. With ``trusted``
    (:func:`trusted_checksums`), a bundle whose SHA-256 is not listed there is refused first.

    Returns:
        the :class:`ImportReport`, by run key.

    Raises:
        BundleError: the bundle cannot be read or trusted (then nothing is written).
        FileNotFoundError: no file at ``bundle``.
    """
    bundle, store = Path(bundle), Path(store)
    report = ImportReport()
    if trusted is not None:
        if not bundle.is_file():
            raise FileNotFoundError(f"no bundle at {bundle}")
        digest = file_sha256(bundle)
        if digest not in trusted:
            raise BundleError(f"bundle {bundle} (SHA-256 {digest[:16]}…) is not in the list of trusted checksums; "
                              "nothing was imported")
    with _open(bundle) as archive:
        members = _members(archive, bundle)
        manifest = _manifest(archive, members, bundle)
        runs = _verify(archive, members, manifest, bundle, report)
        for run in runs:  # every run's files are verified: now write
            outcome = _install(archive, run, store, replace)
            if outcome == "imported":
                report.imported.append(run.key)
            elif outcome == "already present":
                report.already_present.append(run.key)
            else:
                report.refused[run.key] = outcome
    return report


def _open(bundle: Path) -> tarfile.TarFile:
    if not Path(bundle).is_file():
        raise FileNotFoundError(f"no bundle at {bundle}")
    try:
        return tarfile.open(bundle, "r:gz")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise BundleError(f"bundle {bundle} is not a readable .tar.gz ({error})") from error


def _members(archive: tarfile.TarFile, bundle: Path) -> dict[str, tarfile.TarInfo]:
    """Every member by name, after refusing anything that is not a plain file at a safe path."""
    try:
        listed = archive.getmembers()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise BundleError(f"bundle {bundle} is damaged ({error})") from error
    members: dict[str, tarfile.TarInfo] = {}
    for member in listed:
        # tarfile's own rules first (links out of the destination, devices, ...), then stricter ones:
        # the data filter would merely strip a leading '/' and allow a '..' that stays inside.
        try:
            tarfile.data_filter(member, "/nonexistent-destination")
        except tarfile.FilterError as error:
            raise BundleError(f"bundle {bundle}: unsafe member {member.name!r} ({error})") from error
        if member.name.startswith("/") or ".." in PurePosixPath(member.name).parts:
            raise BundleError(f"bundle {bundle}: unsafe member {member.name!r} (an absolute path or '..')")
        if not member.isfile():  # and ours: no links, directories or devices at all
            raise BundleError(f"bundle {bundle}: member {member.name!r} is not a plain file")
        parts = PurePosixPath(member.name).parts
        if member.name != MANIFEST and not (len(parts) == 3 and parts[0] == "runs" and _KEY.fullmatch(parts[1])
                                            and _FILE_NAME.fullmatch(parts[2])):
            raise BundleError(f"bundle {bundle}: unexpected member {member.name!r} "
                              "(a bundle holds MANIFEST.json and runs/<key>/<file>)")
        if member.name in members:
            raise BundleError(f"bundle {bundle}: member {member.name!r} appears twice")
        members[member.name] = member
    return members


def _manifest(archive: tarfile.TarFile, members: Mapping[str, tarfile.TarInfo], bundle: Path) -> dict[str, Any]:
    """The manifest, checked for its format and shape, and against the members it lists."""
    if MANIFEST not in members:
        raise BundleError(f"bundle {bundle} has no {MANIFEST}")
    try:
        manifest = json.loads(_read(archive, members[MANIFEST]))
    except (ValueError, tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise BundleError(f"bundle {bundle}: unreadable {MANIFEST} ({error})") from error
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"bundle {bundle}: {MANIFEST} is not a green-profiles runs manifest")
    if manifest.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise BundleError(f"bundle {bundle}: format version {manifest.get('format_version')!r}; this version of "
                          f"green_profiles reads version {BUNDLE_FORMAT_VERSION}")
    runs = manifest.get("runs")
    if not isinstance(runs, list):
        raise BundleError(f"bundle {bundle}: {MANIFEST} lists no runs")
    listed, keys = {MANIFEST}, set()
    for entry in runs:
        if not (isinstance(entry, dict) and isinstance(entry.get("key"), str) and _KEY.fullmatch(entry["key"])
                and isinstance(entry.get("files"), dict)):
            raise BundleError(f"bundle {bundle}: {MANIFEST} has a malformed run entry")
        if entry["key"] in keys:
            raise BundleError(f"bundle {bundle}: {MANIFEST} lists run {entry['key']} twice")
        keys.add(entry["key"])
        for name, recorded in entry["files"].items():
            if not (isinstance(recorded, dict) and isinstance(recorded.get("sha256"), str)
                    and isinstance(recorded.get("size"), int)):
                raise BundleError(f"bundle {bundle}: {MANIFEST} has no checksum and size for run "
                                  f"{entry['key']}'s {name}")
            path = f"runs/{entry['key']}/{name}"
            if path in listed:
                raise BundleError(f"bundle {bundle}: {MANIFEST} lists {path} twice")
            if path not in members:
                raise BundleError(f"bundle {bundle}: {path} is in the manifest but not in the bundle")
            listed.add(path)
    unlisted = sorted(set(members) - listed)
    if unlisted:
        raise BundleError(f"bundle {bundle}: {unlisted[0]} is in the bundle but not in its manifest")
    return manifest


def _verify(archive: tarfile.TarFile, members: Mapping[str, tarfile.TarInfo], manifest: Mapping[str, Any],
            bundle: Path, report: ImportReport) -> list[_Verified]:
    """Check every file against the manifest (whole bundle) and each run's metadata (per run).

    Raises :class:`BundleError` for a damaged or tampered file; a run whose metadata
    does not belong under its key goes to ``report.refused`` and is left out.
    """
    verified = []
    for entry in manifest["runs"]:
        key, files = entry["key"], entry["files"]
        run_members = {name: members[f"runs/{key}/{name}"] for name in files}
        for name, member in run_members.items():
            digest, size = _digest(archive, member, bundle)
            if size != files[name]["size"] or digest != files[name]["sha256"]:
                raise BundleError(f"bundle {bundle}: run {key}'s {name} does not match the checksum in its "
                                  "manifest (damaged or tampered with); nothing was imported")
        missing = [name for name in RUN_FILES if name not in files]
        if missing:
            report.refused[key] = f"the bundle lacks its {', '.join(missing)}"
            continue
        try:
            metadata = json.loads(_read(archive, run_members["metadata.json"]))
        except ValueError as error:
            report.refused[key] = f"its metadata.json is unreadable ({error})"
            continue
        try:
            check_metadata(metadata, key, where=f"runs/{key}/metadata.json", require_checksum=True)
        except CorruptRunError as error:
            report.refused[key] = str(error)
            continue
        if (entry.get("settings") != metadata.get("config")
                or entry.get("provenance") != metadata.get("provenance")):
            report.refused[key] = "the manifest's settings or provenance differ from the run's metadata"
            continue
        verified.append(_Verified(key=key, files=files, members=run_members))
    return verified


def _install(archive: tarfile.TarFile, run: _Verified, store: Path, replace: bool) -> str:
    """Write one verified run into the store: ``"imported"``, ``"already present"`` or why not."""
    final = store / run.key
    with key_lock(store, run.key):
        if final.exists():
            if _stored_checksums(final) == {name: recorded["sha256"] for name, recorded in run.files.items()}:
                return "already present"
            if _intact(final) and not replace:
                return "a different run with this key is stored; it is not overwritten without --replace"
        remove_staging(store, run.key)  # of an import or a measurement of this key that died
        try:
            with atomic_directory(final, replace=True) as staging:
                for name, member in run.members.items():
                    # filter="data" again at extraction: the member's checks hold for what is written
                    archive.extract(member.replace(name=name, deep=False), staging, filter="data")
                    recorded = run.files[name]
                    if file_sha256(staging / name) != recorded["sha256"]:
                        raise BundleError(f"{name} changed while the bundle was being read")
                # The store's own check before the run appears: the key recomputed from the metadata, whose
                # checksum a bundle must carry (a store's older runs are exported with it added).
                read_checked(staging, key=run.key, require_checksum=True)
        except (CorruptRunError, BundleError, tarfile.TarError, EOFError, zlib.error) as error:
            # (an OSError other than a damaged archive, a full disk say, is not the run's fault: it propagates)
            return f"it fails the store's check ({error})"
    return "imported"


def _stored_checksums(path: Path) -> dict[str, str] | None:
    """SHA-256 of every plain file of a stored run directory, by name (None if it is not a directory)."""
    if not path.is_dir():
        return None
    return {file.name: file_sha256(file) for file in sorted(path.iterdir()) if file.is_file()}


def _intact(path: Path) -> bool:
    """Whether a stored run passes the store's check (a damaged one may be replaced without asking)."""
    try:
        read_checked(path)
    except CorruptRunError:
        return False
    return True


def _read(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    if handle is None:  # not a regular file; _members refuses those, this is belt and braces
        raise BundleError(f"member {member.name!r} is not a plain file")
    with handle:
        return handle.read()


def _digest(archive: tarfile.TarFile, member: tarfile.TarInfo, bundle: Path) -> tuple[str, int]:
    """``(hex SHA-256, size in bytes)`` of a member's content, read in 1 MiB blocks."""
    digest, size = hashlib.sha256(), 0
    try:
        handle = archive.extractfile(member)
        if handle is None:
            raise BundleError(f"bundle {bundle}: member {member.name!r} is not a plain file")
        with handle:
            for block in _blocks(handle):
                digest.update(block)
                size += len(block)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise BundleError(f"bundle {bundle} is damaged: {member.name} cannot be read ({error})") from error
    return digest.hexdigest(), size


def _blocks(handle: IO[bytes]) -> Iterator[bytes]:
    return iter(lambda: handle.read(_BLOCK), b"")
