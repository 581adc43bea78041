"""A corpus is an ordered list of documents: the :class:`Document`, the corpus' identity
(:func:`corpus_checksum`), and the errors and hand-over type every source module shares."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

CHECKSUM_SCHEME = b"green_profiles.corpus_checksum/1\n"


class CorpusUnavailableError(RuntimeError):
    """The corpus is neither prepared, cached nor reachable from this machine."""


class SourceUnavailable(Exception):
    """An expected failure to fetch one offline source (no apt-get, no network, ...)."""


@dataclass(frozen=True)
class Document:
    """One contiguous text: a chapter, an article, a book or a file.

    ``title`` names the document (e.g. ``"Emma, Volume I, Chapter III"``), ``source``
    the corpus or book it belongs to (e.g. ``"Emma"``).
    """

    text: str
    title: str
    source: str


@dataclass(frozen=True)
class FetchedSource:
    """One offline source, fetched and cleaned, before anything is written.

    ``record`` says where it came from (kind, package, version, downloaded file and
    its sha256) and becomes the source's manifest record; ``corpora`` maps each
    corpus the source yields to its documents; ``details`` adds fields (counts,
    ebook numbers) to that corpus' manifest entry.
    """

    record: dict[str, object]
    corpora: dict[str, list[Document]]
    details: dict[str, dict[str, object]] = field(default_factory=dict)


def corpus_checksum(documents: Sequence[Document]) -> str:
    """The corpus' identity: hex SHA-256 of the documents' titles and texts, in order.

    Each title and each text enters as its UTF-8 length (8 bytes, big-endian)
    followed by its bytes, after a scheme tag, so no two different lists of
    (title, text) pairs hash the same input: a changed character, a moved
    paragraph boundary between title and text, or a different document order all
    give a different checksum. ``source`` is not part of it (it names where a text
    came from, not what it says). Anything that changes what a run reads (another
    file, the Botchan fallback, a new cleaning) changes the checksum; whatever
    leaves every text and title as it was (a new manifest format) does not.
    """
    digest = hashlib.sha256(CHECKSUM_SCHEME)
    for document in documents:
        for part in (document.title, document.text):
            data = part.encode("utf-8")
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)
    return digest.hexdigest()
