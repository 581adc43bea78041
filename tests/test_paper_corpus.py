"""The paper's Gutenberg document file and the authors' window rule, offline: a local JSONL in their
format gives the windows their scripts would draw from it, and the builder keeps what they kept."""

from __future__ import annotations

import json

import numpy as np
import pytest

from green_profiles.files import hub
from green_profiles.text import CorpusUnavailableError, read_jsonl
from green_profiles.text.paper import (
    PAPER_SOURCES,
    build_paper_gutenberg,
    paper_gutenberg_path,
    select_long_documents,
    text_column,
)
from green_profiles.text.windows import sample_windows_as_authors


class WordTokenizer:
    """Token id = a word's first letter (a..z -> 0..25): enough to check which words a window holds."""

    def __call__(self, text, add_special_tokens=False, verbose=False):
        assert add_special_tokens is False
        return {"input_ids": [ord(word[0]) - ord("a") for word in text.split()]}


def words(n: int, letter: str) -> str:
    return " ".join([letter * 3] * n)


# Worked out once by hand with numpy 2's default_rng(1234): the shuffled order of the eligible texts,
# and the (text, start) of each window.
HAND_ORDER = [0, 4, 1, 3]
HAND_WINDOWS = [(0, 2), (0, 0), (0, 0), (1, 0)]


def test_authors_windows_by_hand_on_a_small_file():
    # Eligible texts (>= 10 characters): 0, 1, 3, 4 (text 2 is too short by characters);
    # with L + 1 = 3 tokens text 4 (2 words) is too short by tokens.
    texts = [words(5, "a"), words(4, "b"), "c", words(6, "d"), "eeeeeeee eeeeeeee"]
    windows = sample_windows_as_authors(texts, WordTokenizer(), 3, 4, seed=1234, min_characters=10)
    # The rule written out with the same generator calls.
    rng = np.random.default_rng(1234)
    order = [0, 1, 3, 4]
    rng.shuffle(order)
    kept = [i for i in order if len(texts[i].split()) >= 3]  # max(8, min(4, 4)) = 8: every long one
    expected = []
    for _ in range(4):
        k = kept[int(rng.integers(0, len(kept)))]
        start = int(rng.integers(0, len(texts[k].split()) - 3 + 1))
        expected.append((k, start))
    assert list(zip(windows.document.tolist(), windows.start.tolist())) == expected
    assert (order, expected) == (HAND_ORDER, HAND_WINDOWS)
    first_letter = {0: 0, 1: 1, 3: 3}
    for (k, _), ids in zip(expected, windows.ids):
        assert ids.tolist() == [first_letter[k]] * 3


def test_authors_windows_match_their_loop_over_records():
    """Shuffling the records themselves (as their scripts do) and our index array give the same windows."""
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(list("abcdefgh"), size=int(n))) for n in rng.integers(1, 60, size=40)]
    records = [{"text": t} for t in texts if len(t) >= 20][:25]
    generator = np.random.default_rng(7)
    generator.shuffle(records)
    kept = []
    for record in records:
        ids = WordTokenizer()(record["text"])["input_ids"]
        if len(ids) >= 11:
            kept.append(ids)
            if len(kept) >= max(8, min(30, 25)):
                break
    theirs = []
    for _ in range(30):
        k = generator.integers(0, len(kept))
        start = generator.integers(0, len(kept[k]) - 11 + 1)
        theirs.append(kept[k][start : start + 11])
    ours = sample_windows_as_authors(texts, WordTokenizer(), 11, 30, seed=7, min_characters=20, max_documents=25)
    assert ours.ids.tolist() == theirs


def test_authors_windows_refuse_a_file_without_long_documents():
    with pytest.raises(ValueError, match="long enough"):
        sample_windows_as_authors([words(3, "a")], WordTokenizer(), 10, 2, seed=0, min_characters=1)


def test_text_column_follows_the_authors_preference():
    assert text_column(["id", "TEXT", "text"]) == "text"
    assert text_column(["id", "book_text", "content"]) == "book_text"
    assert text_column(["id", "the_text_field"]) == "the_text_field"
    assert text_column(["id", "title"]) is None


def test_selection_keeps_long_documents_in_stream_order_up_to_the_limits():
    rows = [{"id": i, "content": "x" * (2000 if i % 3 == 0 else 1999)} for i in range(100)]
    result = select_long_documents(rows, source="s", split="train", max_documents=5)
    assert [r["source_index"] for r in result.records] == [0, 3, 6, 9, 12]
    assert result.text_column == "content" and result.records[0]["n_chars"] == 2000
    assert set(result.records[0]) == {"text", "source_dataset", "split", "source_index", "n_chars"}
    few = select_long_documents(({"text": "short"} for _ in range(10**6)), source="s", split="train",
                                max_documents=3)
    assert few.records == [] and few.scanned == 2000  # at most max(3 * 20, 2000) examples are read


