"""A corpus split into training and held-out documents, for the models trained here.

The split is decided per document from a hash of the seed and the document's title,
so it is deterministic, independent of the documents' order, and a document keeps
its side when others are added or removed. The held-out side is what trained models
are measured and evaluated on (``gutenberg-heldout``); the training side is all they
ever read (``gutenberg-train``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from green_profiles.text.documents import Document

# The seed and held-out share of the split: part of every trained model's record and of the held-out corpus'
# checksum (through its documents). Changing them changes which text counts as unseen.
SPLIT_SEED = 20260601
HELDOUT_FRACTION = 0.15
# Split corpus name -> (the corpus it splits, the side).
SPLIT_CORPORA: dict[str, tuple[str, str]] = {
    "gutenberg-train": ("gutenberg", "train"),
    "gutenberg-heldout": ("gutenberg", "heldout"),
}


def is_heldout(document: Document, *, fraction: float = HELDOUT_FRACTION, seed: int = SPLIT_SEED) -> bool:
    """Whether ``document`` is on the held-out side: the first 8 bytes of SHA-256(seed, title) as a
    uniform number in [0, 1) below ``fraction``. Titles are unique within a corpus (chapters)."""
    digest = hashlib.sha256(f"{seed}\0{document.title}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < fraction


def split_documents(documents: Sequence[Document], *, fraction: float = HELDOUT_FRACTION,
                    seed: int = SPLIT_SEED) -> tuple[list[Document], list[Document]]:
    """``(train, heldout)``: the documents of each side, in their original order.

    Raises:
        ValueError: ``fraction`` outside (0, 1), or a side left empty.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must lie in (0, 1), got {fraction}")
    train, heldout = [], []
    for document in documents:
        (heldout if is_heldout(document, fraction=fraction, seed=seed) else train).append(document)
    if not train or not heldout:
        raise ValueError(f"splitting {len(documents)} documents at {fraction} left a side empty")
    return train, heldout


def split_side(documents: Sequence[Document], side: str) -> list[Document]:
    """The ``"train"`` or ``"heldout"`` side of the split of ``documents``."""
    train, heldout = split_documents(documents)
    if side not in ("train", "heldout"):
        raise ValueError(f"side must be 'train' or 'heldout', got {side!r}")
    return train if side == "train" else heldout
