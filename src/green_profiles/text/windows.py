"""Token windows: contiguous chunks of ``L + 1`` tokens that never cross a document.

A window ``ids[i]`` of ``L + 1`` tokens feeds ``ids[i, :L]`` to the model; the
extra token makes ``ids[i, j + 1]`` the observed next token of target ``j``, for
every ``j < L``.

Shuffled controls (``shuffle_windows``) destroy syntax and predictability while
keeping the tokens' statistics:

``"none"``
    the windows as sampled.
``"window"``
    each window's ``L + 1`` tokens are permuted at random, independently per
    window: every window keeps its own multiset of tokens, all order is gone.
``"corpus"``
    all tokens of the corpus (the documents concatenated in order) are permuted
    by one global permutation, and each window is read back at the position it
    was sampled from, now in the permuted stream: windows keep the corpus' unigram
    statistics but not their own tokens, and neighbouring tokens are unrelated
    even across the whole corpus.

In both shuffled modes the "observed next token" of target ``j`` is the token
that follows it in the shuffled window, ``ids[i, j + 1]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from green_profiles.text.token_cache import TokenCache, encode

SHUFFLE_MODES = ("none", "window", "corpus")
# Shuffles draw from their own streams, so the same seed for sampling and shuffling
# does not correlate the two.
_STREAM = {"sample": 0, "window": 1, "corpus": 2}


@dataclass(frozen=True, eq=False)  # arrays: no element-wise __eq__
class Windows:
    """A batch of token windows and where they came from.

    Attributes:
        ids: ``[n, L + 1]`` int64 token ids.
        document: ``[n]`` int64 index of each window's document in the token list.
        start: ``[n]`` int64 token offset of each window inside its document.
    """

    ids: np.ndarray
    document: np.ndarray
    start: np.ndarray

    def __post_init__(self) -> None:
        if self.ids.ndim != 2 or self.document.shape != (len(self.ids),) or self.start.shape != (len(self.ids),):
            raise ValueError(
                f"Windows: ids must be [n, L+1] and document, start [n]; got {self.ids.shape}, "
                f"{self.document.shape}, {self.start.shape}"
            )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def length_plus_one(self) -> int:
        """``L + 1``, the number of tokens per window."""
        return self.ids.shape[1]


def tokenize_documents(documents: Sequence[object], tokenizer: object, *,
                       cache: TokenCache | None = None) -> list[np.ndarray]:
    """Token ids of each document, without special tokens (no BOS/EOS).

    Args:
        documents: :class:`green_profiles.text.Document` objects (their ``text``)
            or plain strings.
        tokenizer: a Hugging Face tokenizer (anything callable as
            ``tokenizer(texts, add_special_tokens=False)`` returning ``input_ids``).
        cache: where ids computed before are read from and new ones kept; ``None`` tokenizes.

    Returns:
        one int64 array ``[n_tokens_d]`` per document, in order.
    """
    texts = [doc if isinstance(doc, str) else doc.text for doc in documents]  # type: ignore[attr-defined]
    return cache.encode(texts, tokenizer) if cache is not None else encode(texts, tokenizer)


def sample_windows(token_docs: Sequence[np.ndarray], length_plus_one: int, n_windows: int, seed: int) -> Windows:
    """Sample contiguous windows uniformly over all valid start positions of all documents.

    A document of ``T`` tokens has ``max(0, T - (L + 1) + 1)`` valid starts; the
    draw is uniform over the union of all of them (so documents are weighted by
    their number of valid starts), without repeating a ``(document, start)`` pair
    unless ``n_windows`` exceeds the number of valid starts (then every start is
    used as evenly as possible, with a warning). Windows overlap freely otherwise.
    Deterministic for a given ``seed`` (numpy ``Generator``).

    Args:
        token_docs: token ids per document, each ``[T_d]``.
        length_plus_one: ``L + 1``, tokens per window.
        n_windows: number of windows ``n``.
        seed: the sampling seed.

    Returns:
        :class:`Windows` with ``ids [n, L + 1]`` int64, in random order.

    Raises:
        ValueError: no document has ``L + 1`` tokens, or bad sizes.
    """
    if length_plus_one < 1 or n_windows < 0:
        raise ValueError(f"length_plus_one must be >= 1 and n_windows >= 0; got {length_plus_one}, {n_windows}")
    lengths = np.array([len(doc) for doc in token_docs], dtype=np.int64)
    starts_per_doc = np.maximum(lengths - length_plus_one + 1, 0)
    total = int(starts_per_doc.sum())
    if total == 0:
        longest = int(lengths.max()) if len(lengths) else 0
        raise ValueError(
            f"no document is long enough for a window of L+1 = {length_plus_one} tokens: the longest of "
            f"{len(lengths)} documents has {longest} tokens"
        )
    rng = np.random.default_rng([seed, _STREAM["sample"]])
    if n_windows <= total:
        flat = rng.choice(total, size=n_windows, replace=False)
    else:
        warnings.warn(
            f"{n_windows} windows requested but only {total} distinct (document, start) positions exist for "
            f"L+1 = {length_plus_one}: positions repeat",
            stacklevel=2,
        )
        repeats, remainder = divmod(n_windows, total)
        flat = np.concatenate([np.arange(total).repeat(repeats), rng.choice(total, size=remainder, replace=False)])
        flat = rng.permutation(flat)
    # Global start index -> (document, offset): documents own consecutive ranges of flat indices.
    boundaries = np.cumsum(starts_per_doc)
    document = np.searchsorted(boundaries, flat, side="right").astype(np.int64)
    start = (flat - (boundaries[document] - starts_per_doc[document])).astype(np.int64)
    ids = _gather(token_docs, document, start, length_plus_one)
    return Windows(ids=ids, document=document, start=start)


def sample_windows_as_authors(
    texts: Sequence[str],
    tokenizer: object,
    length_plus_one: int,
    n_windows: int,
    seed: int,
    *,
    min_characters: int = 2_000,
    max_documents: int = 1_500,
    cache: TokenCache | None = None,
) -> Windows:
    """The windows the paper's published scripts draw (PROTOCOL.md), for the same file and seed.

    The rule, step by step: keep the documents of at least ``min_characters``
    characters, at most ``max_documents`` of them, in file order; shuffle that list
    with ``numpy.random.default_rng(seed).shuffle`` (the paper: seed 1234);
    tokenize in the shuffled order without special tokens, keeping documents of at
    least ``L + 1`` tokens, until ``max(8, min(n_windows, n_documents))`` are kept;
    then, for each window, draw a kept document ``k = rng.integers(0, n_kept)`` and
    a start ``rng.integers(0, len(doc_k) - (L + 1) + 1)`` from the same generator.
    Documents repeat and windows may overlap, unlike :func:`sample_windows`.

    Args:
        texts: the documents' texts, in file order.
        tokenizer: a Hugging Face tokenizer (called on one text at a time, as the authors do).
        length_plus_one: ``L + 1``, tokens per window.
        n_windows: number of windows ``n``.
        seed: the generator's seed.
        cache: token ids computed before (see :func:`tokenize_documents`).

    Returns:
        :class:`Windows` with ``ids [n, L + 1]`` in drawing order and ``document``
        the index of each window's text in ``texts``.

    Raises:
        ValueError: no document has ``L + 1`` tokens.
    """
    eligible = np.array([i for i, text in enumerate(texts) if len(text) >= min_characters][:max_documents],
                        dtype=np.int64)
    rng = np.random.default_rng(seed)
    rng.shuffle(eligible)  # the same permutation as shuffling the list of records itself
    wanted = max(8, min(n_windows, len(eligible)))
    kept_index, kept_ids = [], []
    for index in eligible.tolist():
        ids = tokenize_documents([texts[index]], tokenizer, cache=cache)[0]
        if len(ids) >= length_plus_one:
            kept_index.append(index)
            kept_ids.append(ids)
            if len(kept_ids) >= wanted:
                break
    if not kept_ids:
        raise ValueError(f"no document of at least {min_characters} characters is long enough for a window of "
                         f"L+1 = {length_plus_one} tokens ({len(eligible)} documents tried)")
    document = np.empty(n_windows, dtype=np.int64)
    start = np.empty(n_windows, dtype=np.int64)
    ids = np.empty((n_windows, length_plus_one), dtype=np.int64)
    for window in range(n_windows):
        k = int(rng.integers(0, len(kept_ids)))
        offset = int(rng.integers(0, len(kept_ids[k]) - length_plus_one + 1))
        document[window], start[window] = kept_index[k], offset
        ids[window] = kept_ids[k][offset : offset + length_plus_one]
    return Windows(ids=ids, document=document, start=start)


def shuffle_windows(
    windows: Windows, mode: str, seed: int, token_docs: Sequence[np.ndarray] | None = None
) -> Windows:
    """The shuffled control of a batch of windows (see the module docstring).

    Args:
        windows: windows from :func:`sample_windows`.
        mode: ``"none"`` (returned as is), ``"window"`` (each window's ``L + 1``
            tokens permuted independently: the multiset of each window is kept;
            the observed next token of target ``j`` becomes the shuffled token at
            ``j + 1``) or ``"corpus"`` (one permutation of all the corpus' tokens,
            documents concatenated in order; each window is read at its own
            ``(document, start)`` position of the permuted stream: the corpus'
            multiset is kept, a window's is not).
        seed: the shuffling seed; the same seed gives the same shuffle.
        token_docs: the token ids the windows were sampled from; required for
            ``"corpus"`` (checked against the windows).

    Returns:
        :class:`Windows` with the same ``document`` and ``start`` and shuffled ``ids``.
    """
    if mode not in SHUFFLE_MODES:
        raise ValueError(f"unknown shuffle mode {mode!r}: use one of {', '.join(SHUFFLE_MODES)}")
    if mode == "none":
        return windows
    rng = np.random.default_rng([seed, _STREAM[mode]])
    if mode == "window":
        return Windows(ids=rng.permuted(windows.ids, axis=1), document=windows.document, start=windows.start)
    if token_docs is None:
        raise ValueError("shuffle mode 'corpus' needs token_docs, the token ids the windows were sampled from")
    if len(windows) and not np.array_equal(
        _gather(token_docs, windows.document, windows.start, windows.length_plus_one), windows.ids
    ):
        raise ValueError("token_docs do not match the windows: pass the token ids they were sampled from")
    stream = np.concatenate([np.asarray(doc, dtype=np.int64) for doc in token_docs])
    offsets = np.concatenate([[0], np.cumsum([len(doc) for doc in token_docs])[:-1]]).astype(np.int64)
    permuted = rng.permutation(stream)
    positions = offsets[windows.document, None] + windows.start[:, None] + np.arange(windows.length_plus_one)
    return Windows(ids=permuted[positions], document=windows.document, start=windows.start)


def _gather(
    token_docs: Sequence[np.ndarray], document: np.ndarray, start: np.ndarray, length_plus_one: int
) -> np.ndarray:
    """``ids[i] = token_docs[document[i]][start[i] : start[i] + L + 1]``, as int64 ``[n, L + 1]``."""
    ids = np.empty((len(document), length_plus_one), dtype=np.int64)
    for row, (doc, offset) in enumerate(zip(document.tolist(), start.tolist(), strict=True)):
        chunk = token_docs[doc][offset : offset + length_plus_one]
        if len(chunk) != length_plus_one:
            raise ValueError(f"window {row} (document {doc}, start {offset}) runs past its document's end")
        ids[row] = chunk
    return ids
