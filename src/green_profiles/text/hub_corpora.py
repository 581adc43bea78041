"""Corpora from the Hugging Face hub, where there is internet (or a filled local cache).

``wikitext-103``
    WikiText-103 (``Salesforce/wikitext``, ``wikitext-103-raw-v1``), split into
    articles at the top-level ``= Title =`` lines (:func:`split_wikitext_articles`).
``pg19``
    PG-19, one document per book, read from ``emozilla/pg19``, a parquet copy of
    ``deepmind/pg19`` (the book's ``text``; the title from ``short_book_title``
    where present). ``deepmind/pg19`` itself is a loading-script dataset, which
    ``datasets`` >= 4 refuses to run.

Whether to go online is :mod:`green_profiles.files.hub`'s rule; when it says no, datasets
is switched to offline mode so that a cached copy still loads and a missing one
fails at once, with an error that says which of the two happened.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from green_profiles.files import hub
from green_profiles.text.documents import CorpusUnavailableError, Document

WIKITEXT_103 = ("Salesforce/wikitext", "wikitext-103-raw-v1")
PG19 = ("emozilla/pg19", None)
OFFLINE_ALTERNATIVES = (
    "Use an offline corpus instead: 'gutenberg' (Austen and Moby Dick from Debian packages) or "
    "'wikipedia' (the 2016 Wikipedia sample from the gensim wheel), or a local .txt / .jsonl file"
)

_WIKITEXT_TITLE = re.compile(r"^ = (?!=)(.*?) = $")
_WIKITEXT_SPLITS = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."))


def load_wikitext_103(split: str) -> list[Document]:
    """WikiText-103 (raw) by article, from the hub or the local datasets cache."""
    dataset = load_hub_dataset("WikiText-103", *WIKITEXT_103, split)
    return split_wikitext_articles(dataset["text"], source=f"WikiText-103 ({split})")


def split_wikitext_articles(lines: Iterable[str], source: str = "WikiText-103") -> list[Document]:
    """WikiText lines (one paragraph or heading per line) grouped into articles.

    An article starts at a top-level ``" = Title = "`` line (section headings are
    ``" = = Section = = "`` and stay in the text); WikiText's ``" @-@ "``,
    ``" @,@ "`` and ``" @.@ "`` splitting of hyphens and numbers is undone, in the
    text and in the title (WikiText's headings are tokenized like its text).
    """
    documents: list[Document] = []
    title: str | None = None
    body: list[str] = []

    def unsplit(text: str) -> str:
        for split, joined in _WIKITEXT_SPLITS:
            text = text.replace(split, joined)
        return text

    def close() -> None:
        if title is not None:
            text = unsplit("".join(body).strip())
            if text:
                documents.append(Document(text, unsplit(title), source))

    for line in lines:
        if match := _WIKITEXT_TITLE.match(line.rstrip("\n")):
            close()
            title, body = match.group(1).strip(), []
        elif title is not None:
            body.append(line if line.endswith("\n") else line + "\n")
    close()
    return documents



def load_pg19(split: str) -> list[Document]:
    """PG-19 by book (the parquet copy ``emozilla/pg19``), from the hub or the local datasets cache."""
    dataset = load_hub_dataset("PG-19", *PG19, split)
    return [
        Document(row["text"], row.get("short_book_title") or f"pg19:{index}", f"PG-19 ({split})")
        for index, row in enumerate(dataset)
    ]


def load_hub_dataset(label: str, repo: str, config: str | None, split: str) -> object:
    """``datasets.load_dataset`` that fails in seconds, with an error saying what happened.

    Without the hub (see :func:`green_profiles.files.hub.offline_reason`) datasets runs in
    offline mode: a cached copy loads, a missing one raises at once instead of after
    the client's ~25 s of retries.

    Raises:
        CorpusUnavailableError: naming the case: not cached while the hub is
            unavailable (and why), a loading-script dataset, or the hub's or the
            loader's own error.
    """
    import datasets

    reason = hub.offline_reason()
    what = f"{label} ({repo}{', ' + config if config else ''}, split {split!r})"
    try:
        if reason is None:
            return datasets.load_dataset(repo, config, split=split)
        with hub.cache_only():
            return datasets.load_dataset(repo, config, split=split)
    except (ConnectionError, FileNotFoundError, RuntimeError, ValueError) as error:
        if "scripts are no longer supported" in str(error):
            problem = (
                f"is a loading-script dataset, which datasets {datasets.__version__} refuses to run "
                "(datasets >= 4 no longer runs dataset scripts)"
            )
        elif reason is not None and isinstance(error, ConnectionError):
            problem = (
                f"is not in the local Hugging Face datasets cache ({datasets.config.HF_DATASETS_CACHE}) and "
                f"{reason}"
            )
        elif reason is not None:
            problem = f"could not be loaded from the local datasets cache ({type(error).__name__}: {error})"
        else:
            problem = f"could not be loaded from the hub ({type(error).__name__}: {error})"
        raise CorpusUnavailableError(
            f"{what} {problem}. {OFFLINE_ALTERNATIVES}; or load it once where there is internet and copy the "
            f"cache ({datasets.config.HF_DATASETS_CACHE}) here."
        ) from error
