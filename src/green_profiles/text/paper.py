"""The paper's own Gutenberg corpus: the authors' document file of long English books.

The paper did not measure on PG-19. Its published scripts first stream a hub
dataset of Project Gutenberg books and keep, in stream order, the first 1,500
examples of at least 2,000 characters, one JSON line per book (PROTOCOL.md, "The
paper's corpus and windows"); windows are then drawn from that file by
:func:`green_profiles.text.windows.sample_windows_as_authors`.

:func:`build_paper_gutenberg` rebuilds that file with the authors' choice of source,
split and text column and their fallbacks, into ``<data>/corpora/paper-gutenberg.jsonl``
plus a manifest beside it: by streaming the sources where the hub is reachable, as the
authors did, and otherwise from a copy of a source in the local Hugging Face datasets
cache (one that ``datasets.load_dataset(repo, split=split)`` prepared where there was
internet, or the rehearsal cache of ``tools/rehearsal.py``), read in the same
row order. A user who has the authors' own file puts it at that path (or passes its
path as the corpus): it is read as it is, offline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from green_profiles.files import hub
from green_profiles.text.documents import CorpusUnavailableError, Document
from green_profiles.text.local import read_jsonl
from green_profiles.files.storage import atomic_write, exclusive_lock

PAPER_GUTENBERG = "paper-gutenberg"
# The authors' sources, in the order they try them, and the splits they try for each.
PAPER_SOURCES = (
    "sedthh/gutenberg_english",
    "adhyanshaa/project-gutenberg-en",
    "incredible45/Gutenberg-BookCorpus-Cleaned-Data-English",
    "manu/project_gutenberg",
    "deepmind/pg19",
    "emozilla/pg19",
    "Tanushreeeeee/pg19",
)
PAPER_SPLIT = "train"
TEXT_COLUMNS = ("text", "TEXT", "book_text", "content", "cleaned_text", "body", "book", "full_text", "Text")
MIN_CHARACTERS = 2_000
MAX_DOCUMENTS = 1_500


@dataclass(frozen=True)
class SelectionResult:
    """What :func:`select_long_documents` kept: JSON-ready records and how many examples it read."""

    records: list[dict[str, Any]]
    scanned: int
    text_column: str | None


def text_column(columns: Sequence[str]) -> str | None:
    """The authors' choice of text column: the first of :data:`TEXT_COLUMNS` present, else the
    first column whose name contains "text", else ``None``."""
    for name in TEXT_COLUMNS:
        if name in columns:
            return name
    return next((name for name in columns if "text" in name.lower()), None)


def select_long_documents(rows: Iterable[Mapping[str, Any]], *, source: str, split: str,
                          min_characters: int = MIN_CHARACTERS, max_documents: int = MAX_DOCUMENTS) -> SelectionResult:
    """Keep, in stream order, every row whose text has at least ``min_characters`` characters,
    until ``max_documents`` are kept; read at most ``max(max_documents * 20, 2000)`` rows.

    Each kept record has the authors' fields: ``text``, ``source_dataset``, ``split``,
    ``source_index`` (the row's position in the stream) and ``n_chars``.
    """
    limit = max(max_documents * 20, 2000)
    records: list[dict[str, Any]] = []
    column: str | None = None
    scanned = 0
    for index, row in enumerate(rows):
        if scanned >= limit or len(records) >= max_documents:
            break
        scanned += 1
        if column is None:
            column = text_column(list(row))
            if column is None:
                raise ValueError(f"{source} has no text column (columns: {', '.join(row)})")
        text = row.get(column)
        if isinstance(text, str) and len(text) >= min_characters:
            records.append({"text": text, "source_dataset": source, "split": split, "source_index": index,
                            "n_chars": len(text)})
    return SelectionResult(records=records, scanned=scanned, text_column=column)


def paper_gutenberg_path(data_dir: Path) -> Path:
    """Where the paper's document file lives: ``<data>/corpora/paper-gutenberg.jsonl``."""
    return Path(data_dir) / "corpora" / f"{PAPER_GUTENBERG}.jsonl"


def load_paper_gutenberg(data_dir: Path) -> list[Document]:
    """The paper's Gutenberg documents: the file if it is there, else built from the hub first.

    Raises:
        CorpusUnavailableError: no file and no hub (the message says where to put the authors' file).
    """
    path = paper_gutenberg_path(data_dir)
    if not path.is_file():
        build_paper_gutenberg(data_dir)
    return read_jsonl(path)


def build_paper_gutenberg(data_dir: Path, *, stream: Any = None) -> Path:
    """Read the authors' sources in their order and write the first one that yields documents.

    Args:
        data_dir: the data directory; the file goes to :func:`paper_gutenberg_path`.
        stream: ``stream(repo, split)`` returning an iterable of row dicts; by default
            ``datasets.load_dataset(repo, split=split, streaming=True)`` where the hub is
            reachable, else the non-streaming ``load_dataset`` of the local datasets cache alone
            (streaming never reads a cache). Tests pass their own.

    Returns:
        the path of the written file (with ``paper-gutenberg.manifest.json`` beside it, which
        names the source, its split and where it was read from).

    Raises:
        CorpusUnavailableError: no source gave a document; without the hub, the message says
            why the hub is out of reach and whether any source was in the local cache.
    """
    path = paper_gutenberg_path(data_dir)
    reason = None
    if stream is None:
        reason = hub.offline_reason()
        stream = _stream_from_hub if reason is None else _read_from_cache
    errors: list[str] = []  # what went wrong with each source, other than not being cached
    with exclusive_lock(path.parent / f".{PAPER_GUTENBERG}.lock"):
        if path.is_file():
            return path
        for repo in PAPER_SOURCES:
            for split in dict.fromkeys((PAPER_SPLIT, "train", "en")):
                try:
                    result = select_long_documents(stream(repo, split), source=repo, split=split)
                except (OSError, ValueError, RuntimeError, ConnectionError) as error:
                    # Offline, datasets answers a source that is not cached with a ConnectionError.
                    if reason is None or not isinstance(error, ConnectionError):
                        errors.append(f"{repo} ({split}): {type(error).__name__}: {error}")
                    continue
                if result.records:
                    manifest = {"source_dataset": repo, "split": split, "text_column": result.text_column,
                                "documents": len(result.records), "examples_scanned": result.scanned,
                                "min_characters": MIN_CHARACTERS, "max_documents": MAX_DOCUMENTS,
                                "read_from": _origin(stream)}
                    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.records))
                    atomic_write(path.with_suffix(".manifest.json"), json.dumps(manifest, indent=2) + "\n")
                    return path
                errors.append(f"{repo} ({split}): no example of {MIN_CHARACTERS} characters or more")
    if reason is None:
        raise CorpusUnavailableError("no source of the paper's Gutenberg corpus gave a document: " + "; ".join(errors))
    cache = _datasets_cache()
    found = (f"none of the authors' sources ({', '.join(PAPER_SOURCES)}) is in the local Hugging Face datasets "
             f"cache ({cache})" if not errors else
             f"no source in the local Hugging Face datasets cache ({cache}) gave a document: " + "; ".join(errors))
    raise CorpusUnavailableError(
        f"the paper's Gutenberg document file is not at {path} and it cannot be built here: {reason}, and "
        f"{found}. Put the authors' JSONL (one book a line with a 'text' field) at {path}, or pass any such "
        "file's path as the corpus, or use the offline corpus 'gutenberg'."
    )


def _origin(stream: Any) -> str:
    """Where :func:`build_paper_gutenberg` read the rows from, for its manifest."""
    if stream is _stream_from_hub:
        return "the hub (streamed)"
    if stream is _read_from_cache:
        return f"the local Hugging Face datasets cache ({_datasets_cache()})"
    return "rows given by the caller"


def _datasets_cache() -> str:
    import datasets

    return str(datasets.config.HF_DATASETS_CACHE)


def _read_from_cache(repo: str, split: str) -> Iterator[Mapping[str, Any]]:
    """The rows of a source's split from the local datasets cache alone, in the order streaming gives
    them (a prepared dataset keeps the source files' order, shard by shard)."""
    import datasets

    with hub.cache_only():
        dataset = datasets.load_dataset(repo, split=split)
    return iter(dataset)


def _stream_from_hub(repo: str, split: str) -> Iterator[Mapping[str, Any]]:
    import datasets

    return iter(datasets.load_dataset(repo, split=split, streaming=True))
