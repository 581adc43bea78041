"""Window sampling and shuffling on plain integer token arrays (no tokenizer needed).

Token ``d * BASE + p`` stands for position ``p`` of document ``d``, so a window's
provenance can be read off its ids.
"""

from __future__ import annotations

import numpy as np
import pytest

from green_profiles.text.windows import SHUFFLE_MODES, Windows, sample_windows, shuffle_windows

BASE = 1_000_000


def _documents(lengths: list[int]) -> list[np.ndarray]:
    return [d * BASE + np.arange(length, dtype=np.int64) for d, length in enumerate(lengths)]


LENGTHS = [5, 40, 300, 17, 1200, 64, 2, 900]
DOCS = _documents(LENGTHS)


def test_windows_are_contiguous_and_never_cross_a_document() -> None:
    windows = sample_windows(DOCS, length_plus_one=33, n_windows=500, seed=0)
    assert windows.ids.shape == (500, 33) and windows.ids.dtype == np.int64
    assert windows.document.dtype == np.int64 and windows.start.dtype == np.int64
    expected = windows.document[:, None] * BASE + windows.start[:, None] + np.arange(33)
    np.testing.assert_array_equal(windows.ids, expected)
    assert np.all(windows.start + 33 <= np.array(LENGTHS)[windows.document])
    assert not np.isin(windows.document, [0, 3, 6]).any()  # shorter than L+1: never used


def test_same_seed_same_windows_other_seed_other_windows() -> None:
    first = sample_windows(DOCS, 65, 200, seed=7)
    again = sample_windows(DOCS, 65, 200, seed=7)
    other = sample_windows(DOCS, 65, 200, seed=8)
    np.testing.assert_array_equal(first.ids, again.ids)
    np.testing.assert_array_equal(first.start, again.start)
    assert not np.array_equal(first.ids, other.ids)


def test_every_valid_start_once_before_any_repeats() -> None:
    docs = _documents([10, 30, 60, 3])
    valid = 10 - 4 + 1 + 30 - 4 + 1 + 60 - 4 + 1  # L+1 = 4; the 3-token document has none
    windows = sample_windows(docs, 4, valid, seed=1)
    pairs = set(zip(windows.document.tolist(), windows.start.tolist(), strict=True))
    assert len(pairs) == valid
    with pytest.warns(UserWarning, match="positions repeat"):
        doubled = sample_windows(docs, 4, 2 * valid + 5, seed=1)
    _, counts = np.unique(doubled.document * BASE + doubled.start, return_counts=True)
    assert len(counts) == valid and counts.min() == 2 and counts.max() == 3


def test_documents_are_weighted_by_their_valid_starts() -> None:
    docs = _documents([109, 399, 699])  # 10, 300 and 600 valid starts for L+1 = 100
    windows = sample_windows(docs, 100, 455, seed=3)  # half of the 910 starts
    share = np.bincount(windows.document, minlength=3) / 455
    np.testing.assert_allclose(share, np.array([10, 300, 600]) / 910, atol=0.04)


def test_too_short_corpus_says_how_short() -> None:
    with pytest.raises(ValueError, match=r"L\+1 = 2049 tokens: the longest of 8 documents has 1200 tokens"):
        sample_windows(DOCS, 2049, 4, seed=0)
    with pytest.raises(ValueError, match="longest of 0 documents has 0 tokens"):
        sample_windows([], 16, 4, seed=0)


def test_window_shuffle_keeps_each_windows_tokens() -> None:
    windows = sample_windows(DOCS, 129, 50, seed=0)
    shuffled = shuffle_windows(windows, "window", seed=0)
    np.testing.assert_array_equal(np.sort(shuffled.ids, axis=1), np.sort(windows.ids, axis=1))
    assert (shuffled.ids != windows.ids).mean() > 0.9
    np.testing.assert_array_equal(shuffled.document, windows.document)
    np.testing.assert_array_equal(shuffle_windows(windows, "window", seed=0).ids, shuffled.ids)
    assert not np.array_equal(shuffle_windows(windows, "window", seed=1).ids, shuffled.ids)
    assert shuffle_windows(windows, "none", seed=0) is windows


def test_corpus_shuffle_is_one_global_permutation() -> None:
    # With L+1 = 1 and every position sampled, the windows are the whole permuted stream.
    everything = sample_windows(DOCS, 1, sum(LENGTHS), seed=0)
    permuted = shuffle_windows(everything, "corpus", seed=4, token_docs=DOCS)
    np.testing.assert_array_equal(np.sort(permuted.ids.ravel()), np.sort(np.concatenate(DOCS)))
    assert (permuted.ids != everything.ids).mean() > 0.9
    # Long windows read the same permuted stream: overlapping windows agree on their overlap.
    windows = sample_windows(DOCS, 200, 300, seed=2)
    shuffled = shuffle_windows(windows, "corpus", seed=4, token_docs=DOCS)
    by_position: dict[tuple[int, int], int] = {}
    for row in range(len(windows)):
        for k in range(200):
            key = (int(windows.document[row]), int(windows.start[row]) + k)
            assert by_position.setdefault(key, int(shuffled.ids[row, k])) == shuffled.ids[row, k]
    # Tokens arrive from all over the corpus, not from the window's own document.
    assert (shuffled.ids // BASE != windows.document[:, None]).mean() > 0.3
    np.testing.assert_array_equal(shuffle_windows(windows, "corpus", seed=4, token_docs=DOCS).ids, shuffled.ids)
    assert not np.array_equal(shuffle_windows(windows, "corpus", seed=5, token_docs=DOCS).ids, shuffled.ids)


def test_shuffle_rejects_bad_arguments() -> None:
    windows = sample_windows(DOCS, 16, 8, seed=0)
    with pytest.raises(ValueError, match="none, window, corpus"):
        shuffle_windows(windows, "global", seed=0)
    with pytest.raises(ValueError, match="needs token_docs"):
        shuffle_windows(windows, "corpus", seed=0)
    with pytest.raises(ValueError, match="do not match"):
        shuffle_windows(windows, "corpus", seed=0, token_docs=[doc + 1 for doc in DOCS])
    assert SHUFFLE_MODES == ("none", "window", "corpus")


def test_windows_validates_shapes() -> None:
    with pytest.raises(ValueError, match=r"\[n, L\+1\]"):
        Windows(ids=np.zeros((3, 4), dtype=np.int64), document=np.zeros(2, dtype=np.int64),
                start=np.zeros(3, dtype=np.int64))  # fmt: skip
