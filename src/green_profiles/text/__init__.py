"""Real text to measure on: offline corpora first, hub corpora where there is internet.

Names understood by :func:`load_corpus`:

``gutenberg``
    Project Gutenberg novels, one :class:`Document` per chapter: Jane Austen's
    six novels (Debian ``r-cran-janeaustenr``) and Melville's *Moby Dick*
    (Gutenberg #2701, the ``mobydick`` object of Debian ``r-cran-tokenizers``).
    Where the Debian packages cannot be had, Natsume's *Botchan* (Gutenberg
    #8868, shipped in the ``sentencepiece`` source distribution) stands in.
    Licence, header, footer, title pages and editorial notes are removed;
    hard-wrapped lines are joined into paragraphs separated by a blank line.
``wikipedia``
    "Wikipedia 2016 sample (gensim test dump)": the 2016 English Wikipedia
    dump shipped as test data in the ``gensim`` wheel, segmented with
    gensim's ``segment_wiki`` and cleaned to plain prose (no headings, lists,
    tables, captions or reference sections), one :class:`Document` per
    article; redirects and disambiguation pages are left out. This is real
    Wikipedia text, not WikiText.
``wikitext-103``
    WikiText-103 (``Salesforce/wikitext``, ``wikitext-103-raw-v1``) from the
    Hugging Face hub, split into articles at the top-level ``= Title =`` lines,
    with WikiText's ``@-@``, ``@,@`` and ``@.@`` number/hyphen splitting undone.
``paper-gutenberg``
    the paper's own Gutenberg corpus: the authors' document file of 1,500 long
    English books (at least 2,000 characters each), read from
    ``<data>/corpora/paper-gutenberg.jsonl``, or built there the first time (:mod:`.paper`):
    streamed from the hub, or without it read from a source's copy in the local datasets
    cache. Put the authors' file there to measure on it offline.
``gutenberg-train``, ``gutenberg-heldout``
    the two sides of a seeded split of ``gutenberg`` by chapter (:mod:`.splits`): the models
    trained here (:mod:`green_profiles.models.training`) read only the first and are measured and
    evaluated on the second.
``pg19``
    PG-19 from the hub (the parquet copy ``emozilla/pg19`` of ``deepmind/pg19``,
    a loading-script dataset that ``datasets`` >= 4 refuses), one
    :class:`Document` per book.
a path ending in ``.txt`` or ``.jsonl``
    a whole ``.txt`` file is one document; a ``.jsonl`` file has one document
    per line with a ``text`` field and optional ``title`` and ``source``.

The offline corpora are prepared once by :func:`prepare_offline_data` into
``<data_dir>/corpora/<name>.jsonl`` (one JSON document per line), with a
``manifest.json`` recording where each came from: package, version, sha256 of
the downloaded file and counts. :func:`corpus_checksum` is a corpus' identity
(what a stored run was measured on).

One module per source or idea: :mod:`.documents` (the document, the checksum),
:mod:`.debian` (Debian R packages), :mod:`.gutenberg` (Gutenberg cleaning and
chapters; Botchan), :mod:`.wikipedia` (the gensim dump), :mod:`.hub` (WikiText-103,
PG-19), :mod:`.local` (.txt / .jsonl files), :mod:`.paper` (the paper's Gutenberg document file), :mod:`.splits` (train / held-out), :mod:`.preparation` (preparing,
the manifest, loading the prepared files).
"""

from __future__ import annotations

import os
from pathlib import Path

from green_profiles.text.debian import AUSTEN_BOOKS, DEBIAN_PACKAGES, read_r_lazyload
from green_profiles.text.documents import CorpusUnavailableError, Document, corpus_checksum
from green_profiles.text.gutenberg import (
    BOTCHAN,
    MOBY_DICK,
    SENTENCEPIECE_VERSION,
    split_austen_chapters,
    split_botchan_chapters,
    split_moby_dick_chapters,
    strip_gutenberg_boilerplate,
)
from green_profiles.text.hub_corpora import load_pg19, load_wikitext_103, split_wikitext_articles
from green_profiles.text.local import LOCAL_SUFFIXES, load_local_file, read_jsonl
from green_profiles.text.paper import PAPER_GUTENBERG, load_paper_gutenberg
from green_profiles.text.preparation import PREPARATION_VERSION, load_offline, prepare_offline_data
from green_profiles.text.splits import SPLIT_CORPORA, split_documents, split_side
from green_profiles.text.wikipedia import GENSIM_DUMP, WIKIPEDIA_SOURCE, wikipedia_documents
from green_profiles.files.locations import default_data_dir

__all__ = [
    "AUSTEN_BOOKS", "BOTCHAN", "CORPORA", "DEBIAN_PACKAGES", "GENSIM_DUMP", "HUB_CORPORA", "MOBY_DICK",
    "OFFLINE_CORPORA", "PREPARATION_VERSION", "SENTENCEPIECE_VERSION", "SPLIT_CORPORA", "WIKIPEDIA_SOURCE",
    "CorpusUnavailableError", "Document", "corpus_checksum", "load_corpus", "prepare_offline_data",
    "read_jsonl", "read_r_lazyload", "split_austen_chapters", "split_botchan_chapters", "split_documents",
    "split_moby_dick_chapters", "split_side", "split_wikitext_articles", "strip_gutenberg_boilerplate",
    "wikipedia_documents",
]  # fmt: skip

OFFLINE_CORPORA = ("gutenberg", "wikipedia")
HUB_CORPORA = ("paper-gutenberg", "wikitext-103", "pg19")
CORPORA = OFFLINE_CORPORA + HUB_CORPORA


def load_corpus(
    name: str | os.PathLike[str], data_dir: Path | None = None, *, split: str = "test"
) -> list[Document]:
    """Load a corpus as a list of documents (see the module docstring for the names).

    Args:
        name: ``"gutenberg"``, ``"wikipedia"``, ``"paper-gutenberg"``, ``"wikitext-103"``, ``"pg19"``, or the
            path of a ``.txt`` / ``.jsonl`` file.
        data_dir: where offline corpora are prepared (default
            :func:`green_profiles.files.locations.default_data_dir`); prepared on first use.
        split: the split of a hub corpus (``"train"``, ``"validation"`` or ``"test"``);
            ignored by the others.

    Raises:
        CorpusUnavailableError: a hub corpus is not cached and the hub is unavailable
            (the message says why), or no offline source could be prepared.
        ValueError: an unknown name.
    """
    key = os.fspath(name)
    if key in SPLIT_CORPORA:
        whole, side = SPLIT_CORPORA[key]
        return split_side(load_corpus(whole, data_dir), side)
    if key in OFFLINE_CORPORA:
        return load_offline(key, Path(data_dir) if data_dir is not None else default_data_dir())
    if key == PAPER_GUTENBERG:
        return load_paper_gutenberg(Path(data_dir) if data_dir is not None else default_data_dir())
    if key == "wikitext-103":
        return load_wikitext_103(split)
    if key == "pg19":
        return load_pg19(split)
    if Path(key).suffix in LOCAL_SUFFIXES:
        return load_local_file(Path(key))
    valid = ", ".join(repr(n) for n in (*CORPORA, *SPLIT_CORPORA))
    raise ValueError(f"unknown corpus {key!r}: use one of {valid}, or the path of a .txt or .jsonl file")
