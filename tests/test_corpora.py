"""The offline corpora, on the real data: what they hold and that their cleaning holds.

Each session prepares the data into a directory of its own (conftest's ``session_data_dir``), never
into ``data/`` or ``$GREEN_PROFILES_DATA``: from the downloads already there (copied in, read only), else
fetched (two Debian packages, the sentencepiece sdist; the Wikipedia dump is inside the installed gensim
wheel).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from green_profiles.files import hub
from green_profiles.text import (
    AUSTEN_BOOKS,
    MOBY_DICK,
    WIKIPEDIA_SOURCE,
    CorpusUnavailableError,
    Document,
    corpus_checksum,
    load_corpus,
    prepare_offline_data,
    read_jsonl,
    split_wikitext_articles,
)
from green_profiles.files.storage import STAGING_PREFIX
from green_profiles.text.windows import sample_windows, tokenize_documents

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
def data_dir(session_data_dir: Path) -> Path:
    """The session's own data directory: preparing the corpora writes there, not into the repository's."""
    return session_data_dir


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
    for folder in (corpora_dir, data_dir / "raw"):
        assert not list(folder.glob(f"{STAGING_PREFIX}*")), folder


def test_prepare_is_idempotent(manifest: dict, data_dir: Path) -> None:
    files = sorted((data_dir / "corpora").glob("*.jsonl"))
    stamps = [path.stat().st_mtime_ns for path in files]
    again = prepare_offline_data(data_dir)
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
    assert corpus_checksum(documents) == corpus_checksum(read_jsonl(data_dir / "corpora" / "botchan.jsonl"))
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


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty Hugging Face caches and offline mode off: the test decides reachability itself."""
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    return tmp_path


def test_hub_corpora_not_cached_and_hub_unreachable(empty_hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub, "probe", lambda timeout_seconds=0: "the hub (test) could not be reached (no route)")
    for name in ("wikitext-103", "pg19"):
        with pytest.raises(CorpusUnavailableError) as caught:
            load_corpus(name)
        message = str(caught.value)
        assert "is not in the local Hugging Face datasets cache" in message, message
        assert str(empty_hub_cache / "datasets") in message
        assert "the hub (test) could not be reached (no route)" in message
        assert "'gutenberg'" in message and "'wikipedia'" in message


def test_hub_corpora_in_offline_mode_say_so(empty_hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    def no_probe(timeout_seconds: float = 0) -> str | None:
        raise AssertionError("offline mode must not probe the network")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "probe", no_probe)
    with pytest.raises(CorpusUnavailableError, match="not in the local .* cache .* offline mode .*HF_HUB_OFFLINE"):
        load_corpus("wikitext-103")


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (RuntimeError("Dataset scripts are no longer supported, but found pg19.py"), "is a loading-script dataset"),
        (ConnectionError("Couldn't reach 'emozilla/pg19' on the Hub (ReadTimeout)"),
         r"could not be loaded from the hub \(ConnectionError: Couldn't reach"),
    ],
)  # fmt: skip
def test_hub_corpus_errors_say_what_happened_online(
    empty_hub_cache: Path, monkeypatch: pytest.MonkeyPatch, failure: Exception, expected: str
) -> None:
    """With the hub reachable, a failure is reported as what it is, never as "not cached"."""
    import datasets

    requested = []

    def load_dataset(repo: str, config: str | None = None, *, split: str) -> object:
        requested.append((repo, config, split))
        raise failure

    monkeypatch.setattr(hub, "probe", lambda timeout_seconds=0: None)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(CorpusUnavailableError, match=expected) as caught:
        load_corpus("pg19", split="validation")
    assert "not in the local" not in str(caught.value)
    assert requested == [("emozilla/pg19", None, "validation")]  # the parquet copy: deepmind/pg19 is a script


def test_offline_rule_uses_the_hub_client_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "probe", lambda timeout_seconds=0: None)
    assert hub.offline_reason() is None
    monkeypatch.setattr(hub, "probe", lambda timeout_seconds=0: "unreachable (test)")
    assert hub.offline_reason() == "unreachable (test)"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert "HF_HUB_OFFLINE" in hub.offline_reason()


