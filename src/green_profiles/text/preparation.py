"""Preparing the offline corpora once, with a manifest of where they came from, and reading them back.

:func:`prepare_offline_data` fetches and cleans every offline source (the Debian
packages in :mod:`.debian`, the sentencepiece sdist in :mod:`.gutenberg`, the
gensim wheel in :mod:`.wikipedia`) into ``<data_dir>/corpora/<corpus>.jsonl`` and
records each source's package, version, downloaded file, sha256 and counts in
``<data_dir>/corpora/manifest.json``. :func:`load_offline` reads the prepared
files, preparing them first where they are missing, and falls back from the
Debian novels to Botchan where the Debian packages cannot be had.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

from green_profiles.text.debian import fetch_austen, fetch_moby_dick
from green_profiles.text.documents import CorpusUnavailableError, Document, FetchedSource, SourceUnavailable
from green_profiles.text.gutenberg import fetch_botchan
from green_profiles.text.local import jsonl_text, read_jsonl
from green_profiles.text.wikipedia import fetch_wikipedia
from green_profiles.files.locations import default_data_dir, file_sha256
from green_profiles.files.storage import atomic_write, exclusive_lock, remove_staging

# Bump when the cleaning changes: prepared files from an older version are rebuilt.
PREPARATION_VERSION = 2

# Offline source -> how to fetch it; each yields one or more prepared corpora.
SOURCES: dict[str, Callable[[Path], FetchedSource]] = {
    "janeaustenr": fetch_austen,
    "tokenizers": fetch_moby_dick,
    "sentencepiece": fetch_botchan,
    "gensim": fetch_wikipedia,
}
# Offline corpus name (see load_corpus) -> the prepared corpora it is made of.
OFFLINE_PARTS: dict[str, tuple[str, ...]] = {"gutenberg": ("austen", "moby-dick"), "wikipedia": ("wikipedia",)}
GUTENBERG_FALLBACK = "botchan"


def load_offline(name: str, data_dir: Path) -> list[Document]:
    """The documents of an offline corpus (``"gutenberg"`` or ``"wikipedia"``), prepared on first use.

    ``gutenberg`` falls back to Botchan, with a warning, where the Debian packages
    cannot be had (no apt-get).
    """
    wanted = OFFLINE_PARTS[name]
    available = prepared_corpora(data_dir)
    if not all(corpus in available for corpus in wanted):
        prepare_offline_data(data_dir)
        available = prepared_corpora(data_dir)
    if all(corpus in available for corpus in wanted):
        return [doc for corpus in wanted for doc in read_jsonl(available[corpus])]
    if name == "gutenberg" and GUTENBERG_FALLBACK in available:
        warnings.warn(
            "the Debian packages r-cran-janeaustenr / r-cran-tokenizers could not be had here; "
            "'gutenberg' falls back to Botchan (Gutenberg #8868, from the sentencepiece sdist), ~60k tokens",
            stacklevel=3,
        )
        return read_jsonl(available[GUTENBERG_FALLBACK])
    raise CorpusUnavailableError(
        f"the offline corpus {name!r} could not be prepared in {data_dir}; see the warnings of "
        "prepare_offline_data for the reason (it needs apt-get for the Debian packages, pip for the "
        "sentencepiece sdist, and the gensim package for the Wikipedia sample)"
    )


def prepared_corpora(data_dir: Path) -> dict[str, Path]:
    """Prepared corpus name -> file, for the files the manifest lists and that exist."""
    corpora_dir = _corpora_dir(data_dir)
    manifest = _read_manifest(corpora_dir)
    if manifest.get("preparation_version") != PREPARATION_VERSION:
        return {}
    found = {}
    for record in manifest.get("sources", {}).values():
        for corpus, entry in record.get("corpora", {}).items():
            path = corpora_dir / entry["file"]
            if path.is_file():
                found[corpus] = path
    return found


def prepare_offline_data(data_dir: Path | None = None) -> dict:
    """Fetch and clean everything the offline corpora need; return the manifest.

    Writes ``<data_dir>/corpora/{austen,moby-dick,botchan,wikipedia}.jsonl`` and
    ``<data_dir>/corpora/manifest.json``; downloads are kept under ``<data_dir>/raw/``.
    Sources already prepared (same preparation version, output files present with
    the sha256 the manifest records) are skipped. Every file is written atomically
    (:func:`green_profiles.files.storage.atomic_write`), a source's corpus files before the
    manifest that lists them, under an exclusive lock, so an interrupted run
    leaves no half-written file and is simply redone, and parallel runs do the
    work once.

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
    unavailable: dict[str, str] = {}
    with exclusive_lock(corpora_dir / ".prepare.lock"):
        remove_staging(corpora_dir)
        remove_staging(data_dir / "raw")
        manifest = _read_manifest(corpora_dir)
        if manifest.get("preparation_version") != PREPARATION_VERSION:
            manifest = {"preparation_version": PREPARATION_VERSION, "sources": {}}
        for source, fetch in SOURCES.items():
            if _source_is_complete(corpora_dir, manifest["sources"].get(source)):
                continue
            try:
                fetched = fetch(data_dir)
            except SourceUnavailable as reason:
                unavailable[source] = str(reason)
                warnings.warn(f"offline source {source!r} unavailable: {reason}", stacklevel=2)
                continue
            entries = {
                corpus: _write_corpus(corpora_dir, corpus, documents, **fetched.details.get(corpus, {}))
                for corpus, documents in fetched.corpora.items()
            }
            manifest["sources"][source] = {**fetched.record, "corpora": entries}
            atomic_write(corpora_dir / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return {**manifest, "unavailable": unavailable}


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


def _write_corpus(corpora_dir: Path, corpus: str, documents: list[Document], **extra: object) -> dict:
    """Write one prepared corpus file atomically; return its manifest entry."""
    if not documents:
        raise RuntimeError(f"preparing {corpus!r} produced no documents: the cleaning no longer fits the source")
    path = corpora_dir / f"{corpus}.jsonl"
    atomic_write(path, jsonl_text(documents))
    return {
        "file": path.name,
        "sha256": file_sha256(path),
        "documents": len(documents),
        "characters": sum(len(doc.text) for doc in documents),
        **extra,
    }
