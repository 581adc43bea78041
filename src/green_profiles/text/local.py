"""The user's own text: a ``.txt`` file is one document, a ``.jsonl`` file one document a line.

JSON lines is also the format of the prepared offline corpora, so the writer lives here too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from green_profiles.text.documents import Document

LOCAL_SUFFIXES = (".txt", ".jsonl")


def load_local_file(path: Path) -> list[Document]:
    """The documents of a ``.txt`` or ``.jsonl`` file (see :func:`read_jsonl`)."""
    path = Path(path)
    if path.suffix not in LOCAL_SUFFIXES:
        raise ValueError(f"{path}: a local corpus is a .txt or .jsonl file")
    if not path.is_file():
        raise FileNotFoundError(f"corpus file {path} does not exist")
    if path.suffix == ".txt":
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path} is not UTF-8 text ({_decoding_problem(path, error)})") from error
        return [Document(text.strip(), path.stem, path.name)]
    return read_jsonl(path)


def _decoding_problem(path: Path, error: UnicodeDecodeError) -> str:
    """Where in a file a UTF-8 decoding error is, as line and byte, for the message."""
    line = path.read_bytes()[:error.start].count(b"\n") + 1
    return f"byte 0x{error.object[error.start]:02x} on line {line}, at byte offset {error.start}; save it as UTF-8"


def read_jsonl(path: Path) -> list[Document]:
    """Documents from a JSON-lines file: ``text`` required, ``title`` and ``source`` optional.

    A missing title becomes ``<source_dataset>#<source_index>`` where a line has those
    (the paper's document file does), else ``<file stem>:<line number>``; a missing
    source becomes ``source_dataset``, else the file name.
    """
    path = Path(path)
    documents = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}, line {number}: not UTF-8 (byte 0x{raw[error.start]:02x} at column "
                                 f"{error.start + 1}); save the file as UTF-8") from error
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not valid JSON ({error.msg} at column {error.colno})") from error
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f"{path}, line {number}: expected a JSON object with a string 'text' field")
            source = record.get("source") or record.get("source_dataset") or path.name
            if record.get("title"):
                title = record["title"]
            elif record.get("source_dataset") and "source_index" in record:
                title = f"{record['source_dataset']}#{record['source_index']}"
            else:
                title = f"{path.stem}:{number}"
            documents.append(Document(record["text"], str(title), str(source)))
    return documents


def jsonl_text(documents: Iterable[Document]) -> str:
    """Documents as JSON lines (``text``, ``title``, ``source``), the format :func:`read_jsonl` reads."""
    return "".join(
        json.dumps({"text": doc.text, "title": doc.title, "source": doc.source}, ensure_ascii=False) + "\n"
        for doc in documents
    )
