"""The token cache (text/token_cache.py): a hit is the array the tokenizer returns, and nothing else is ever a hit."""

from __future__ import annotations

import numpy as np
import pytest

from green_profiles.models.tokenizer import train_tokenizer
from green_profiles.text.documents import Document
from green_profiles.text.token_cache import TokenCache, tokenizer_fingerprint
from green_profiles.text.windows import sample_windows_as_authors, tokenize_documents

TEXTS = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. " * 30,
    "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, "
    "and nothing particular to interest me on shore, I thought I would sail about a little. " * 25,
    "Ever since I was a child I have had an instinct for getting into trouble. " * 40,
]


def _tokenizer(vocab_size: int) -> object:
    return train_tokenizer([Document(text=text, title=str(i), source="test") for i, text in enumerate(TEXTS)],
                           vocab_size)


class _Counting:
    """A tokenizer that counts the texts it was asked to encode (a hit must not reach it)."""

    def __init__(self, tokenizer: object) -> None:
        self.tokenizer, self.texts = tokenizer, 0
        self.backend_tokenizer = tokenizer.backend_tokenizer  # type: ignore[attr-defined]

    def __call__(self, texts: str | list[str], **options: object) -> object:
        self.texts += 1 if isinstance(texts, str) else len(texts)
        return self.tokenizer(texts, **options)  # type: ignore[operator]


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return _tokenizer(300)


def test_a_hit_is_the_tokenizers_own_array_and_does_not_tokenize(tokenizer, tmp_path):
    plain = tokenize_documents(TEXTS, tokenizer)
    counting = _Counting(tokenizer)
    cache = TokenCache(tmp_path)
    first = tokenize_documents(TEXTS, counting, cache=cache)
    again = tokenize_documents(TEXTS[::-1], counting, cache=cache)
    assert counting.texts == len(TEXTS)  # the second call found every text
    for ids, cached, reread in zip(plain, first, again[::-1]):
        assert cached.dtype == reread.dtype == np.int64
        np.testing.assert_array_equal(cached, ids)
        np.testing.assert_array_equal(reread, ids)


def test_another_tokenizer_never_reads_the_first_ones_ids(tokenizer, tmp_path):
    other = _tokenizer(280)  # other merges: other ids for the same text
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tokenizer)
    cache = TokenCache(tmp_path)
    tokenize_documents(TEXTS, tokenizer, cache=cache)
    expected = tokenize_documents(TEXTS, other)
    assert any(len(a) != len(b) or (a != b).any() for a, b in zip(expected, tokenize_documents(TEXTS, tokenizer)))
    for ids, cached in zip(expected, tokenize_documents(TEXTS, other, cache=cache)):
        np.testing.assert_array_equal(cached, ids)


def test_a_damaged_file_is_tokenized_again_and_replaced(tokenizer, tmp_path):
    cache = TokenCache(tmp_path)
    expected = tokenize_documents(TEXTS[:1], tokenizer, cache=cache)[0]
    (stored,) = tmp_path.glob("*/*.npy")
    stored.write_bytes(stored.read_bytes()[:20])
    np.testing.assert_array_equal(tokenize_documents(TEXTS[:1], tokenizer, cache=cache)[0], expected)
    np.testing.assert_array_equal(np.load(stored), expected)


def test_a_tokenizer_without_a_serialized_pipeline_is_not_cached(tmp_path):
    def words(batch, add_special_tokens, verbose):  # one id per word: nothing names its behaviour
        return {"input_ids": [[len(word) for word in text.split()] for text in batch]}

    assert tokenizer_fingerprint(words) is None
    ids = tokenize_documents(TEXTS, words, cache=TokenCache(tmp_path))
    assert [len(a) for a in ids] == [len(text.split()) for text in TEXTS]
    assert not any(tmp_path.iterdir())


def test_the_authors_windows_are_the_same_with_the_cache(tokenizer, tmp_path):
    texts = [text * 2 for text in TEXTS]
    plain = sample_windows_as_authors(texts, tokenizer, 65, 5, seed=1234, min_characters=100)
    cache = TokenCache(tmp_path)
    for _ in range(2):  # the first call fills the cache, the second reads it
        cached = sample_windows_as_authors(texts, tokenizer, 65, 5, seed=1234, min_characters=100, cache=cache)
        np.testing.assert_array_equal(cached.ids, plain.ids)
        np.testing.assert_array_equal(cached.document, plain.document)
        np.testing.assert_array_equal(cached.start, plain.start)
