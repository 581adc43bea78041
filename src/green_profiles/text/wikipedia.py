"""A sample of English Wikipedia that installs offline: the 2016 dump inside the ``gensim`` wheel.

The wheel ships ``enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2``
(206 pages) as test data; gensim's ``segment_wiki`` turns it into titled sections,
and :func:`wikipedia_documents` keeps only their plain prose, one document per
article. Real Wikipedia text, but not WikiText (which is tokenized and filtered
differently): it is named ``"Wikipedia 2016 sample (gensim test dump)"``.
"""

from __future__ import annotations

import bz2
import importlib.metadata
import os
import re
from pathlib import Path

from green_profiles.text.documents import Document, FetchedSource, SourceUnavailable
from green_profiles.files.locations import file_sha256

WIKIPEDIA_SOURCE = "Wikipedia 2016 sample (gensim test dump)"
GENSIM_DUMP = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"

# Sections that are lists of sources or links, not prose.
_WIKI_SKIPPED_SECTIONS = {
    "references", "notes", "see also", "external links", "further reading", "bibliography",
    "footnotes", "sources", "gallery", "citations", "notes and references", "references and notes",
    "works cited", "selected bibliography", "selected works", "list of works", "publications",
}  # fmt: skip
_WIKI_HEADING = re.compile(r"^=+.*=+$")
_WIKI_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*$")
_WIKI_MIN_WORDS = 4
_DISAMBIGUATION = re.compile(r"\{\{\s*(disambig\w*|dab|hndis|geodis|set index article)\s*[|}]", re.IGNORECASE)


def fetch_wikipedia(data_dir: Path) -> FetchedSource:
    """The prose articles of the dump inside the installed gensim package (``data_dir`` is not needed)."""
    try:
        version = importlib.metadata.version("gensim")
    except importlib.metadata.PackageNotFoundError:
        raise SourceUnavailable(
            "the gensim package is not installed; pip install gensim (it ships the dump and segment_wiki)"
        ) from None
    dump = Path(importlib.metadata.distribution("gensim").locate_file(GENSIM_DUMP))
    if not dump.is_file():
        raise SourceUnavailable(f"gensim {version} is installed but {dump} is missing; reinstall it")
    documents, counts = wikipedia_documents(dump)
    record = {
        "kind": "pypi-wheel",
        "package": "gensim",
        "version": version,
        "file": GENSIM_DUMP,
        "sha256": file_sha256(dump),
    }
    return FetchedSource(record, {"wikipedia": documents}, {"wikipedia": counts})


def wikipedia_documents(dump: Path) -> tuple[list[Document], dict[str, int]]:
    """Plain-prose articles of a MediaWiki ``.xml.bz2`` dump, and counts of what was dropped.

    gensim's ``segment_wiki`` drops redirects, other namespaces and stubs under 200
    characters, and strips the markup; what its ``filter_wiki`` leaves of lists,
    tables, sub-headings, image captions and bold/italic quotes is removed here,
    keeping only paragraphs that read as sentences (at least four words, ending in
    ``.``, ``!`` or ``?``). Disambiguation pages (found by their templates in the
    raw wikitext) are left out.
    """
    from gensim.scripts.segment_wiki import segment_all_articles

    pages, disambiguation = _scan_dump(dump)
    workers = max(1, min(4, (os.cpu_count() or 2) - 1))
    documents, segmented, skipped_empty = [], 0, 0
    for title, sections in segment_all_articles(str(dump), workers=workers):
        segmented += 1
        if title in disambiguation:
            continue
        paragraphs = [
            paragraph
            for heading, body in sections
            if _normalize_heading(heading) not in _WIKI_SKIPPED_SECTIONS
            for paragraph in _wiki_prose(body)
        ]
        if not paragraphs:
            skipped_empty += 1
            continue
        documents.append(Document("\n\n".join(paragraphs), title, WIKIPEDIA_SOURCE))
    counts = {
        "pages_in_dump": pages["pages"],
        "redirects_in_dump": pages["redirects"],
        "articles_segmented": segmented,
        "disambiguation_pages_dropped": len(disambiguation),
        "articles_without_prose_dropped": skipped_empty,
    }
    return documents, counts


def _scan_dump(dump: Path) -> tuple[dict[str, int], set[str]]:
    """Page and redirect counts, and the titles of disambiguation pages, from the raw XML."""
    from xml.etree import ElementTree

    counts = {"pages": 0, "redirects": 0}
    disambiguation = set()
    with bz2.open(dump, "rb") as stream:
        for _, element in ElementTree.iterparse(stream):
            if not element.tag.endswith("}page"):
                continue
            counts["pages"] += 1
            if element.find("./{*}redirect") is not None:
                counts["redirects"] += 1
            else:
                text = element.findtext("./{*}revision/{*}text") or ""
                if _DISAMBIGUATION.search(text):
                    disambiguation.add(element.findtext("./{*}title") or "")
            element.clear()
    return counts, disambiguation


def _normalize_heading(heading: str) -> str:
    return re.sub(r"<!--.*?-->", "", heading).strip().lower()


def _wiki_prose(section: str) -> list[str]:
    """The prose paragraphs of one ``filter_wiki``-ed section (one paragraph per line)."""
    paragraphs = []
    for line in section.split("\n"):
        line = line.replace("'''", "").replace("''", "").strip()  # bold and italic quotes
        # Headings, list items, definition lines and table rows are not prose.
        if not line or _WIKI_HEADING.match(line) or line[0] in "*#:;!|{}=" or "|" in line:
            continue
        if "File:" in line or "Image:" in line:
            continue
        line = re.sub(r"\(\s*[,;]?\s*\)", "", line)  # parentheses emptied by removed templates
        line = re.sub(r"\s+([,.;:!?)])", r"\1", line)
        line = re.sub(r"\(\s+", "(", line)
        line = re.sub(r"\s{2,}", " ", line).strip()
        if len(line.split()) >= _WIKI_MIN_WORDS and _WIKI_SENTENCE_END.search(line):
            paragraphs.append(line)
    return paragraphs


