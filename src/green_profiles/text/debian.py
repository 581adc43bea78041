"""Novels from Debian's R packages, without R: download the ``.deb``, unpack it, read R's lazy-load data.

``r-cran-janeaustenr`` holds Jane Austen's six novels (one character vector of lines
per novel) and ``r-cran-tokenizers`` Melville's *Moby Dick* (the ``mobydick``
object, Gutenberg #2701 with its header and footer). ``apt-get download`` fetches
the package (after one ``apt-get update`` on a fresh machine), ``dpkg-deb -x``
unpacks it, and :func:`read_r_lazyload` reads ``data/Rdata.rdx`` / ``.rdb`` with
the ``rdata`` library. The chapters are split and cleaned in :mod:`.gutenberg`.
"""

from __future__ import annotations

import bz2
import gzip
import importlib.metadata
import lzma
import shutil
import struct
import subprocess
import tempfile
import warnings
import zlib
from pathlib import Path

from green_profiles.text.documents import FetchedSource, SourceUnavailable
from green_profiles.text.gutenberg import split_austen_chapters, split_moby_dick_chapters
from green_profiles.files.locations import file_sha256
from green_profiles.files.storage import atomic_write

DEBIAN_PACKAGES = {"janeaustenr": "r-cran-janeaustenr", "tokenizers": "r-cran-tokenizers"}
AUSTEN_BOOKS: dict[str, str] = {  # janeaustenr object name -> title, in publication order
    "sensesensibility": "Sense and Sensibility",
    "prideprejudice": "Pride and Prejudice",
    "mansfieldpark": "Mansfield Park",
    "emma": "Emma",
    "northangerabbey": "Northanger Abbey",
    "persuasion": "Persuasion",
}


def fetch_austen(data_dir: Path) -> FetchedSource:
    """Austen's six novels by chapter, from ``r-cran-janeaustenr``."""
    record, objects = debian_r_data(data_dir, DEBIAN_PACKAGES["janeaustenr"], "janeaustenr")
    documents = []
    chapters = {}
    for key, book in AUSTEN_BOOKS.items():
        book_chapters = split_austen_chapters(_lines_of(objects[key]), book)
        chapters[book] = len(book_chapters)
        documents.extend(book_chapters)
    return FetchedSource(record, {"austen": documents}, {"austen": {"chapters_per_book": chapters}})


def fetch_moby_dick(data_dir: Path) -> FetchedSource:
    """Moby Dick by chapter, from the ``mobydick`` object of ``r-cran-tokenizers``."""
    record, objects = debian_r_data(data_dir, DEBIAN_PACKAGES["tokenizers"], "tokenizers")
    documents = split_moby_dick_chapters("\n".join(_lines_of(objects["mobydick"])))
    return FetchedSource(record, {"moby-dick": documents}, {"moby-dick": {"gutenberg_ebook": 2701}})


def debian_r_data(data_dir: Path, package: str, r_package: str) -> tuple[dict, dict[str, object]]:
    """Download a Debian R package into ``<data_dir>/raw``, unpack it, and read its lazy-load data objects.

    Returns the manifest record (package, version, ``.deb`` file and its sha256) and
    the objects by name.
    """
    deb = _apt_download(package, Path(data_dir) / "raw")
    fields = {}
    for field in ("Package", "Version"):
        result = _run(["dpkg-deb", "-f", str(deb), field])
        fields[field] = result.stdout.strip()
    with tempfile.TemporaryDirectory(prefix=f"{package}-") as scratch:
        unpacked = _run(["dpkg-deb", "-x", str(deb), scratch])
        if unpacked.returncode != 0:
            raise SourceUnavailable(f"dpkg-deb -x {deb.name} failed: {unpacked.stderr.strip()}")
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
        raise SourceUnavailable("apt-get / dpkg-deb not found (not a Debian-based system)")
    with tempfile.TemporaryDirectory(prefix=f"green-profiles-{package}-") as scratch:
        result = _run(["apt-get", "download", package], cwd=Path(scratch))
        if result.returncode != 0:
            # A fresh machine (e.g. a container) has no package lists yet.
            _run(["apt-get", "update"])
            result = _run(["apt-get", "download", package], cwd=Path(scratch))
        debs = sorted(Path(scratch).glob(f"{package}_*.deb"))
        if result.returncode != 0 or not debs:
            message = (result.stderr.strip().splitlines() or ["no .deb written"])[-1]
            raise SourceUnavailable(f"apt-get download {package} failed: {message}")
        target = raw_dir / debs[-1].name
        atomic_write(target, debs[-1].read_bytes())
    return target


def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


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

