"""Project Gutenberg text made clean: the licence and editorial matter removed, hard wraps joined,
one document per chapter.

The cleaning (:func:`strip_gutenberg_boilerplate` and the paragraph rules) is shared by
the three novels; each has its own chapter splitter: Jane Austen's six novels
(:func:`split_austen_chapters`, lines as janeaustenr stores them), *Moby Dick*
(:func:`split_moby_dick_chapters`, Gutenberg #2701) and *Botchan*
(:func:`split_botchan_chapters`, Gutenberg #8868). Botchan is also fetched here,
from the ``sentencepiece`` source distribution on PyPI (:func:`fetch_botchan`); the
Debian packages that carry the other two are read in :mod:`.debian`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

from green_profiles.text.documents import Document, FetchedSource, SourceUnavailable
from green_profiles.files.locations import file_sha256
from green_profiles.files.storage import atomic_write

SENTENCEPIECE_VERSION = "0.2.3"
MOBY_DICK = "Moby Dick; or The Whale"
BOTCHAN = "Botchan (Master Darling)"

# --- cleaning shared by every novel ------------------------------------------------------

_GUTENBERG_START = re.compile(r"^\s*\*{3}\s*START OF (THIS|THE) PROJECT GUTENBERG", re.IGNORECASE)
_GUTENBERG_END = re.compile(
    r"^\s*(\*{3}\s*END OF (THIS|THE) PROJECT GUTENBERG|End of (the )?Project Gutenberg)", re.IGNORECASE
)
_SCENE_BREAK = re.compile(r"^[\s*]+$")  # "* * * * *" and "***" between scenes
_EDITORIAL_NOTE = re.compile(r"^\[.*\b(edition|editions|volume)\b.*\]?$", re.IGNORECASE | re.DOTALL)
_BOOK_END = re.compile(r"^\s*(-*\(?)?\s*(THE END|FINIS)\s*(\)?-*)?\s*$", re.IGNORECASE)
_ITALICS = re.compile(r"_(\S(?:[^_\n]*?\S)?)_")


def strip_gutenberg_boilerplate(lines: list[str]) -> list[str]:
    """The lines between ``*** START OF ... ***`` and the ``End of ...`` / ``*** END OF`` line.

    Everything outside (header, licence, donation text) is Project Gutenberg's, not
    the book's. Texts without the markers come back unchanged.
    """
    start = next((i + 1 for i, line in enumerate(lines) if _GUTENBERG_START.match(line)), 0)
    end = next((i for i in range(start, len(lines)) if _GUTENBERG_END.match(lines[i])), len(lines))
    return lines[start:end]


def _paragraphs(lines: Iterable[str]) -> list[str]:
    """Blank-line-separated blocks of hard-wrapped lines as single-line paragraphs."""
    paragraphs, current = [], []
    for line in [*lines, ""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return paragraphs


def _clean_paragraphs(paragraphs: Iterable[str]) -> str:
    """Drop scene breaks, editorial notes and end marks; undo ``_italics_``; join with blank lines."""
    kept = []
    for paragraph in paragraphs:
        paragraph = re.sub(r"\s+", " ", _ITALICS.sub(r"\1", paragraph)).strip()
        if not paragraph or _SCENE_BREAK.match(paragraph) or _BOOK_END.match(paragraph):
            continue
        if _EDITORIAL_NOTE.match(paragraph):
            continue
        kept.append(paragraph)
    return "\n\n".join(kept)


_AUSTEN_CHAPTER = re.compile(r"^\s*chapter\s+([0-9]+|[ivxlc]+)\.?\s*$", re.IGNORECASE)
_AUSTEN_VOLUME = re.compile(r"^\s*volume\s+([ivx]+|[0-9]+)\.?\s*$", re.IGNORECASE)
# Editions' afterwords that are not Austen's (Northanger Abbey ends with the Signet note on the text).
_AUSTEN_AFTERWORD = re.compile(r"^\s*A NOTE ON THE TEXT\s*$")


def split_austen_chapters(lines: list[str], book: str) -> list[Document]:
    """One document per chapter of a janeaustenr novel (a character vector of lines).

    Title pages and prefaces before the first chapter are left out; volume headings
    (Emma) go into the titles, e.g. ``"Emma, Volume II, Chapter IV"``.
    """
    lines = strip_gutenberg_boilerplate(lines)
    cut = next((i for i, line in enumerate(lines) if _AUSTEN_AFTERWORD.match(line)), len(lines))
    documents: list[Document] = []
    volume, heading, body = None, None, []

    def close() -> None:
        if heading is not None:
            text = _clean_paragraphs(_paragraphs(body))
            if text:
                documents.append(Document(text, heading, book))

    for line in lines[:cut]:
        if match := _AUSTEN_VOLUME.match(line):
            volume = match.group(1).upper()
            continue
        if match := _AUSTEN_CHAPTER.match(line):
            close()
            where = f", Volume {volume}" if volume else ""
            heading, body = f"{book}{where}, Chapter {match.group(1).upper()}", []
            continue
        body.append(line)
    close()
    return documents


_MOBY_CHAPTER = re.compile(r"^CHAPTER (\d+)\. ")
_MOBY_EPILOGUE = re.compile(r"^Epilogue\s*$")


def split_moby_dick_chapters(text: str) -> list[Document]:
    """One document per chapter of Moby Dick (Gutenberg #2701), plus the Epilogue.

    The front matter (transcriber's notes, "Etymology" and "Extracts", lists of
    quotations rather than narrative) is left out. Chapter headings may wrap onto a
    second line; the whole heading becomes the title.
    """
    lines = strip_gutenberg_boilerplate(text.replace("\r\n", "\n").split("\n"))
    documents: list[Document] = []
    heading: str | None = None
    body: list[str] = []
    in_heading = False

    def close() -> None:
        if heading is not None:
            content = _clean_paragraphs(_paragraphs(body))
            if content:
                title = "Moby Dick, " + heading.replace("CHAPTER", "Chapter", 1)
                documents.append(Document(content, title, MOBY_DICK))

    for line in lines:
        if _MOBY_CHAPTER.match(line) or _MOBY_EPILOGUE.match(line):
            close()
            heading, body, in_heading = line.strip(), [], True
            continue
        if in_heading:
            if line.strip():
                heading = f"{heading} {line.strip()}"
                continue
            in_heading = False
        if heading is not None:
            body.append(line)
    close()
    return documents


# --- sentencepiece sdist: Botchan ------------------------------------------------------

# --- Botchan, from the sentencepiece sdist ------------------------------------------------

_BOTCHAN_CHAPTER = re.compile(r"^CHAPTER ([IVXL]+)\.?\s*$")
_BOTCHAN_NOTE_MARK = re.compile(r"\s?\[[A-Z]\]")  # the transcriber's "[A]" markers
# Botchan's text lost its blank lines; paragraphs are recovered from the line length
# (wrapped lines run to ~70 columns, a paragraph's last line usually stops short).
_BOTCHAN_FULL_LINE = 60


def fetch_botchan(data_dir: Path) -> FetchedSource:
    """Botchan by chapter, from ``test/botchan.txt`` of the sentencepiece sdist (kept under ``raw/``)."""
    raw_dir = Path(data_dir) / "raw"
    sdist = raw_dir / f"sentencepiece-{SENTENCEPIECE_VERSION}.tar.gz"
    if not sdist.is_file():
        with tempfile.TemporaryDirectory(prefix="green-profiles-pip-") as scratch:
            result = subprocess.run([
                sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                "--no-deps", "--no-binary", ":all:", f"sentencepiece=={SENTENCEPIECE_VERSION}", "-d", scratch,
            ], capture_output=True, text=True, check=False)  # fmt: skip
            downloaded = Path(scratch) / sdist.name
            if result.returncode != 0 or not downloaded.is_file():
                message = (result.stderr.strip().splitlines() or ["no file written"])[-1]
                raise SourceUnavailable(f"pip download sentencepiece=={SENTENCEPIECE_VERSION} failed: {message}")
            atomic_write(sdist, downloaded.read_bytes())
    member = f"sentencepiece-{SENTENCEPIECE_VERSION}/test/botchan.txt"
    with tarfile.open(sdist, "r:gz") as archive:
        raw = archive.extractfile(member).read().decode("utf-8-sig")  # type: ignore[union-attr]
    record = {
        "kind": "pypi-sdist",
        "package": "sentencepiece",
        "version": SENTENCEPIECE_VERSION,
        "file": f"raw/{sdist.name}",
        "sha256": file_sha256(sdist),
        "member": member,
    }
    return FetchedSource(record, {"botchan": split_botchan_chapters(raw)}, {"botchan": {"gutenberg_ebook": 8868}})

def split_botchan_chapters(text: str) -> list[Document]:
    """One document per chapter of Botchan (Gutenberg #8868) as shipped by sentencepiece.

    The translator's preface, the transcriber's ``[A]`` markers and their list of
    corrections are left out.
    """
    lines = strip_gutenberg_boilerplate(text.replace("\r\n", "\n").split("\n"))
    documents: list[Document] = []
    heading: str | None = None
    body: list[str] = []

    def close() -> None:
        if heading is None:
            return
        paragraphs, current = [], []
        for line in body:
            if re.match(r"^\[[A-Z]:", line):  # the transcriber's corrections list starts
                break
            current.append(line.strip())
            if len(line.rstrip()) < _BOTCHAN_FULL_LINE:
                paragraphs.append(" ".join(current))
                current = []
        paragraphs.append(" ".join(current))
        content = _clean_paragraphs(_BOTCHAN_NOTE_MARK.sub("", p) for p in paragraphs)
        if content:
            documents.append(Document(content, f"Botchan, Chapter {heading}", BOTCHAN))

    for line in lines:
        if match := _BOTCHAN_CHAPTER.match(line.strip()):
            close()
            heading, body = match.group(1), []
        elif heading is not None and line.strip():
            body.append(line)
    close()
    return documents
