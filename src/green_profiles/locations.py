"""Where things live: the local data directory, and whether the Hugging Face hub can be reached."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from urllib.parse import urlparse


def default_data_dir() -> Path:
    """``$GREEN_PROFILES_DATA`` if set, else ``data/`` in the current directory."""
    return Path(os.environ.get("GREEN_PROFILES_DATA", "data"))


def hub_reachable(timeout_seconds: float = 3.0) -> bool:
    """Whether a TCP connection to the hub (``$HF_ENDPOINT``) opens within the timeout.

    Asked before any hub download so that an offline machine gets an immediate,
    explicit error instead of the hub client's half-minute of retries.
    """
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout_seconds):
            return True
    except OSError:
        return False


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (checksums of prepared data and stored runs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
