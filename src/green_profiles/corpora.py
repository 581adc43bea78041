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
``pg19``
    PG-19 (``deepmind/pg19``) from the hub, one :class:`Document` per book.
a path ending in ``.txt`` or ``.jsonl``
    a whole ``.txt`` file is one document; a ``.jsonl`` file has one document
    per line with a ``text`` field and optional ``title`` and ``source``.

The offline corpora are prepared once by :func:`prepare_offline_data` into
``<data_dir>/corpora/<name>.jsonl`` (one JSON document per line), with a
``manifest.json`` recording where each came from: package, version, sha256 of
the downloaded file and counts.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import importlib.metadata
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from green_profiles.locations import default_data_dir, file_sha256, hub_reachable

# Bump when the cleaning changes: prepared files from an older version are rebuilt.
PREPARATION_VERSION = 2

WIKIPEDIA_SOURCE = "Wikipedia 2016 sample (gensim test dump)"
SENTENCEPIECE_VERSION = "0.2.3"
GENSIM_DUMP = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
DEBIAN_PACKAGES = {"janeaustenr": "r-cran-janeaustenr", "tokenizers": "r-cran-tokenizers"}

AUSTEN_BOOKS: dict[str, str] = {  # janeaustenr object name -> title, in publication order
    "sensesensibility": "Sense and Sensibility",
    "prideprejudice": "Pride and Prejudice",
    "mansfieldpark": "Mansfield Park",
    "emma": "Emma",
    "northangerabbey": "Northanger Abbey",
    "persuasion": "Persuasion",
}
MOBY_DICK = "Moby Dick; or The Whale"
BOTCHAN = "Botchan (Master Darling)"

OFFLINE_CORPORA = ("gutenberg", "wikipedia")
HUB_CORPORA = ("wikitext-103", "pg19")
CORPORA = OFFLINE_CORPORA + HUB_CORPORA


class CorpusUnavailableError(RuntimeError):
    """The corpus is neither prepared, cached nor reachable from this machine."""


class _SourceUnavailable(Exception):
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


# --------------------------------------------------------------------------- loading


def load_corpus(
    name: str | os.PathLike[str], data_dir: Path | None = None, *, split: str = "test"
) -> list[Document]:
    """Load a corpus as a list of documents (see the module docstring for the names).

    Args:
        name: ``"gutenberg"``, ``"wikipedia"``, ``"wikitext-103"``, ``"pg19"``, or the
            path of a ``.txt`` / ``.jsonl`` file.
        data_dir: where offline corpora are prepared (default
            :func:`green_profiles.locations.default_data_dir`); prepared on first use.
        split: the split of a hub corpus (``"train"``, ``"validation"`` or ``"test"``);
            ignored by the others.

    Raises:
        CorpusUnavailableError: a hub corpus is not cached and the hub is unreachable,
            or no offline source could be prepared.
        ValueError: an unknown name.
    """
    key = os.fspath(name)
    if key in OFFLINE_CORPORA:
        return _load_offline(key, Path(data_dir) if data_dir is not None else default_data_dir())
    if key == "wikitext-103":
        return _load_wikitext_103(split)
    if key == "pg19":
        return _load_pg19(split)
    path = Path(key)
    if path.suffix in (".txt", ".jsonl"):
        if not path.is_file():
            raise FileNotFoundError(f"corpus file {path} does not exist")
        return _read_text_file(path) if path.suffix == ".txt" else read_jsonl(path)
    valid = ", ".join(repr(n) for n in CORPORA)
    raise ValueError(f"unknown corpus {key!r}: use one of {valid}, or the path of a .txt or .jsonl file")


def read_jsonl(path: Path) -> list[Document]:
    """Documents from a JSON-lines file: ``text`` required, ``title`` and ``source`` optional."""
    documents = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f"{path}, line {number}: expected a JSON object with a string 'text' field")
            title = record.get("title") or f"{path.stem}:{number}"
            documents.append(Document(record["text"], str(title), str(record.get("source") or path.name)))
    return documents


def _read_text_file(path: Path) -> list[Document]:
    return [Document(path.read_text(encoding="utf-8").strip(), path.stem, path.name)]