def test_hub_probe_reports_a_failed_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe goes through huggingface_hub's session to its endpoint, and says why it failed."""
    import huggingface_hub.utils
    from huggingface_hub import constants

    asked = []

    class Session:
        def head(self, url: str, timeout: float) -> object:
            asked.append((url, timeout))
            raise OSError("proxy refused the connection")

    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")
    monkeypatch.setattr(huggingface_hub.utils, "get_session", lambda: Session())
    reason = hub.probe(timeout_seconds=1.5)
    assert asked == [("https://hub.invalid", 1.5)]
    assert reason is not None and "https://hub.invalid" in reason and "proxy refused the connection" in reason


def test_corpus_checksum_is_the_corpus_identity(wikipedia: list[Document], tmp_path: Path) -> None:
    reference = corpus_checksum(wikipedia)
    assert re.fullmatch(r"[0-9a-f]{64}", reference)
    assert corpus_checksum(list(wikipedia)) == reference  # a pure function of the documents
    changed = list(wikipedia)
    doc = changed[5]
    changed[5] = Document(doc.text[:100] + ("X" if doc.text[100] != "X" else "Y") + doc.text[101:], doc.title,
                          doc.source)
    assert corpus_checksum(changed) != reference
    swapped = [wikipedia[1], wikipedia[0], *wikipedia[2:]]
    assert corpus_checksum(swapped) != reference
    retitled = [Document(wikipedia[0].text, wikipedia[0].title + " ", wikipedia[0].source), *wikipedia[1:]]
    assert corpus_checksum(retitled) != reference
    # Length-prefixed: moving text across a document or title boundary changes the checksum.
    assert corpus_checksum([Document("ab", "t", "s"), Document("c", "t", "s")]) != \
        corpus_checksum([Document("a", "t", "s"), Document("bc", "t", "s")])
    assert corpus_checksum([Document("xy", "", "s")]) != corpus_checksum([Document("y", "x", "s")])
    assert corpus_checksum([]) != corpus_checksum([Document("", "", "s")])
    # A changed local file is another corpus.
    path = tmp_path / "essay.txt"
    path.write_text("One paragraph.\n", encoding="utf-8")
    before = corpus_checksum(load_corpus(path))
    path.write_text("One paragraph!\n", encoding="utf-8")
    assert corpus_checksum(load_corpus(path)) != before


def test_corpus_checksum_tells_the_botchan_fallback_from_the_novels(
    gutenberg: list[Document], manifest: dict, data_dir: Path
) -> None:
    if "sentencepiece" in manifest["unavailable"]:
        pytest.skip(f"sentencepiece sdist unavailable: {manifest['unavailable']['sentencepiece']}")
    botchan = read_jsonl(data_dir / "corpora" / "botchan.jsonl")  # what 'gutenberg' falls back to
    assert corpus_checksum(botchan) != corpus_checksum(gutenberg)


def test_wikitext_articles_split_at_top_level_titles() -> None:
    lines = [
        " \n", " = First Article = \n", " \n", " It was built in 1 @,@ 234 @-@ 1 @,@ 240 , at 2 @.@ 5 km . \n",
        " \n", " = = History = = \n", " \n", " More text . \n", " = Second @-@ Article = \n", " Only line . \n",
    ]  # fmt: skip
    first, second = split_wikitext_articles(lines)
    assert (first.title, second.title) == ("First Article", "Second-Article")  # headings are tokenized too
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
    with pytest.raises(ValueError, match="'gutenberg', 'wikipedia', 'paper-gutenberg', 'wikitext-103', 'pg19'"):
        load_corpus("wikitext")


def test_token_counts_with_smollm2(gutenberg: list[Document], wikipedia: list[Document], data_dir: Path) -> None:
    """Tokens per corpus with the real SmolLM2 tokenizer (printed; run with -s to see them)."""
    from transformers import AutoTokenizer

    from green_profiles.models.loading import smollm2_directory

    tokenizer = AutoTokenizer.from_pretrained(smollm2_directory(data_dir))
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
