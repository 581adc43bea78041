"""How dependence between tokens decays with distance in the text itself.

The mutual information between the token at ``t`` and the token at ``t + r``,
``I(r) = H(X_t) + H(X_{t+r}) - H(X_t, X_{t+r})`` in bits, over every pair inside one
document (never across two), on the tokens the model reads, at the distances of the
project's grid. With a large vocabulary the plug-in estimate is biased up by bits
where the dependence is hundredths of a bit, so each entropy gets the Miller–Madow
correction and the same estimate for the pairs re-paired across documents by a
rotation (:func:`rotated_pairs`) is subtracted (:attr:`MutualInformationProfile.corrected`).
Intervals come from document half-samples, not the bootstrap (duplicated documents
read as dependence). Why each choice, and how accurate the estimator is: the book's
methods page, "The text's own decay" (``book/methods.md``); ``tests/test_text_statistics.py``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse
from scipy.special import xlogy

from green_profiles.runs.configuration import PAPER_DISTANCES
from green_profiles.analysis.fits import BootstrapResult, FitTable, Verdict, fit_replicates, verdict
from green_profiles.text.windows import SHUFFLE_MODES
from green_profiles.text.windows import tokenize_documents

__all__ = [
    "MutualInformation",
    "MutualInformationFit",
    "MutualInformationProfile",
    "can_rotate",
    "distance_grid",
    "document_pairs",
    "entropy_bits",
    "fit_mutual_information",
    "level_summary",
    "limit_tokens",
    "mutual_information",
    "mutual_information_profile",
    "rotated_pairs",
    "shuffle_token_documents",
    "tokenized_sample",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Independent random streams per use, so that one seed serves all of them without correlating them.
_STREAM = {"permutation": 0, "halves": 1, "window": 2, "corpus": 3, "limit": 4}
# Dense block of the half-samples' shared bins, in matrix entries (8 bytes each): ~32 MB at a time.
_BLOCK_ENTRIES = 4_000_000


# ----------------------------------------------------------------------------------------
# Pairs and plain estimates
# ----------------------------------------------------------------------------------------


def document_pairs(token_docs: Sequence[ArrayLike], distance: int) -> tuple[IntArray, IntArray, IntArray]:
    """Every token pair ``(x[t], x[t + r])`` inside each document, never across two.

    Args:
        token_docs: token ids per document, each ``[T_d]``.
        distance: ``r >= 1`` in tokens.

    Returns:
        ``(first, second, document)``, each int64 ``[n_pairs]`` with
        ``n_pairs = sum_d max(T_d - r, 0)``: the earlier token, the later one, and the
        index of the document both come from.
    """
    if distance < 1:
        raise ValueError(f"distance must be >= 1, got {distance}")
    firsts, seconds, documents = [], [], []
    for index, doc in enumerate(token_docs):
        ids = np.asarray(doc, dtype=np.int64)
        if ids.size > distance:
            firsts.append(ids[:-distance])
            seconds.append(ids[distance:])
            documents.append(np.full(ids.size - distance, index, dtype=np.int64))
    if not firsts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(documents)


def entropy_bits(counts: ArrayLike, *, miller_madow: bool = False) -> float:
    """Entropy in bits of the distribution with these bin counts (zeros allowed), plug-in or Miller–Madow.

    Args:
        counts: ``[n_bins]`` non-negative counts.
        miller_madow: add ``(K - 1) / (2 N)`` nats, ``K`` the occupied bins, ``N`` the total.

    Returns:
        ``H`` in bits; NaN when there are no counts.
    """
    n = np.asarray(counts, dtype=np.float64)
    n = n[n > 0]
    total = float(n.sum())
    if total == 0:
        return math.nan
    nats = math.log(total) - float(xlogy(n, n).sum()) / total
    if miller_madow:
        nats += (n.size - 1) / (2.0 * total)
    return nats / math.log(2.0)


@dataclass(frozen=True)
class MutualInformation:
    """One mutual-information estimate, in bits, from ``n_pairs`` pairs.

    ``plugin`` uses the plug-in entropies; ``miller_madow`` corrects each of the
    three entropies by ``(K - 1) / (2N)``; their difference ``plugin - miller_madow``
    is the first-order bias ``(K_xy - K_x - K_y + 1) / (2 N ln 2)``.
    """

    plugin: float
    miller_madow: float
    n_pairs: int


def mutual_information(first: ArrayLike, second: ArrayLike) -> MutualInformation:
    """Mutual information between paired tokens, in bits, plug-in and Miller–Madow (no permutation baseline).

    Args:
        first, second: int token ids ``[n_pairs]``, ``first[i]`` paired with ``second[i]``.

    Returns:
        a :class:`MutualInformation`.
    """
    a = np.asarray(first, dtype=np.int64).ravel()
    b = np.asarray(second, dtype=np.int64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"first and second must have the same length, got {a.size} and {b.size}")
    if a.size == 0:
        return MutualInformation(math.nan, math.nan, 0)
    width = int(max(a.max(), b.max())) + 1
    counts = [np.unique(values, return_counts=True)[1] for values in (a, b, a * width + b)]
    plugin = [entropy_bits(c) for c in counts]
    corrected = [entropy_bits(c, miller_madow=True) for c in counts]
    return MutualInformation(plugin[0] + plugin[1] - plugin[2], corrected[0] + corrected[1] - corrected[2], a.size)


# ----------------------------------------------------------------------------------------
# Entropies of resampled corpora
# ----------------------------------------------------------------------------------------


class _DocumentCounts:
    """Counts of values (tokens, or pair codes) per document, for the entropy of any resampled corpus.

    A replicate counts document ``d`` ``w_d`` times (0 or 1 for a half-sample), so a bin's count is
    ``n_k = sum_d w_d c_dk``, and the entropy needs ``N = sum_k n_k``,
    ``S = sum_k n_k ln n_k`` and the occupied bins ``K``. Most bins (rare values,
    most joint pairs) occur in one document only; for those ``n ln n = w c (ln w + ln c)``
    sums to per-document constants, ``w_d T_d + w_d ln(w_d) S_d``. Only the bins
    shared by several documents are summed explicitly, as a sparse
    ``[n_shared_bins, n_documents]`` matrix times the weights.
    """

    def __init__(self, values: IntArray, document: IntArray, n_documents: int) -> None:
        keys, counts = np.unique(values * n_documents + document, return_counts=True)
        value, doc = np.divmod(keys, n_documents)
        # keys are sorted by value, then document: a run of equal values is one bin.
        run = np.cumsum(np.r_[True, value[1:] != value[:-1]]) - 1
        shared = np.bincount(run)[run] > 1
        own = ~shared
        c = counts.astype(np.float64)
        self.items = np.bincount(doc, weights=c, minlength=n_documents)
        self.own_items = np.bincount(doc[own], weights=c[own], minlength=n_documents)
        self.own_clogc = np.bincount(doc[own], weights=xlogy(c[own], c[own]), minlength=n_documents)
        self.own_bins = np.bincount(doc[own], minlength=n_documents).astype(np.float64)
        shared_bin = np.cumsum(np.r_[True, run[shared][1:] != run[shared][:-1]]) - 1 if shared.any() else run[:0]
        n_shared = int(shared_bin[-1]) + 1 if shared_bin.size else 0
        self.shared = sparse.csr_matrix((c[shared], (shared_bin, doc[shared])), shape=(n_shared, n_documents))

    def entropies(self, weights: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Plug-in and Miller–Madow entropies, in bits, of each resampled corpus.

        Args:
            weights: ``[n_documents, n_replicates]`` multiplicity of each document in each replicate.

        Returns:
            ``(plugin, miller_madow)``, each ``[n_replicates]`` (NaN where a replicate has no item).
        """
        total = self.items @ weights
        s = self.own_clogc @ weights + self.own_items @ xlogy(weights, weights)
        k = self.own_bins @ (weights > 0)
        block = max(1, _BLOCK_ENTRIES // max(self.shared.shape[0], 1))
        for start in range(0, weights.shape[1], block):
            dense = np.asarray(self.shared @ weights[:, start:start + block])
            s[start:start + block] += xlogy(dense, dense).sum(axis=0)
            k[start:start + block] += (dense > 0).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            plugin = (np.log(total) - s / total) / math.log(2.0)
            miller_madow = plugin + (k - 1) / (2.0 * total * math.log(2.0))
        return plugin, miller_madow


# ----------------------------------------------------------------------------------------
# The profile I(r)
# ----------------------------------------------------------------------------------------


def distance_grid(token_docs: Sequence[ArrayLike], max_distance: int | None = None,
                  grid: Sequence[int] = PAPER_DISTANCES) -> IntArray:
    """The distances ``r >= 1`` of ``grid`` up to ``max_distance`` that some document is long enough for.

    Returns:
        int64 ``[n_r]``, increasing.
    """
    longest = max((len(doc) for doc in token_docs), default=0)
    limit = longest - 1 if max_distance is None else min(int(max_distance), longest - 1)
    return np.asarray([r for r in grid if 1 <= r <= limit], dtype=np.int64)


@dataclass(frozen=True, eq=False)  # arrays: no element-wise __eq__
class MutualInformationProfile:
    """``I(r)`` of a corpus in bits, with its bias corrections and document half-sample replicates.

    Arrays are ``[n_r]`` over ``distances`` unless noted. ``plugin`` and
    ``miller_madow`` are the raw estimates (their difference is the first-order
    bias). ``baseline`` is the mean Miller–Madow estimate over ``n_permutations``
    rotations of the second side (``baseline_std`` their spread);
    ``corrected = miller_madow - baseline`` is the estimate this package reports and
    fits. ``permutation_baseline`` (``permutation_baseline_std``) is the same for
    uniformly random permutations, reported for comparison
    (``permutation_corrected``). ``half_samples`` ``[n_half_samples, n_r]`` are the
    corrected values of the half-samples of documents, each with its own rotation
    baseline, averaged over as many rotations as the full data's; ``replicates`` (same shape)
    centres them on the full-data value (book/methods.md, "The text's own decay"). ``n_pairs``
    counts the pairs at each distance. ``rotation_fallback`` ``[n_r]`` marks the distances where
    no rotation exists (one document holds more than half of the pairs) and the full data's
    baseline is a uniform permutation's, whose bias the rotation exists to avoid;
    ``half_fallbacks`` counts the half-samples' baselines that fell back the same way.
    """

    distances: IntArray
    n_pairs: IntArray
    plugin: FloatArray
    miller_madow: FloatArray
    baseline: FloatArray
    baseline_std: FloatArray
    permutation_baseline: FloatArray
    permutation_baseline_std: FloatArray
    half_samples: FloatArray
    n_documents: int
    n_tokens: int
    seed: int
    n_permutations: int
    confidence: float = 0.95
    rotation_fallback: NDArray[np.bool_] | None = None
    half_fallbacks: int = 0

    @property
    def corrected(self) -> FloatArray:
        """``I(r)`` in bits: Miller–Madow minus the rotation baseline's mean, ``[n_r]``."""
        return self.miller_madow - self.baseline

    @property
    def permutation_corrected(self) -> FloatArray:
        """Miller–Madow minus the uniform permutation baseline's mean, bits ``[n_r]`` (for comparison)."""
        return self.miller_madow - self.permutation_baseline

    @property
    def n_half_samples(self) -> int:
        """Half-sample replicates."""
        return int(self.half_samples.shape[0])

    @property
    def half_sample_shift(self) -> FloatArray:
        """Mean corrected ``I`` of the half-samples minus the full data's, bits ``[n_r]``: the estimator's
        dependence on the amount of text (NaN without replicates)."""
        if self.n_half_samples == 0:
            return np.full(self.distances.size, np.nan)
        return self.half_samples.mean(axis=0) - self.corrected

    @property
    def replicates(self) -> FloatArray:
        """The full-data ``I(r)`` plus each half-sample's deviation from the half-samples' mean,
        ``[n_half_samples, n_r]`` bits."""
        if self.n_half_samples == 0:
            return self.half_samples.copy()
        return self.corrected + (self.half_samples - self.half_samples.mean(axis=0))

    def interval(self) -> tuple[FloatArray, FloatArray]:
        """Percentile interval of ``corrected`` at each distance over the replicates, ``([n_r], [n_r])`` bits.

        NaN where there are no finite replicates (no half-samples).
        """
        tail = 50.0 * (1.0 - self.confidence)
        low, high = np.full(self.distances.size, np.nan), np.full(self.distances.size, np.nan)
        replicates = self.replicates
        for j in range(self.distances.size):
            finite = replicates[:, j][np.isfinite(replicates[:, j])]
            if finite.size:
                low[j], high[j] = np.percentile(finite, [tail, 100.0 - tail])
        return low, high

    def to_dataframe(self) -> Any:
        """One row per distance: pairs, the raw, baseline and corrected estimates and the interval (bits)."""
        import pandas as pd

        low, high = self.interval()
        return pd.DataFrame({
            "r": self.distances, "pairs": self.n_pairs, "plug-in": self.plugin, "Miller–Madow": self.miller_madow,
            "rotation baseline": self.baseline, "rotation sd": self.baseline_std,
            "permutation baseline": self.permutation_baseline, "I(r)": self.corrected, "low": low, "high": high,
            "I(r), permutation": self.permutation_corrected, "half-sample shift": self.half_sample_shift,
        }).set_index("r")


def _joint_codes(first: IntArray, second: IntArray, width: int) -> NDArray[np.integer]:
    """One integer per pair, ``first * width + second``; 32-bit where that fits (sorting is then twice as fast)."""
    codes = first * width + second
    return codes.astype(np.uint32) if width * width <= 2**32 else codes


def _joint_entropies(codes: NDArray[np.integer]) -> tuple[float, float]:
    """Plug-in and Miller–Madow entropy (bits) of the pair codes' distribution."""
    counts = np.unique(codes, return_counts=True)[1]
    return entropy_bits(counts), entropy_bits(counts, miller_madow=True)


def _miller_madow_joints(codes: Iterable[NDArray[np.integer]]) -> list[float]:
    """The Miller–Madow joint entropy (bits) of each array of pair codes, in order, counted on every core.

    Counting (a sort) is most of the text statistics' time and releases the GIL, so threads share it;
    at most two arrays per thread wait in memory.
    """
    workers = max(1, min(os.cpu_count() or 1, 8))
    results: list[float] = []
    pending: collections.deque[concurrent.futures.Future[tuple[float, float]]] = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for array in codes:
            pending.append(pool.submit(_joint_entropies, array))
            if len(pending) >= 2 * workers:
                results.append(pending.popleft().result()[1])
        results.extend(future.result()[1] for future in pending)
    return results


def _document_runs(document: IntArray) -> tuple[IntArray, IntArray]:
    """Where each document's pairs start in ``document`` ``[n_pairs]`` (grouped), and how many there are."""
    starts = np.r_[0, np.flatnonzero(np.diff(document)) + 1]
    return starts, np.diff(np.r_[starts, document.size])


def can_rotate(document: IntArray) -> bool:
    """Whether :func:`rotated_pairs` can re-pair these pairs across documents (``document`` ``[n_pairs]``,
    grouped): at least two documents, none holding more than half of the pairs."""
    lengths = _document_runs(document)[1]
    return lengths.size >= 2 and document.size >= 2 * int(lengths.max())


def rotated_pairs(first: IntArray, second: IntArray, document: IntArray,
                  rng: np.random.Generator) -> tuple[IntArray, IntArray]:
    """The pairs of the rotation baseline: the same tokens on each side, re-paired across documents.

    The pairs (grouped by document, as :func:`document_pairs` returns them) are put
    in a random order of documents, and the second side is rotated by a random
    offset of at least the longest document's pairs, so that every first token is
    paired with a second token of another document. Both marginals are unchanged
    (a rotation is a permutation), the two sides are independent, and each side keeps
    its own order, so runs and bursts of repeated tokens align by chance exactly as
    often as they would between two unrelated texts. Where one document holds more
    than half of the pairs no such offset exists, and a uniform permutation is used.

    Returns:
        ``(first, second)`` re-paired, each ``[n_pairs]``.
    """
    if not can_rotate(document):
        return first, second[rng.permutation(second.size)]
    starts, lengths = _document_runs(document)
    longest = int(lengths.max())
    order = rng.permutation(lengths.size)
    index = np.concatenate([np.arange(starts[k], starts[k] + lengths[k]) for k in order])
    offset = int(rng.integers(longest, document.size - longest + 1))
    return first[index], np.roll(second[index], offset)


def mutual_information_profile(
    token_docs: Sequence[ArrayLike],
    distances: Sequence[int] | None = None,
    *,
    max_distance: int | None = None,
    n_half_samples: int = 50,
    seed: int = 0,
    n_permutations: int = 4,
    confidence: float = 0.95,
) -> MutualInformationProfile:
    """``I(r)`` of a tokenized corpus at each distance, bias-corrected, with document half-sample replicates.

    Args:
        token_docs: token ids per document, each ``[T_d]`` (pairs never cross documents).
        distances: ``r >= 1`` in tokens; default :func:`distance_grid` of the paper's grid up to ``max_distance``.
        max_distance: the largest distance of the default grid (tokens); ``None``: the longest document allows.
        n_half_samples: half-samples of the documents for the intervals (0: none).
        seed: seeds the baselines and the half-samples; the same seed gives the same result.
        n_permutations: rotations (and uniform permutations) averaged for each baseline, the full data's and each
            half-sample's (at least 1).
        confidence: coverage of the percentile intervals.

    Returns:
        a :class:`MutualInformationProfile` (estimator and intervals: book/methods.md).

    Raises:
        ValueError: no usable distance, ``n_permutations < 1``, or half-samples asked of fewer than two documents.
    """
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    docs = [np.asarray(doc, dtype=np.int64) for doc in token_docs]
    n_documents = len(docs)
    if n_half_samples < 0 or (n_half_samples > 0 and n_documents < 2):
        raise ValueError(f"half-samples need n_half_samples >= 0 and at least 2 documents; got {n_half_samples} "
                         f"and {n_documents} documents")
    r_grid = (distance_grid(docs, max_distance) if distances is None
              else np.asarray(sorted({int(r) for r in distances}), dtype=np.int64))
    if r_grid.size == 0 or r_grid[0] < 1:
        raise ValueError(f"need distances >= 1 that some document is long enough for, got {r_grid.tolist()}")
    width = int(max((doc.max() for doc in docs if doc.size), default=0)) + 1

    # One set of half-samples for every distance: a replicate is one half of the corpus.
    # Column 0 is the full data (every document once).
    halves = np.random.default_rng([seed, _STREAM["halves"]])
    weights = np.ones((n_documents, n_half_samples + 1))
    for b in range(n_half_samples):
        weights[:, b + 1] = 0.0
        weights[halves.choice(n_documents, size=n_documents // 2, replace=False), b + 1] = 1.0

    n_r = r_grid.size
    out = {name: np.full(n_r, np.nan) for name in ("plugin", "miller_madow", "baseline", "baseline_std",
                                                    "permutation_baseline", "permutation_baseline_std")}
    half_samples = np.full((n_half_samples, n_r), np.nan)
    n_pairs = np.zeros(n_r, dtype=np.int64)
    fallback = np.zeros(n_r, dtype=bool)
    half_fallbacks = 0
    for j, r in enumerate(r_grid):
        first, second, document = document_pairs(docs, int(r))
        n_pairs[j] = first.size
        if first.size == 0:
            continue
        # Marginal and joint entropies of the real pairs, for the full data and every half at once.
        first_plugin, first_mm = _DocumentCounts(first, document, n_documents).entropies(weights)
        second_plugin, second_mm = _DocumentCounts(second, document, n_documents).entropies(weights)
        joint_plugin, joint = _DocumentCounts(first * width + second, document, n_documents).entropies(weights)
        marginals = first_mm + second_mm
        rng = np.random.default_rng([seed, _STREAM["permutation"], int(r)])
        halves_inside = [weights[document, b + 1] > 0 for b in range(n_half_samples)]
        half_fallbacks += sum(not can_rotate(document[inside]) for inside in halves_inside if inside.any())

        def repairings() -> Iterator[NDArray[np.integer]]:
            # Every re-pairing this distance needs, drawn from rng in one fixed order (so the numbers do not
            # depend on how many threads count them): the full data's rotations, its uniform permutations,
            # then each half's own rotations (its own pairs, so that the baseline has the half's marginals,
            # as many as the full data's, so that the half is estimated alike).
            for _ in range(n_permutations):
                yield _joint_codes(*rotated_pairs(first, second, document, rng), width)
            for _ in range(n_permutations):
                yield _joint_codes(first, second[rng.permutation(first.size)], width)
            for inside in halves_inside:
                if inside.any():
                    for _ in range(n_permutations):
                        yield _joint_codes(*rotated_pairs(first[inside], second[inside], document[inside], rng),
                                           width)

        # Re-pairing keeps both marginals, so only the joint entropy changes.
        joints = np.asarray(_miller_madow_joints(repairings()))
        rotations, permutations = joints[:n_permutations], joints[n_permutations:2 * n_permutations]
        fallback[j] = not can_rotate(document)
        out["plugin"][j] = first_plugin[0] + second_plugin[0] - joint_plugin[0]
        out["miller_madow"][j] = marginals[0] - joint[0]
        out["baseline"][j] = marginals[0] - rotations.mean()
        out["permutation_baseline"][j] = marginals[0] - permutations.mean()
        if n_permutations > 1:
            out["baseline_std"][j] = rotations.std(ddof=1)
            out["permutation_baseline_std"][j] = permutations.std(ddof=1)
        per_half = iter(joints[2 * n_permutations:].reshape(-1, n_permutations))
        for b, inside in enumerate(halves_inside):
            if inside.any():
                half_samples[b, j] = next(per_half).mean() - joint[b + 1]
    if fallback.any():
        warnings.warn(f"no rotation re-pairs the pairs at r = {', '.join(map(str, r_grid[fallback]))} (one document "
                      "holds more than half of them): the baseline there is a uniform permutation's, which "
                      "over-corrects repeated tokens (book/methods.md); recorded in rotation_fallback", stacklevel=2)
    return MutualInformationProfile(
        distances=r_grid, n_pairs=n_pairs, half_samples=half_samples, n_documents=n_documents,
        n_tokens=int(sum(doc.size for doc in docs)), seed=seed, n_permutations=n_permutations,
        confidence=confidence, rotation_fallback=fallback, half_fallbacks=half_fallbacks, **out)


# ----------------------------------------------------------------------------------------
# Controls and corpus size
# ----------------------------------------------------------------------------------------


def shuffle_token_documents(token_docs: Sequence[ArrayLike], mode: str, seed: int) -> list[IntArray]:
    """The shuffled controls of :mod:`green_profiles.text.windows`, applied to whole documents.

    Args:
        token_docs: token ids per document, each ``[T_d]``.
        mode: ``"none"`` (unchanged), ``"window"`` (each document's tokens permuted
            independently: the analogue of the window shuffle, since this statistic
            reads whole documents; every document keeps its own multiset, so the
            dependence of sharing a document survives and all order is gone) or
            ``"corpus"`` (one permutation of all tokens, documents concatenated in
            order, cut back at the same lengths: only the corpus' unigram statistics remain).
        seed: the shuffling seed.

    Returns:
        token ids per document, same lengths.
    """
    if mode not in SHUFFLE_MODES:
        raise ValueError(f"unknown shuffle mode {mode!r}: use one of {', '.join(SHUFFLE_MODES)}")
    docs = [np.asarray(doc, dtype=np.int64) for doc in token_docs]
    if mode == "none":
        return docs
    rng = np.random.default_rng([seed, _STREAM[mode]])
    if mode == "window":
        return [rng.permutation(doc) for doc in docs]
    lengths = np.array([doc.size for doc in docs], dtype=np.int64)
    stream = rng.permutation(np.concatenate(docs)) if docs else np.zeros(0, dtype=np.int64)
    return np.split(stream, np.cumsum(lengths)[:-1]) if docs else []


def limit_tokens(token_docs: Sequence[ArrayLike], max_tokens: int | None, seed: int, *,
                 min_documents: int = 2) -> list[IntArray]:
    """Whole documents in a seeded random order until ``max_tokens`` tokens are reached (all of them if ``None``).

    Documents are never cut: the last one kept may pass the budget, and at least
    ``min_documents`` are kept (half-samples need two), whatever their length. The
    kept documents stay in their original order.
    """
    docs = [np.asarray(doc, dtype=np.int64) for doc in token_docs]
    if max_tokens is None:
        return docs
    order = np.random.default_rng([seed, _STREAM["limit"]]).permutation(len(docs))
    lengths = np.array([docs[i].size for i in order], dtype=np.int64)
    # Keep documents while the tokens before them are under the budget.
    before = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    kept = order[(before < max_tokens) | (np.arange(len(docs)) < min_documents)]
    return [docs[i] for i in sorted(kept)]


def tokenized_sample(documents: Sequence[object], tokenizer: object, max_tokens: int | None, seed: int, *,
                     min_documents: int = 2, batch: int = 16) -> list[IntArray]:
    """The documents :func:`limit_tokens` keeps, tokenized (no special tokens), without tokenizing the others.

    Tokenizes ``batch`` documents at a time in the same seeded order and stops once
    the budget is reached, so that a corpus of a thousand books costs only the books
    it keeps. ``max_tokens = None`` tokenizes everything.

    Returns:
        token ids per kept document, int64 ``[T_d]`` each, in corpus order.
    """
    if max_tokens is None:
        return tokenize_documents(documents, tokenizer)
    order = np.random.default_rng([seed, _STREAM["limit"]]).permutation(len(documents))
    kept: dict[int, IntArray] = {}
    total = 0
    for start in range(0, order.size, batch):
        if total >= max_tokens and len(kept) >= min_documents:
            break
        chosen = order[start:start + batch]
        for index, ids in zip(chosen, tokenize_documents([documents[i] for i in chosen], tokenizer)):
            if total < max_tokens or len(kept) < min_documents:
                kept[int(index)] = ids
                total += ids.size
    return [kept[index] for index in sorted(kept)]


def level_summary(profile: MutualInformationProfile) -> dict[str, float]:
    """How far a (control) profile is from zero and from flat, in bits.

    Returns:
        ``mean`` (the corrected ``I`` averaged over distances) with ``mean_low``,
        ``mean_high`` (percentile interval of the replicates' averages),
        ``max_abs`` (largest ``|I(r)|``), ``spread`` (largest minus smallest ``I(r)``)
        and ``first`` (``I`` at the smallest distance).
    """
    values = profile.corrected
    finite = np.isfinite(values)
    record = {"mean": float(values[finite].mean()) if finite.any() else math.nan,
              "max_abs": float(np.abs(values[finite]).max()) if finite.any() else math.nan,
              "spread": float(np.ptp(values[finite])) if finite.any() else math.nan,
              "first": float(values[0]) if values.size else math.nan,
              "mean_low": math.nan, "mean_high": math.nan}
    if profile.n_half_samples and finite.any():
        means = profile.replicates[:, finite].mean(axis=1)
        means = means[np.isfinite(means)]
        if means.size:
            tail = 50.0 * (1.0 - profile.confidence)
            record["mean_low"], record["mean_high"] = (float(v) for v in np.percentile(means, [tail, 100 - tail]))
    return record


# ----------------------------------------------------------------------------------------
# Fits
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MutualInformationFit:
    """The decay laws fitted to a corrected ``I(r)``, with document half-sample intervals.

    ``fitted`` are the distances used (tokens): from ``r = 1`` (or ``r_min``) up to
    the last distance before the first one whose corrected value or lower interval
    bound is not above zero (a log-space fit needs positive values, and a value whose
    interval reaches zero measures no decay), and at most ``r_max``. ``cut`` says
    why the range ends there. ``bootstrap`` refits every half-sample replicate on the
    same distances (a replicate value ``<= 0`` inside the range is left out of its fit);
    ``decision`` is the project's :class:`~green_profiles.analysis.fits.Verdict`.
    """

    fitted: IntArray
    cut: str
    bootstrap: BootstrapResult
    decision: Verdict

    @property
    def table(self) -> FitTable:
        """The full-data fits, ranked by log-RMSE."""
        return self.bootstrap.point

    def summary(self) -> dict[str, Any]:
        """A flat record: ``p`` (power law with floor) and the log-RMSE gap with their intervals
        (``*_low``, ``*_high``), ``p_pure_power`` (of ``A (r+1)^-p``), ``c`` and ``A`` (bits), the verdict,
        the fitted range."""
        fit = self.table.get("power_floor")
        usable = fit is not None and fit.usable
        return {
            "p": self.decision.p, "p_low": self.decision.p_low, "p_high": self.decision.p_high,
            "p_pure_power": self.bootstrap.point_estimates["p_power"],
            "rmse_gap": self.decision.gap, "rmse_gap_low": self.decision.gap_low,
            "rmse_gap_high": self.decision.gap_high,
            "c": fit.params["c"] if usable else math.nan, "A": fit.params["A"] if usable else math.nan,
            "best_model": self.table.best.name if self.table.best is not None else "none",
            "verdict_word": self.decision.winner, "verdict": str(self.decision),
            "r_fit_min": int(self.fitted[0]) if self.fitted.size else 0,
            "r_fit_max": int(self.fitted[-1]) if self.fitted.size else 0,
            "n_fitted": int(self.fitted.size), "cut": self.cut,
        }


def fit_mutual_information(profile: MutualInformationProfile, *, r_min: int = 1,
                           r_max: int | None = None) -> MutualInformationFit:
    """Fit ``c + A (r+1)^-p`` and ``c + A exp(-r/ξ)`` (and ``A (r+1)^-p``) to the corrected ``I(r)`` in log space.

    Uses the project's fits (:func:`~green_profiles.analysis.fits.fit_decay_models` through
    :func:`~green_profiles.analysis.fits.fit_replicates`) over the positive range described
    in :class:`MutualInformationFit`, starting at the first distance ``>= r_min``
    (tokens; raise it to fit the tail alone).

    Raises:
        ValueError: the profile has no replicates.
    """
    if profile.n_half_samples == 0:
        raise ValueError("fitting needs replicates: measure the profile with n_half_samples >= 1")
    low, _ = profile.interval()
    positive = np.isfinite(profile.corrected) & (profile.corrected > 0) & np.isfinite(low) & (low > 0)
    start = int(np.searchsorted(profile.distances, r_min, side="left"))
    bad = start + np.nonzero(~positive[start:])[0]
    end = int(bad[0]) if bad.size else profile.distances.size
    cut = (f"the interval at r = {int(profile.distances[end])} reaches zero" if bad.size
           else "up to the largest measured distance")
    if r_max is not None and end > start and profile.distances[end - 1] > r_max:
        end = int(np.searchsorted(profile.distances, r_max, side="right"))
        cut = f"limited to r ≤ {r_max}"
    fitted = profile.distances[start:end]
    result = fit_replicates(fitted, profile.corrected[start:end], profile.replicates[:, start:end],
                            n_groups=profile.n_documents, seed=profile.seed,
                            statistic="mutual information (document half-samples)", group_name="document",
                            interval_method="percentile")
    return MutualInformationFit(fitted=fitted, cut=cut, bootstrap=result, decision=verdict(result))
