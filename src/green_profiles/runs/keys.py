"""A run's key as a pure function of what its ``metadata.json`` records, and the metadata's own checksum.

The key (:func:`green_profiles.runs.provenance.run_key`) hashes the resolved settings, the dtype the
model ran in and the provenance. All three are in every stored run's metadata, so the key can be
recomputed from the metadata alone, without the model or the text: the store does so on every read
(:func:`green_profiles.runs.store.read_metadata`), so that a run filed under another run's key, or
metadata edited after the run was written, is refused instead of served.

What a recomputed key cannot catch is a forged run whose metadata and key agree (the numbers of
``profiles.npz`` multiplied by 5 and every checksum recomputed): only a list of trusted checksums
(``published/SHA256SUMS``) or measuring again (``green-profiles verify``) can.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

# Settings flags added after runs were stored: in a key only when set, so that older runs keep theirs.
OPTIONAL_FLAGS = ("per_layer", "full_rows")
# The field of metadata.json holding the SHA-256 of the rest of it (metadata_checksum).
METADATA_CHECKSUM = "metadata_sha256"


def digest(record: Mapping[str, Any]) -> str:
    """16 hex digits of the SHA-256 of a JSON record with sorted keys: the form of every run key."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def settings_record_of(config: Mapping[str, Any], dtype: str) -> dict[str, Any]:
    """The settings record a key hashes: a resolved configuration's dictionary with the dtype it ran in."""
    record = dict(config) | {"dtype": dtype}
    for flag in OPTIONAL_FLAGS:
        if not record.get(flag):
            record.pop(flag, None)
    return record


def recorded_keys(metadata: Mapping[str, Any]) -> tuple[str, str]:
    """``(run key, settings key)`` recomputed from a stored run's metadata (``config``, ``dtype``, ``provenance``).

    Raises:
        KeyError, TypeError: the metadata lacks those fields or they are not of the recorded forms.
    """
    config, dtype, provenance = metadata["config"], metadata["dtype"], metadata["provenance"]
    if not isinstance(config, Mapping) or not isinstance(dtype, str) or not isinstance(provenance, Mapping):
        raise TypeError("config, dtype or provenance is not of the form a run records")
    record = settings_record_of(config, dtype)
    return digest(record | {"provenance": dict(provenance)}), digest(record)


def metadata_checksum(metadata: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a run's metadata without its own checksum field, as canonical JSON.

    Computed on the JSON form (``default=str`` as it is written, keys sorted), so the value written
    and the value recomputed after ``json.loads`` agree.
    """
    rest = {name: value for name, value in metadata.items() if name != METADATA_CHECKSUM}
    canonical = json.loads(json.dumps(rest, default=str))
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=True).encode()).hexdigest()