def test_builder_falls_back_in_the_authors_order_and_writes_a_manifest(tmp_path):
    asked = []

    def stream(repo, split):
        asked.append((repo, split))
        if repo == PAPER_SOURCES[0]:
            raise ConnectionError("dataset not found")
        if repo == PAPER_SOURCES[1]:
            return iter([{"text": "too short"}])
        return iter([{"book": "y" * 2500, "title": "Y"}, {"book": "z" * 10}, {"book": "w" * 3000}])

    path = build_paper_gutenberg(tmp_path, stream=stream)
    assert path == paper_gutenberg_path(tmp_path)
    assert asked == [(PAPER_SOURCES[0], "train"), (PAPER_SOURCES[0], "en"), (PAPER_SOURCES[1], "train"),
                     (PAPER_SOURCES[1], "en"), (PAPER_SOURCES[2], "train")]
    documents = read_jsonl(path)
    assert [len(d.text) for d in documents] == [2500, 3000]
    assert documents[1].title == f"{PAPER_SOURCES[2]}#2" and documents[1].source == PAPER_SOURCES[2]
    manifest = json.loads(path.with_suffix(".manifest.json").read_text())
    assert manifest["source_dataset"] == PAPER_SOURCES[2] and manifest["documents"] == 2


def test_without_the_file_and_the_hub_the_error_says_where_to_put_it(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")  # an empty cache
    monkeypatch.setattr(hub, "offline_reason", lambda: "the hub (test) could not be reached")
    with pytest.raises(CorpusUnavailableError, match="could not be reached, and none of the authors' sources .* "
                                                     "is in the local .* cache.*Put the authors' JSONL"):
        build_paper_gutenberg(tmp_path)


def test_without_the_hub_the_builder_reads_cached_sources_in_the_authors_order(tmp_path, monkeypatch):
    """Streaming reads no cache: offline, the builder reads each source's cached copy instead, with the same
    fallbacks; a cached source without a long document is reported as such, not as "not cached"."""
    from green_profiles.text import paper

    asked = []

    def from_cache(repo, split):
        asked.append((repo, split))
        if repo == PAPER_SOURCES[1]:
            return iter([{"TEXT": "short", "SOURCE": "gutenberg"}])
        if repo == PAPER_SOURCES[2] and split == "en":
            return iter([{"text": "x" * 2000}, {"text": "y"}, {"text": "z" * 2100}])
        raise ConnectionError(f"Couldn't reach '{repo}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(hub, "offline_reason", lambda: "the hub (test) could not be reached")
    monkeypatch.setattr(paper, "_read_from_cache", from_cache)
    path = build_paper_gutenberg(tmp_path)
    assert asked == [(PAPER_SOURCES[0], "train"), (PAPER_SOURCES[0], "en"), (PAPER_SOURCES[1], "train"),
                     (PAPER_SOURCES[1], "en"), (PAPER_SOURCES[2], "train"), (PAPER_SOURCES[2], "en")]
    assert [d.title for d in read_jsonl(path)] == [f"{PAPER_SOURCES[2]}#0", f"{PAPER_SOURCES[2]}#2"]
    manifest = json.loads(path.with_suffix(".manifest.json").read_text())
    assert manifest["split"] == "en" and manifest["read_from"].startswith("the local Hugging Face datasets cache")
    path.unlink()

    def only_short_books_cached(repo, split):
        return iter([{"TEXT": "short"}]) if repo == PAPER_SOURCES[1] else from_cache("-", split)

    monkeypatch.setattr(paper, "_read_from_cache", only_short_books_cached)
    with pytest.raises(CorpusUnavailableError, match=r"no source in the local .* gave a document: "
                                                     r"adhyanshaa/project-gutenberg-en \(train\): no example"):
        build_paper_gutenberg(tmp_path)


def test_a_run_with_the_authors_sampler_measures_their_windows(tiny_setup, tmp_path):
    """Through the run store: the stored windows are the ones the authors' rule draws from the file."""
    from support import WORDS, tiny_config
    from transformers import AutoTokenizer

    from green_profiles.analysis.profiles import run_profile

    model_dir, _ = tiny_setup
    rng = np.random.default_rng(3)
    file = tmp_path / "books.jsonl"
    texts = [" ".join(rng.choice(WORDS, size=int(n))) for n in (30, 400, 500, 350)]
    file.write_text("".join(json.dumps({"text": t, "source_dataset": "test", "source_index": i}) + "\n"
                            for i, t in enumerate(texts)))
    run = run_profile(tiny_config(tiny_setup, corpus=str(file), sampler="authors", seed=1234, n_windows=6),
                      data_dir=tmp_path, progress=False)
    expected = sample_windows_as_authors(texts, AutoTokenizer.from_pretrained(model_dir), 49, 6, seed=1234)
    assert run.arrays["window_ids"].tolist() == expected.ids.tolist()
    assert run.arrays["document"].tolist() == expected.document.tolist()
    assert 0 not in run.arrays["document"]  # the 30-word text has fewer than 2,000 characters
