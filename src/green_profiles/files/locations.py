"""Where things live: the local data directory, and the checksum that identifies a file there.

Whether the Hugging Face hub can be used is :mod:`green_profiles.files.hub`'s question.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def default_data_dir() -> Path:
    """``$GREEN_PROFILES_DATA`` if set, else ``data/`` in the current directory."""
    return Path(os.environ.get("GREEN_PROFILES_DATA", "data"))


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (checksums of prepared data and stored runs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
