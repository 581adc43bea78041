"""Writing to the data directory so that nothing half-written is ever seen, and one writer at a time.

Every file the package writes (prepared corpora, converted weights, stored runs,
executed notebooks) goes through these helpers:

- :func:`atomic_write` writes a file under a hidden temporary name in the same
  directory and renames it into place; a crash or Ctrl-C leaves the old file or
  nothing, never a truncated one.
- :func:`atomic_directory` does the same for a directory that is filled file by
  file and then appears in one rename.
- :func:`exclusive_lock` is an advisory ``flock`` lock on a lock file: writers of
  one thing (a run key, the corpus preparation, the model conversion) take it, so
  two processes asking for the same result do the work once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_directory", "atomic_file", "atomic_write", "exclusive_lock", "remove_staging", "shared_lock"]

# Hidden names of staging files and directories: `remove_staging` knows them by this prefix.
STAGING_PREFIX = ".staging-"
_TRASH_PREFIX = ".trash-"


def atomic_write(path: Path, content: str | bytes, *, mode: int = 0o644) -> None:
    """Write ``content`` (text as UTF-8) to ``path`` all at once: a temporary file, fsync, rename."""
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f"{STAGING_PREFIX}{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(staging, mode)  # mkstemp creates 0600; data files are meant to be shared
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write with any library (``np.savez``, papermill, ...);
    renamed to ``path`` when the block ends without an exception, removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the suffix: some writers (np.savez) append their own when it is missing.
    handle, staging = tempfile.mkstemp(prefix=f"{STAGING_PREFIX}{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        yield Path(staging)
        os.chmod(staging, 0o644)
        os.replace(staging, path)
    finally:
        Path(staging).unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(final: Path, *, replace: bool = False) -> Iterator[Path]:
    """A staging directory to fill; it becomes ``final`` in one rename when the block succeeds.

    With ``replace=True`` an existing ``final`` is first renamed aside (one atomic
    rename, then removed), so at no moment is a half-deleted directory visible
    under the final name; without it an existing ``final`` raises
    ``FileExistsError``. Callers that may race for ``final`` hold an
    :func:`exclusive_lock` around the block.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{final.name}.", dir=final.parent))
    try:
        yield staging
        # Some writers create their files 0600 (mkstemp underneath); data here is meant to be shared.
        for written in staging.rglob("*"):
            written.chmod(0o755 if written.is_dir() else 0o644)
        staging.chmod(0o755)
        trash = None
        if final.exists():
            if not replace:
                raise FileExistsError(f"{final} already exists")
            trash = final.with_name(f"{_TRASH_PREFIX}{final.name}.{uuid.uuid4().hex[:8]}")
            os.replace(final, trash)
        os.replace(staging, final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_staging(directory: Path, name: str | None = None) -> None:
    """Remove what interrupted writers left in ``directory`` (only ever hidden staging or trash names);
    with ``name``, only the leftovers of writes to ``directory / name``.

    Call it while holding the lock that guards those writers: a staging name of a
    writer still at work would otherwise be removed under it.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return
    prefixes = (STAGING_PREFIX, _TRASH_PREFIX) if name is None else (f"{STAGING_PREFIX}{name}.",
                                                                      f"{_TRASH_PREFIX}{name}.")
    for leftover in directory.iterdir():
        if leftover.name.startswith(prefixes):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive_lock(path: Path, *, on_wait: Callable[[], None] | None = None, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive advisory lock on the file ``path`` (created if missing) for the block.

    Blocks until every other holder has let go; ``on_wait`` is called once first when
    another holder has it (to tell the user why nothing happens). With ``wait=False``
    it raises ``BlockingIOError`` at once instead (for callers that must stay
    responsive while they wait, such as the first rank of a sharded run). POSIX ``flock``;
    where it does not exist (Windows) there is no lock, and the atomic renames still
    keep every file whole.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle, _flocked(handle, fcntl.LOCK_EX, on_wait, wait):
        yield


@contextlib.contextmanager
def shared_lock(path: Path, *, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold a shared advisory lock on the file ``path`` for the block: readers share it, an
    :func:`exclusive_lock` holder (a writer) waits for them and they for it.

    Made for reading from stores that may be read-only (a shared mount, a store of read-only
    files): the lock file is opened for reading where it cannot be created or written, and where
    it cannot be opened at all the block runs without a lock. Nothing can write such a store
    through this package, and every file in it appeared by an atomic rename, so a reader never
    sees a half-written file either way. ``on_wait`` is called once first when a writer holds it.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = Path(path)
    handle = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
    except OSError:  # read-only: an existing lock file can still be locked through a read handle
        try:
            handle = open(path)
        except OSError:
            handle = None
    if handle is None:
        yield
        return
    with handle, _flocked(handle, fcntl.LOCK_SH, on_wait, wait=True):
        yield


@contextlib.contextmanager
def _flocked(handle: Any, operation: int, on_wait: Callable[[], None] | None, wait: bool) -> Iterator[None]:
    """``flock(handle, operation)`` for the block: tried at once first, then (``wait``) after ``on_wait``."""
    import fcntl

    try:
        fcntl.flock(handle, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        if not wait:
            raise
        if on_wait is not None:
            on_wait()
        fcntl.flock(handle, operation)
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
