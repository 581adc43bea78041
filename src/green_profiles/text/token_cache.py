"""Token ids of documents, computed once per tokenizer and text and kept on disk.

Sampling a run's windows tokenizes whole documents (the authors' rule tokenizes
whole books and draws a start inside each), and many runs share a tokenizer and a
corpus: a shuffled control, a random twin, a model of the same family. The cache
stores each document's ids under a name made only of what determines them, so a
hit is the very array the tokenizer would return:

    <directory>/<tokenizer fingerprint>/<sha256 of the text>.npy

The fingerprint hashes the tokenizer's full serialized pipeline (normalizer,
pre-tokenizer, model with its vocabulary and merges, added tokens), its class and
the ``tokenizers`` version. Tokenizers with no serialized pipeline (Python "slow"
tokenizers) are never cached. Ids are always computed without special tokens.
"""

from __future__ import annotations

import hashlib
import io
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from green_profiles.files.locations import default_data_dir
from green_profiles.files.storage import atomic_write

__all__ = ["TokenCache", "token_cache", "tokenizer_fingerprint"]

_FINGERPRINTS: weakref.WeakKeyDictionary[object, str | None] = weakref.WeakKeyDictionary()


def tokenizer_fingerprint(tokenizer: object) -> str | None:
    """A 16-hex-digit name for everything that decides ``tokenizer``'s ids, or ``None``.

    ``None`` for a tokenizer without a serialized fast pipeline (``backend_tokenizer``):
    its behaviour cannot be named from its files, so it is not cached.
    """
    try:
        return _FINGERPRINTS[tokenizer]
    except (KeyError, TypeError):
        pass
    backend = getattr(tokenizer, "backend_tokenizer", None)
    fingerprint = None
    if backend is not None and hasattr(backend, "to_str"):
        import tokenizers  # deferred: only a fast tokenizer reaches here, and it brought the library

        digest = hashlib.sha256()
        for part in (type(tokenizer).__qualname__, tokenizers.__version__, backend.to_str()):
            digest.update(part.encode("utf-8"))
            digest.update(b"\0")
        fingerprint = digest.hexdigest()[:16]
    try:
        _FINGERPRINTS[tokenizer] = fingerprint
    except TypeError:  # not weakly referenceable: recomputed next time
        pass
    return fingerprint


class TokenCache:
    """Token ids ``[n_tokens]`` (int64) of texts under one tokenizer, stored in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def encode(self, texts: Sequence[str], tokenizer: object) -> list[np.ndarray]:
        """The ids of each text without special tokens, in order; the misses tokenized in one batch and stored.

        Args:
            texts: the documents' texts.
            tokenizer: a Hugging Face tokenizer.

        Returns:
            one int64 array ``[n_tokens_d]`` per text.
        """
        fingerprint = tokenizer_fingerprint(tokenizer)
        if fingerprint is None:
            return encode(texts, tokenizer)
        folder = self.directory / fingerprint
        paths = [folder / f"{hashlib.sha256(text.encode('utf-8')).hexdigest()}.npy" for text in texts]
        found: list[np.ndarray | None] = [_load(path) for path in paths]
        missing = [i for i, ids in enumerate(found) if ids is None]
        for i, ids in zip(missing, encode([texts[i] for i in missing], tokenizer)):
            found[i] = ids
            buffer = io.BytesIO()
            np.save(buffer, ids.astype(np.uint32) if ids.size == 0 or ids.max() < 2**32 else ids)
            try:
                atomic_write(paths[i], buffer.getvalue())
            except OSError:  # a read-only data directory: the ids are used, only not kept
                pass
        return [np.asarray(ids, dtype=np.int64) for ids in found]  # type: ignore[arg-type]


def token_cache(data_dir: Path | None = None) -> TokenCache:
    """The data directory's token cache, ``<data>/cache/tokens``."""
    return TokenCache((Path(data_dir) if data_dir is not None else default_data_dir()) / "cache" / "tokens")


def encode(texts: Sequence[str], tokenizer: object) -> list[np.ndarray]:
    """Tokenize ``texts`` in one call without special tokens; one int64 array per text."""
    if not texts:
        return []
    # verbose=False: documents are longer than the model's context on purpose; windows cut them later.
    if len(texts) == 1:  # one text as one string, as the authors' scripts call it (the same ids as a batch of one)
        return [np.asarray(tokenizer(texts[0], add_special_tokens=False, verbose=False)["input_ids"],  # type: ignore[operator]
                           dtype=np.int64)]
    encoded = tokenizer(list(texts), add_special_tokens=False, verbose=False)  # type: ignore[operator]
    return [np.asarray(ids, dtype=np.int64) for ids in encoded["input_ids"]]


def _load(path: Path) -> np.ndarray | None:
    """The stored ids, or ``None`` when absent or unreadable (a damaged file is recomputed and replaced)."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