def _load_offline(name: str, data_dir: Path) -> list[Document]:
    wanted = {"gutenberg": ("austen", "moby-dick"), "wikipedia": ("wikipedia",)}[name]
    available = _prepared_corpora(data_dir)
    if not all(corpus in available for corpus in wanted):
        prepare_offline_data(data_dir)
        available = _prepared_corpora(data_dir)
    if all(corpus in available for corpus in wanted):
        return [doc for corpus in wanted for doc in read_jsonl(available[corpus])]
    if name == "gutenberg" and "botchan" in available:
        warnings.warn(
            "the Debian packages r-cran-janeaustenr / r-cran-tokenizers could not be had here; "
            "'gutenberg' falls back to Botchan (Gutenberg #8868, from the sentencepiece sdist), ~60k tokens",
            stacklevel=3,
        )
        return read_jsonl(available["botchan"])
    raise CorpusUnavailableError(
        f"the offline corpus {name!r} could not be prepared in {data_dir}; see the warnings of "
        "prepare_offline_data for the reason (it needs apt-get for the Debian packages, pip for the "
        "sentencepiece sdist, and the gensim package for the Wikipedia sample)"
    )


def _prepared_corpora(data_dir: Path) -> dict[str, Path]:
    """Prepared corpus name -> file, for the files the manifest lists and that exist."""
    manifest = _read_manifest(_corpora_dir(data_dir))
    if manifest.get("preparation_version") != PREPARATION_VERSION:
        return {}
    found = {}
    for record in manifest.get("sources", {}).values():
        for corpus, entry in record.get("corpora", {}).items():
            path = _corpora_dir(data_dir) / entry["file"]
            if path.is_file():
                found[corpus] = path
    return found


# --------------------------------------------------------------------------- preparation


