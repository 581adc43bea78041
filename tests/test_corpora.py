"""The offline corpora, on the real data: what they hold and that their cleaning holds.

The first run fetches and prepares the data (about 20 s: two Debian packages, the
sentencepiece sdist, the Wikipedia dump inside the installed gensim wheel) into
``data/`` (or ``$GREEN_PROFILES_DATA``); later runs read the prepared files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from green_profiles.corpora import (
    AUSTEN_BOOKS,
    MOBY_DICK,
    WIKIPEDIA_SOURCE,
    CorpusUnavailableError,
    Document,
    load_corpus,
    prepare_offline_data,
    split_wikitext_articles,
)
from green_profiles.locations import hub_reachable
from green_profiles.windows import sample_windows, tokenize_documents

REPO = Path(__file__).resolve().parents[1]
# janeaustenr's text, chapter headings counted per book (Emma: 18 + 18 + 19 over three volumes).
# tidytext-style counts (``cumsum`` of heading matches) give 275 = 269 + one "chapter 0" of
# front matter per book; the front matter is not a chapter and is left out here.
AUSTEN_CHAPTERS = {
    "Sense and Sensibility": 50,
    "Pride and Prejudice": 61,
    "Mansfield Park": 48,
    "Emma": 55,
    "Northanger Abbey": 31,
    "Persuasion": 24,
}
MOBY_DICK_DOCUMENTS = 136  # 135 chapters and the Epilogue
# The gensim dump: 206 pages = 100 redirects + 106 articles kept by segment_wiki, of which
# 8 are disambiguation pages and 1 ("List of anthropologists") has no prose paragraph.
WIKIPEDIA_ARTICLES = 97
LICENCE_MARKERS = re.compile(
    r"gutenberg|\*\*\* ?START OF|\*\*\* ?END OF|START: FULL LICENSE|This eBook is for the use", re.IGNORECASE
)
WIKI_MARKUP = ("[[", "]]", "{{", "}}", "==", "|", "''", "<ref", "</", "&nbsp;", "&ndash;", "File:", "Category:")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return Path(os.environ.get("GREEN_PROFILES_DATA", REPO / "data"))


@pytest.fixture(scope="session")
def manifest(data_dir: Path) -> dict:
    return prepare_offline_data(data_dir)


@pytest.fixture(scope="session")
def gutenberg(manifest: dict, data_dir: Path) -> list[Document]:
    if shutil.which("apt-get") is None:
        pytest.skip("Austen and Moby Dick come from Debian packages; this machine has no apt-get")
    assert not manifest["unavailable"], manifest["unavailable"]
    return load_corpus("gutenberg", data_dir)


@pytest.fixture(scope="session")
def wikipedia(manifest: dict, data_dir: Path) -> list[Document]:
    return load_corpus("wikipedia", data_dir)


def test_manifest_records_every_source(manifest: dict, data_dir: Path) -> None:
    corpora_dir = data_dir / "corpora"
    on_disk = json.loads((corpora_dir / "manifest.json").read_text())
    assert on_disk["sources"] == manifest["sources"]
    expected = {"janeaustenr": "r-cran-janeaustenr", "tokenizers": "r-cran-tokenizers",
                "sentencepiece": "sentencepiece", "gensim": "gensim"}  # fmt: skip
    for source, package in expected.items():
        if source in manifest["unavailable"]:
            continue
        record = manifest["sources"][source]
        assert record["package"] == package and record["version"]
        assert re.fullmatch(r"[0-9a-f]{64}", record["sha256"])
        if record["kind"] != "pypi-wheel":  # the gensim dump is read inside the installed package
            assert (data_dir / record["file"]).is_file()
        for entry in record["corpora"].values():
            lines = (corpora_dir / entry["file"]).read_text(encoding="utf-8").splitlines()
            assert len(lines) == entry["documents"] > 0
    # Nothing half-written is left behind.
    assert not list(corpora_dir.glob("*.part")) and not list((data_dir / "raw").glob(".*"))


def test_prepare_is_idempotent(manifest: dict, data_dir: Path) -> None:
    files = sorted((data_dir / "corpora").glob("*.jsonl"))
    stamps = [path.stat().st_mtime_ns for path in files]
    started = time.perf_counter()
    again = prepare_offline_data(data_dir)
    assert time.perf_counter() - started < 2.0
    assert again["sources"] == manifest["sources"]
    assert [path.stat().st_mtime_ns for path in files] == stamps


def test_gutenberg_is_austen_and_moby_dick_by_chapter(gutenberg: list[Document]) -> None:
    chapters: dict[str, int] = {}
    for doc in gutenberg:
        chapters[doc.source] = chapters.get(doc.source, 0) + 1
    assert chapters == {**AUSTEN_CHAPTERS, MOBY_DICK: MOBY_DICK_DOCUMENTS}
    assert set(AUSTEN_BOOKS.values()) == set(AUSTEN_CHAPTERS)
    by_title = {doc.title: doc.text for doc in gutenberg}
    # Chapters start and end where the novels do: no headings, title pages or end marks.
    assert by_title["Pride and Prejudice, Chapter 1"].startswith("It is a truth universally acknowledged")
    assert by_title["Emma, Volume I, Chapter I"].startswith("Emma Woodhouse, handsome, clever, and rich")
    assert by_title["Emma, Volume III, Chapter XIX"].endswith("perfect happiness of the union.")
    assert by_title["Persuasion, Chapter 24"].endswith("than in its national importance.")
    assert by_title["Moby Dick, Chapter 1. Loomings."].startswith("Call me Ishmael.")
    wrapped = (
        "Moby Dick, Chapter 56. Of the Less Erroneous Pictures of Whales, and the True Pictures of Whaling Scenes."
    )
    assert wrapped in by_title  # the source wraps this heading onto a second line
    assert by_title["Moby Dick, Epilogue"].endswith("only found another orphan.")
    assert "A NOTE ON THE TEXT" not in by_title["Northanger Abbey, Chapter 31"]


def test_gutenberg_has_no_licence_or_editorial_text(gutenberg: list[Document]) -> None:
    for doc in gutenberg:
        assert not LICENCE_MARKERS.search(doc.text), doc.title
        assert not re.search(r"\b(THE END|FINIS)\s*$", doc.text), doc.title
        assert not re.search(r"^\[[^\]]*\bedition", doc.text, re.MULTILINE | re.IGNORECASE), doc.title
        assert "\r" not in doc.text and "\ufeff" not in doc.text and "_" not in doc.text, doc.title
        # Hard wraps are undone: paragraphs are single lines separated by one blank line.
        assert "\n\n\n" not in doc.text and all(paragraph.strip() for paragraph in doc.text.split("\n\n"))


def test_botchan_fallback_is_clean(manifest: dict, data_dir: Path) -> None:
    if "sentencepiece" in manifest["unavailable"]:
        pytest.skip(f"sentencepiece sdist unavailable: {manifest['unavailable']['sentencepiece']}")
    botchan = load_corpus(data_dir / "corpora" / "botchan.jsonl")
    assert [doc.title for doc in botchan][:2] == ["Botchan, Chapter I", "Botchan, Chapter II"]
    assert len(botchan) == 11
    assert botchan[0].text.startswith("Because of an hereditary recklessness")
    assert botchan[-1].text.endswith("So Kiyo's grave is in the Yogen temple at Kobinata.")
    for doc in botchan:
        assert not LICENCE_MARKERS.search(doc.text) and not re.search(r"\[[A-Z]\]", doc.text), doc.title


def test_gutenberg_falls_back_to_botchan_without_apt(
    manifest: dict, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "sentencepiece" in manifest["unavailable"]:
        pytest.skip(f"sentencepiece sdist unavailable: {manifest['unavailable']['sentencepiece']}")
    # A machine without apt-get: an empty PATH; the sdist is copied over so pip is not needed.
    (tmp_path / "raw").mkdir()
    shutil.copy(data_dir / manifest["sources"]["sentencepiece"]["file"], tmp_path / "raw")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.warns(UserWarning) as caught:
        documents = load_corpus("gutenberg", tmp_path)
    messages = [str(warning.message) for warning in caught]
    assert any("'janeaustenr' unavailable: apt-get / dpkg-deb not found" in message for message in messages)
    assert any("falls back to Botchan" in message for message in messages)
    assert {doc.source for doc in documents} == {"Botchan (Master Darling)"} and len(documents) == 11
    prepared = json.loads((tmp_path / "corpora" / "manifest.json").read_text())
    assert "janeaustenr" not in prepared["sources"] and "sentencepiece" in prepared["sources"]


def test_wikipedia_is_plain_prose(wikipedia: list[Document], manifest: dict) -> None:
    counts = manifest["sources"]["gensim"]["corpora"]["wikipedia"]
    assert (counts["pages_in_dump"], counts["redirects_in_dump"], counts["articles_segmented"]) == (206, 100, 106)
    assert counts["disambiguation_pages_dropped"] == 8
    assert len(wikipedia) == WIKIPEDIA_ARTICLES
    assert {doc.source for doc in wikipedia} == {WIKIPEDIA_SOURCE}
    titles = [doc.title for doc in wikipedia]
    assert len(set(titles)) == len(titles) and not any("disambiguation" in title for title in titles)
    anarchism = next(doc.text for doc in wikipedia if doc.title == "Anarchism")
    assert anarchism.startswith("Anarchism is a political philosophy that advocates self-governed societies")
    for doc in wikipedia:
        for marker in WIKI_MARKUP:
            assert marker not in doc.text, (doc.title, marker)
        for paragraph in doc.text.split("\n\n"):
            assert paragraph[0] not in "*#:;=!", (doc.title, paragraph)
            assert re.search(r"[.!?][\"'”’)\]]*$", paragraph), (doc.title, paragraph)


def test_hub_corpora_fail_fast_and_clearly_offline() -> None:
    if hub_reachable():
        pytest.skip("the Hugging Face hub is reachable here; this checks the offline error")
    for name in ("wikitext-103", "pg19"):
        started = time.perf_counter()
        with pytest.raises(CorpusUnavailableError, match="hub is unreachable.*'gutenberg'.*'wikipedia'"):
            load_corpus(name)
        assert time.perf_counter() - started < 10.0


def test_wikitext_articles_split_at_top_level_titles() -> None:
    lines = [
        " \n", " = First Article = \n", " \n", " It was built in 1 @,@ 234 @-@ 1 @,@ 240 , at 2 @.@ 5 km . \n",
        " \n", " = = History = = \n", " \n", " More text . \n", " = Second Article = \n", " Only line . \n",
    ]  # fmt: skip
    first, second = split_wikitext_articles(lines)
    assert (first.title, second.title) == ("First Article", "Second Article")
    assert first.text.startswith("It was built in 1,234-1,240 , at 2.5 km .")
    assert " = = History = = " in first.text and second.text == "Only line ."


def test_local_files_load(tmp_path: Path) -> None:
    text_file = tmp_path / "essay.txt"
    text_file.write_text("One paragraph.\n\nAnother one.\n", encoding="utf-8")
    assert load_corpus(text_file) == [Document("One paragraph.\n\nAnother one.", "essay", "essay.txt")]
    lines_file = tmp_path / "docs.jsonl"
    lines_file.write_text('{"text": "First.", "title": "a"}\n\n{"text": "Second."}\n', encoding="utf-8")
    expected = [Document("First.", "a", "docs.jsonl"), Document("Second.", "docs:3", "docs.jsonl")]
    assert load_corpus(str(lines_file)) == expected
    with pytest.raises(FileNotFoundError):
        load_corpus(tmp_path / "missing.txt")


def test_unknown_corpus_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'gutenberg', 'wikipedia', 'wikitext-103', 'pg19'"):
        load_corpus("wikitext")


def test_token_counts_with_smollm2(gutenberg: list[Document], wikipedia: list[Document]) -> None:
    """Tokens per corpus with the real SmolLM2 tokenizer (printed; run with -s to see them)."""
    from transformers import AutoTokenizer

    from green_profiles.models import smollm2_directory

    tokenizer = AutoTokenizer.from_pretrained(smollm2_directory())
    lengths = {}
    for name, documents in (("gutenberg", gutenberg), ("wikipedia", wikipedia)):
        token_docs = tokenize_documents(documents, tokenizer)
        assert all(ids.dtype == np.int64 and ids.ndim == 1 for ids in token_docs)
        n = np.array([len(ids) for ids in token_docs])
        lengths[name] = n
        print(f"\n{name}: {len(documents)} documents, {n.sum():,} tokens; "
              f"{(n >= 513).sum()} documents >= 513 tokens, {(n >= 2049).sum()} >= 2049")  # fmt: skip
        windows = sample_windows(token_docs, 2049, 64, seed=0)
        # No special tokens: a window decodes to a stretch of its document's own text.
        text = tokenizer.decode(windows.ids[0][1:-1])
        assert text.strip()[:40] in documents[int(windows.document[0])].text
    assert 1_100_000 < lengths["gutenberg"].sum() < 1_400_000 and (lengths["gutenberg"] >= 2049).sum() > 250
    assert 450_000 < lengths["wikipedia"].sum() < 800_000 and (lengths["wikipedia"] >= 2049).sum() > 55