def prepare_offline_data(data_dir: Path | None = None) -> dict:
    """Fetch and clean everything the offline corpora need; return the manifest.

    Writes ``<data_dir>/corpora/{austen,moby-dick,botchan,wikipedia}.jsonl`` and
    ``<data_dir>/corpora/manifest.json``; downloads are kept under ``<data_dir>/raw/``.
    Sources already prepared (same preparation version, output files present with
    the sha256 the manifest records) are skipped. Every file is written to a
    temporary name and renamed into place, and the manifest last, so an
    interrupted run leaves no half-written file and is simply redone.

    A source that cannot be had here (no ``apt-get``, no network) is reported with
    a warning and listed under ``"unavailable"`` in the returned dictionary (not in
    the manifest file); the others are still prepared.

    Returns:
        the manifest: ``{"preparation_version": int, "sources": {source: record}}``
        where each record names the package, version, downloaded file and its
        sha256, and ``"corpora"``: ``{name: {"file", "sha256", "documents",
        "characters", ...}}``; plus ``"unavailable": {source: reason}``.
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    corpora_dir = _corpora_dir(data_dir)
    corpora_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "raw").mkdir(parents=True, exist_ok=True)
    preparers: dict[str, Callable[[Path], dict]] = {
        "janeaustenr": _prepare_austen,
        "tokenizers": _prepare_moby_dick,
        "sentencepiece": _prepare_botchan,
        "gensim": _prepare_wikipedia,
    }
    unavailable: dict[str, str] = {}
    with _exclusive_lock(corpora_dir / ".prepare.lock"):
        _remove_leftovers(data_dir)
        manifest = _read_manifest(corpora_dir)
        if manifest.get("preparation_version") != PREPARATION_VERSION:
            manifest = {"preparation_version": PREPARATION_VERSION, "sources": {}}
        for source, prepare in preparers.items():
            if _source_is_complete(corpora_dir, manifest["sources"].get(source)):
                continue
            try:
                manifest["sources"][source] = prepare(data_dir)
            except _SourceUnavailable as reason:
                unavailable[source] = str(reason)
                warnings.warn(f"offline source {source!r} unavailable: {reason}", stacklevel=2)
                continue
            _write_atomic(corpora_dir / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return {**manifest, "unavailable": unavailable}


def _remove_leftovers(data_dir: Path) -> None:
    """Staging files and folders of an interrupted run (only ever hidden names, never results)."""
    for leftover in [*_corpora_dir(data_dir).glob(".*.part"), *(data_dir / "raw").glob(".*-*")]:
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _corpora_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "corpora"


def _read_manifest(corpora_dir: Path) -> dict:
    try:
        return json.loads((corpora_dir / "manifest.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _source_is_complete(corpora_dir: Path, record: dict | None) -> bool:
    if not record or not record.get("corpora"):
        return False
    for entry in record["corpora"].values():
        path = corpora_dir / entry["file"]
        if not path.is_file() or file_sha256(path) != entry["sha256"]:
            return False
    return True


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Serialize preparation between processes (e.g. notebooks run in parallel); POSIX only."""
    try:
        import fcntl
    except ImportError:  # Windows: os.replace still keeps every file whole
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomic(path: Path, content: str | bytes) -> None:
    data = content.encode("utf-8") if isinstance(content, str) else content
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(staging, 0o644)  # mkstemp creates 0600; prepared data is meant to be shared
        os.replace(staging, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
        raise


def _write_corpus(data_dir: Path, corpus: str, documents: list[Document], **extra: object) -> dict:
    """Write one prepared corpus file atomically; return its manifest entry."""
    if not documents:
        raise RuntimeError(f"preparing {corpus!r} produced no documents: the cleaning no longer fits the source")
    lines = [
        json.dumps({"text": doc.text, "title": doc.title, "source": doc.source}, ensure_ascii=False)
        for doc in documents
    ]
    path = _corpora_dir(data_dir) / f"{corpus}.jsonl"
    _write_atomic(path, "\n".join(lines) + "\n")
    return {
        "file": path.name,
        "sha256": file_sha256(path),
        "documents": len(documents),
        "characters": sum(len(doc.text) for doc in documents),
        **extra,
    }



def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


# --- Debian packages: Austen and Moby Dick -----------------------------------------


def _prepare_austen(data_dir: Path) -> dict:
    record, objects = _debian_r_data(data_dir, DEBIAN_PACKAGES["janeaustenr"], "janeaustenr")
    documents = []
    chapters = {}
    for key, book in AUSTEN_BOOKS.items():
        book_chapters = split_austen_chapters(_lines_of(objects[key]), book)
        chapters[book] = len(book_chapters)
        documents.extend(book_chapters)
    record["corpora"] = {"austen": _write_corpus(data_dir, "austen", documents, chapters_per_book=chapters)}
    return record


def _prepare_moby_dick(data_dir: Path) -> dict:
    record, objects = _debian_r_data(data_dir, DEBIAN_PACKAGES["tokenizers"], "tokenizers")
    text = "\n".join(_lines_of(objects["mobydick"]))
    documents = split_moby_dick_chapters(text)
    record["corpora"] = {"moby-dick": _write_corpus(data_dir, "moby-dick", documents, gutenberg_ebook=2701)}
    return record


def _debian_r_data(data_dir: Path, package: str, r_package: str) -> tuple[dict, dict[str, object]]:
    """Download a Debian R package, unpack it, and read its lazy-load data objects."""
    deb = _apt_download(package, data_dir / "raw")
    fields = {}
    for field in ("Package", "Version"):
        result = _run(["dpkg-deb", "-f", str(deb), field])
        fields[field] = result.stdout.strip()
    with tempfile.TemporaryDirectory(prefix=f"{package}-") as scratch:
        unpacked = _run(["dpkg-deb", "-x", str(deb), scratch])
        if unpacked.returncode != 0:
            raise _SourceUnavailable(f"dpkg-deb -x {deb.name} failed: {unpacked.stderr.strip()}")
        objects = read_r_lazyload(Path(scratch) / "usr/lib/R/site-library" / r_package / "data" / "Rdata")
    record = {
        "kind": "debian",
        "package": fields["Package"] or package,
        "version": fields["Version"],
        "file": f"raw/{deb.name}",
        "sha256": file_sha256(deb),
        "parsed_with": f"rdata {importlib.metadata.version('rdata')}",
    }
    return record, objects


def _apt_download(package: str, raw_dir: Path) -> Path:
    """``apt-get download`` into ``raw_dir`` (after one ``apt-get update`` if the lists lack it)."""
    existing = sorted(raw_dir.glob(f"{package}_*.deb"))
    if existing:
        return existing[-1]
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise _SourceUnavailable("apt-get / dpkg-deb not found (not a Debian-based system)")
    with tempfile.TemporaryDirectory(prefix=".apt-", dir=raw_dir) as staging:
        result = _run(["apt-get", "download", package], cwd=Path(staging))
        if result.returncode != 0:
            # A fresh machine (e.g. a container) has no package lists yet.
            _run(["apt-get", "update"])
            result = _run(["apt-get", "download", package], cwd=Path(staging))
        debs = sorted(Path(staging).glob(f"{package}_*.deb"))
        if result.returncode != 0 or not debs:
            message = (result.stderr.strip().splitlines() or ["no .deb written"])[-1]
            raise _SourceUnavailable(f"apt-get download {package} failed: {message}")
        target = raw_dir / debs[-1].name
        os.replace(debs[-1], target)
    return target


def read_r_lazyload(base: Path) -> dict[str, object]:
    """All objects of an R lazy-load database ``base.rdx`` / ``base.rdb``, without R.

    The ``.rdx`` index is a gzip-compressed R serialization of a list whose
    ``variables`` maps each object name to ``(offset, length)`` in the ``.rdb``
    file; each entry there is a 4-byte big-endian uncompressed length followed by
    the compressed serialization (zlib; for compression types 2 and 3 a type byte
    first, then bzip2 or xz). Character vectors come back as numpy string arrays.
    """
    import rdata

    def unserialize(raw: bytes) -> object:
        with warnings.catch_warnings():
            # rdata cannot tell a bare serialization from an .rds file and says so.
            warnings.filterwarnings("ignore", message="Unknown file type")
            return rdata.conversion.convert(rdata.parser.parse_data(raw))

    index = unserialize(gzip.decompress(base.with_suffix(".rdx").read_bytes()))
    compression = int(index["compressed"][0])
    blob = base.with_suffix(".rdb").read_bytes()
    objects = {}
    for name, (offset, length) in index["variables"].items():
        entry = blob[int(offset) : int(offset) + int(length)]
        objects[str(name)] = unserialize(_decompress_r_entry(entry, compression))
    return objects


def _decompress_r_entry(entry: bytes, compression: int) -> bytes:
    """One ``.rdb`` entry: R's ``compress = 1`` is bare zlib, ``2``/``3`` carry a type byte."""
    (size,) = struct.unpack(">I", entry[:4])
    body = entry[4:]
    if compression in (2, 3):
        decompressors = {b"Z": zlib.decompress, b"2": bz2.decompress, b"X": lzma.decompress, b"0": bytes}
        data = decompressors[body[:1]](body[1:])
    else:
        data = zlib.decompress(body)
    if len(data) != size:
        raise ValueError(f"R lazy-load entry: expected {size} bytes, got {len(data)}")
    return data


def _lines_of(vector: object) -> list[str]:
    """An R character vector (numpy array) as a list of lines, CRLF and BOM removed."""
    lines = []
    for item in vector:  # type: ignore[attr-defined]
        text = item if isinstance(item, str) else ""
        lines.extend(text.replace("\ufeff", "").replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return lines


# --- Gutenberg cleaning ----------------------------------------------------------------

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

_BOTCHAN_CHAPTER = re.compile(r"^CHAPTER ([IVXL]+)\.?\s*$")
_BOTCHAN_NOTE_MARK = re.compile(r"\s?\[[A-Z]\]")  # the transcriber's "[A]" markers
# Botchan's text lost its blank lines; paragraphs are recovered from the line length
# (wrapped lines run to ~70 columns, a paragraph's last line usually stops short).
_BOTCHAN_FULL_LINE = 60


def _prepare_botchan(data_dir: Path) -> dict:
    raw_dir = data_dir / "raw"
    sdist = raw_dir / f"sentencepiece-{SENTENCEPIECE_VERSION}.tar.gz"
    if not sdist.is_file():
        with tempfile.TemporaryDirectory(prefix=".pip-", dir=raw_dir) as staging:
            result = _run([
                sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                "--no-deps", "--no-binary", ":all:", f"sentencepiece=={SENTENCEPIECE_VERSION}", "-d", staging,
            ])  # fmt: skip
            downloaded = Path(staging) / sdist.name
            if result.returncode != 0 or not downloaded.is_file():
                message = (result.stderr.strip().splitlines() or ["no file written"])[-1]
                raise _SourceUnavailable(f"pip download sentencepiece=={SENTENCEPIECE_VERSION} failed: {message}")
            os.replace(downloaded, sdist)
    member = f"sentencepiece-{SENTENCEPIECE_VERSION}/test/botchan.txt"
    with tarfile.open(sdist, "r:gz") as archive:
        raw = archive.extractfile(member).read().decode("utf-8-sig")  # type: ignore[union-attr]
    documents = split_botchan_chapters(raw)
    return {
        "kind": "pypi-sdist",
        "package": "sentencepiece",
        "version": SENTENCEPIECE_VERSION,
        "file": f"raw/{sdist.name}",
        "sha256": file_sha256(sdist),
        "member": member,
        "corpora": {"botchan": _write_corpus(data_dir, "botchan", documents, gutenberg_ebook=8868)},
    }


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


# --- gensim wheel: the Wikipedia sample ------------------------------------------------

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


def _prepare_wikipedia(data_dir: Path) -> dict:
    try:
        version = importlib.metadata.version("gensim")
    except importlib.metadata.PackageNotFoundError:
        raise _SourceUnavailable(
            "the gensim package is not installed; pip install gensim (it ships the dump and segment_wiki)"
        ) from None
    dump = Path(importlib.metadata.distribution("gensim").locate_file(GENSIM_DUMP))
    if not dump.is_file():
        raise _SourceUnavailable(f"gensim {version} is installed but {dump} is missing; reinstall it")
    documents, counts = wikipedia_documents(dump)
    return {
        "kind": "pypi-wheel",
        "package": "gensim",
        "version": version,
        "file": GENSIM_DUMP,
        "sha256": file_sha256(dump),
        "corpora": {"wikipedia": _write_corpus(data_dir, "wikipedia", documents, **counts)},
    }


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


# --------------------------------------------------------------------------- hub corpora

_WIKITEXT_TITLE = re.compile(r"^ = (?!=)(.*?) = $")
_WIKITEXT_SPLITS = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."))


def _load_wikitext_103(split: str) -> list[Document]:
    dataset = _load_hub_dataset("WikiText-103", "Salesforce/wikitext", "wikitext-103-raw-v1", split)
    return split_wikitext_articles(dataset["text"], source=f"WikiText-103 ({split})")


def split_wikitext_articles(lines: Iterable[str], source: str = "WikiText-103") -> list[Document]:
    """WikiText lines (one paragraph or heading per line) grouped into articles.

    An article starts at a top-level ``" = Title = "`` line (section headings are
    ``" = = Section = = "`` and stay in the text); WikiText's ``" @-@ "``,
    ``" @,@ "`` and ``" @.@ "`` splitting of hyphens and numbers is undone.
    """
    documents: list[Document] = []
    title: str | None = None
    body: list[str] = []

    def close() -> None:
        if title is not None:
            text = "".join(body).strip()
            for split, joined in _WIKITEXT_SPLITS:
                text = text.replace(split, joined)
            if text:
                documents.append(Document(text, title, source))

    for line in lines:
        if match := _WIKITEXT_TITLE.match(line.rstrip("\n")):
            close()
            title, body = match.group(1).strip(), []
        elif title is not None:
            body.append(line if line.endswith("\n") else line + "\n")
    close()
    return documents


def _load_pg19(split: str) -> list[Document]:
    dataset = _load_hub_dataset("PG-19", "deepmind/pg19", None, split)
    return [
        Document(row["text"], row.get("short_book_title") or f"pg19:{index}", f"PG-19 ({split})")
        for index, row in enumerate(dataset)
    ]


def _load_hub_dataset(label: str, repo: str, config: str | None, split: str) -> object:
    """``datasets.load_dataset`` that fails in seconds, with one clear error, when offline.

    Without internet the datasets client retries for ~25 s before failing; probing
    the hub first and switching the client to offline mode (which still reads the
    local cache) turns that into an immediate answer.
    """
    import datasets

    offline = bool(datasets.config.HF_HUB_OFFLINE) or not hub_reachable()
    try:
        with _hub_offline_mode(offline):
            return datasets.load_dataset(repo, config, split=split)
    except (ConnectionError, FileNotFoundError, RuntimeError) as error:
        where = "the hub is unreachable from here" if offline else f"loading failed ({error})"
        raise CorpusUnavailableError(
            f"{label} ({repo}{', ' + config if config else ''}, split {split!r}) is not in the local Hugging "
            f"Face datasets cache and {where}. Use an offline corpus instead: 'gutenberg' (Austen and Moby "
            "Dick from Debian packages) or 'wikipedia' (the 2016 Wikipedia sample from the gensim wheel), "
            "or a local .txt / .jsonl file; or load it once where there is internet and copy the cache "
            f"({datasets.config.HF_DATASETS_CACHE}) here."
        ) from None


@contextlib.contextmanager
def _hub_offline_mode(offline: bool) -> Iterator[None]:
    """Switch datasets and huggingface_hub to offline mode for the duration (cache only)."""
    if not offline:
        yield
        return
    import datasets
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved
