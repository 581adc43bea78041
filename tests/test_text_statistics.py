"""The text's own mutual information I(r): estimator, bias corrections, document handling, half-samples, fits."""

from __future__ import annotations

import numpy as np
import pytest

from green_profiles.analysis.text_statistics import (
    MutualInformationProfile,
    _DocumentCounts,
    can_rotate,
    distance_grid,
    document_pairs,
    entropy_bits,
    fit_mutual_information,
    level_summary,
    limit_tokens,
    mutual_information,
    mutual_information_profile,
    rotated_pairs,
    shuffle_token_documents,
    tokenized_sample,
)


def markov_documents(transition: np.ndarray, n_documents: int, length: int, seed: int) -> list[np.ndarray]:
    """Documents of a stationary order-1 Markov chain (each starts from the stationary distribution)."""
    rng = np.random.default_rng(seed)
    stationary = stationary_distribution(transition)
    cumulative = np.cumsum(transition, axis=1)
    states = np.empty((n_documents, length), dtype=np.int64)
    states[:, 0] = rng.choice(len(stationary), size=n_documents, p=stationary)
    for t in range(1, length):
        u = rng.random(n_documents)[:, None]
        states[:, t] = np.minimum((cumulative[states[:, t - 1]] < u).sum(axis=1), len(stationary) - 1)
    return list(states)


def stationary_distribution(transition: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eig(transition.T)
    pi = np.real(vectors[:, np.argmin(np.abs(values - 1))])
    return pi / pi.sum()


def exact_mutual_information(transition: np.ndarray, r: int) -> float:
    """I(X_t; X_{t+r}) in bits of the stationary chain: sum_ab pi_a P^r_ab log2(P^r_ab / pi_b)."""
    pi = stationary_distribution(transition)
    step = np.linalg.matrix_power(transition, r)
    joint = pi[:, None] * step
    return float(np.sum(joint * np.log2(step / pi[None, :])))


@pytest.fixture(scope="module")
def chain():
    rng = np.random.default_rng(3)
    transition = rng.dirichlet(np.full(30, 0.3), size=30)  # peaked rows: strong dependence at r = 1
    return transition, markov_documents(transition, n_documents=60, length=2_000, seed=4)


def test_the_corrected_estimator_recovers_a_markov_chains_exact_mutual_information(chain):
    transition, docs = chain
    profile = mutual_information_profile(docs, distances=[1, 2, 4, 64], n_half_samples=0, seed=0)
    exact = [exact_mutual_information(transition, r) for r in (1, 2, 4, 64)]
    assert exact[0] > 1.0 and exact[-1] < 1e-6  # strong at r = 1, mixed away by r = 64
    # Within 0.01 bits at every distance, with 120,000 pairs and 900 joint bins.
    np.testing.assert_allclose(profile.corrected, exact, atol=0.01)
    # The raw plug-in estimate sits above the exact value, by about its first-order bias.
    assert np.all(profile.plugin > np.asarray(exact))


def test_plugin_is_biased_upward_with_a_large_vocabulary_and_the_correction_removes_it():
    rng = np.random.default_rng(0)
    vocabulary = 5_000
    weights = 1.0 / np.arange(1, vocabulary + 1)
    first = rng.choice(vocabulary, size=20_000, p=weights / weights.sum())
    second = rng.choice(vocabulary, size=20_000, p=weights / weights.sum())  # independent: I = 0
    estimate = mutual_information(first, second)
    joint = np.unique(first * vocabulary + second).size
    first_order = (joint - np.unique(first).size - np.unique(second).size + 1) / (2 * 20_000 * np.log(2))
    assert estimate.plugin > 3.0  # bits of spurious dependence, from 20,000 pairs over 25 million joint bins
    assert estimate.plugin - estimate.miller_madow == pytest.approx(first_order)
    assert estimate.miller_madow > 3.0  # the first-order correction removes a small part of it
    # Same-marginal baseline: what the estimator says for independent tokens is subtracted.
    baseline = np.mean([mutual_information(first, second[rng.permutation(second.size)]).miller_madow
                        for _ in range(5)])
    assert abs(estimate.miller_madow - baseline) < 0.03


def test_with_a_zipfian_vocabulary_of_49152_tokens_the_corrected_value_is_low_by_a_similar_factor():
    # The copy channel: with probability rho the second token repeats the first, else it is drawn afresh.
    vocabulary, n_pairs = 49_152, 300_000
    pi = 1.0 / np.arange(1, vocabulary + 1) ** 1.05
    pi /= pi.sum()
    rng = np.random.default_rng(0)
    ratios = []
    for rho in (0.3, 0.1):
        first = rng.choice(vocabulary, size=n_pairs, p=pi)
        second = np.where(rng.random(n_pairs) < rho, first, rng.choice(vocabulary, size=n_pairs, p=pi))
        both = rho + (1 - rho) * pi
        exact = np.sum(pi * both * np.log2(both / pi)) + (1 - rho) * (1 - np.sum(pi**2)) * np.log2(1 - rho)
        corrected = (mutual_information(first, second).miller_madow
                     - mutual_information(first, second[rng.permutation(n_pairs)]).miller_madow)
        ratios.append(corrected / exact)
    # Dependent pairs are less biased than the independent baseline: an over-correction, 35-45% here,
    # by nearly the same factor at 2.2 and at 0.6 bits.
    assert all(0.5 < ratio < 0.72 for ratio in ratios), ratios
    assert abs(ratios[0] - ratios[1]) < 0.08


def test_pairs_never_cross_documents():
    # Within each document the tokens are independent; each document starts with the last r tokens of the
    # one before, so pairs across a boundary would be copies (strong dependence).
    rng = np.random.default_rng(1)
    r, docs, tail = 8, [], rng.integers(0, 50, size=8)
    for _ in range(400):
        doc = np.concatenate([tail, rng.integers(0, 50, size=12)])
        docs.append(doc)
        tail = doc[-r:]
    first, second, document = document_pairs(docs, r)
    assert first.size == sum(len(doc) - r for doc in docs)
    assert np.array_equal(np.bincount(document), [len(doc) - r for doc in docs])
    within = mutual_information_profile(docs, distances=[r], n_half_samples=0, seed=0)
    with pytest.warns(UserWarning, match="no rotation"):  # one document: nothing to rotate across
        across = mutual_information_profile([np.concatenate(docs)], distances=[r], n_half_samples=0, seed=0)
    assert abs(within.corrected[0]) < 0.03
    assert across.corrected[0] > 0.5


def test_the_rotation_baseline_removes_the_spurious_dependence_of_repeated_tokens():
    # A chain that copies its previous token half of the time: runs of two on average. Pairs at r = 16
    # are independent, but a run on each side repeats the same pair.
    rng = np.random.default_rng(0)
    vocabulary, n_documents, length = 49_152, 100, 3_000
    pi = 1.0 / np.arange(1, vocabulary + 1) ** 1.05
    fresh = rng.choice(vocabulary, size=n_documents * length, p=pi / pi.sum())
    copy = rng.random(fresh.size) < 0.5
    copy[::length] = False
    stream = fresh[np.maximum.accumulate(np.where(copy, 0, np.arange(fresh.size)))]
    profile = mutual_information_profile(np.split(stream, n_documents), distances=[16], n_half_samples=0,
                                         n_permutations=2, seed=0)
    assert profile.permutation_corrected[0] > 0.3  # the uniform permutation: spurious bits
    assert abs(profile.corrected[0]) < 0.01       # exact value: 0.5**16 of a copy, ~ 1e-5 bits


def test_rotated_pairs_keep_both_sides_and_pair_across_documents():
    docs = [np.arange(100 * k, 100 * k + 40) for k in range(6)]  # token ids name their document
    first, second, document = document_pairs(docs, 3)
    new_first, new_second = rotated_pairs(first, second, document, np.random.default_rng(0))
    assert np.array_equal(np.sort(new_first), np.sort(first))
    assert np.array_equal(np.sort(new_second), np.sort(second))
    assert not np.any(new_first // 100 == new_second // 100)


def test_entropies_of_resampled_corpora_match_the_expanded_corpora():
    rng = np.random.default_rng(2)
    docs = [rng.integers(0, 40, size=rng.integers(5, 60)) for _ in range(30)]
    values = np.concatenate(docs)
    document = np.concatenate([np.full(len(doc), k) for k, doc in enumerate(docs)])
    weights = np.stack([np.ones(30), rng.integers(0, 3, size=30).astype(float)], axis=1)
    plugin, miller_madow = _DocumentCounts(values, document, 30).entropies(weights)
    for column in range(2):
        expanded = np.repeat(values, weights[document, column].astype(int))
        counts = np.bincount(expanded)
        assert plugin[column] == pytest.approx(entropy_bits(counts))
        assert miller_madow[column] == pytest.approx(entropy_bits(counts, miller_madow=True))


def test_half_samples_are_seeded(chain):
    _, docs = chain
    docs = docs[:20]
    first = mutual_information_profile(docs, distances=[1, 3], n_half_samples=6, seed=7)
    again = mutual_information_profile(docs, distances=[1, 3], n_half_samples=6, seed=7)
    other = mutual_information_profile(docs, distances=[1, 3], n_half_samples=6, seed=8)
    np.testing.assert_array_equal(first.half_samples, again.half_samples)
    np.testing.assert_array_equal(first.baseline, again.baseline)
    assert not np.array_equal(first.half_samples, other.half_samples)
    low, high = first.interval()
    assert np.all(low <= first.corrected) and np.all(first.corrected <= high)
    # Replicates are centred on the full-data value.
    np.testing.assert_allclose(first.replicates.mean(axis=0), first.corrected)


def synthetic_profile(values: np.ndarray, distances: np.ndarray, noise: float, seed: int) -> MutualInformationProfile:
    rng = np.random.default_rng(seed)
    half = values * (1 + noise * rng.standard_normal((100, distances.size)))
    n_r = distances.size
    return MutualInformationProfile(
        distances=distances, n_pairs=np.full(n_r, 10_000), plugin=values + 1.0, miller_madow=values + 0.5,
        baseline=np.full(n_r, 0.5), baseline_std=np.zeros(n_r), permutation_baseline=np.full(n_r, 0.5),
        permutation_baseline_std=np.zeros(n_r), half_samples=half, n_documents=50, n_tokens=100_000, seed=seed,
        n_permutations=1)


def test_a_power_law_decay_is_fitted_back_to_its_exponent():
    r = np.array([1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512])
    truth = 0.004 + 1.5 * (r + 1.0) ** -1.2
    fit = fit_mutual_information(synthetic_profile(truth, r, noise=0.03, seed=0))
    summary = fit.summary()
    assert summary["p"] == pytest.approx(1.2, abs=0.05)
    assert summary["p_low"] < 1.2 < summary["p_high"]
    assert summary["verdict_word"] == "power law" and summary["n_fitted"] == r.size


def test_the_fit_stops_where_the_interval_reaches_zero():
    r = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
    values = 1.5 * (r + 1.0) ** -1.2 - 0.02  # crosses zero between 32 and 64
    fit = fit_mutual_information(synthetic_profile(values, r, noise=0.02, seed=1))
    assert fit.fitted.max() <= 32 and fit.cut == "the interval at r = 64 reaches zero"
    limited = fit_mutual_information(synthetic_profile(values, r, noise=0.02, seed=1), r_max=8)
    assert limited.fitted.tolist() == [1, 2, 4, 8]
    tail = fit_mutual_information(synthetic_profile(values, r, noise=0.02, seed=1), r_min=3)
    assert tail.fitted.tolist() == [4, 8, 16, 32]


def test_shuffled_controls_keep_the_tokens_and_remove_the_order(chain):
    _, docs = chain
    docs = docs[:30]
    window = shuffle_token_documents(docs, "window", seed=0)
    corpus = shuffle_token_documents(docs, "corpus", seed=0)
    assert all(np.array_equal(np.sort(a), np.sort(b)) for a, b in zip(window, docs))
    assert [len(doc) for doc in corpus] == [len(doc) for doc in docs]
    assert np.array_equal(np.sort(np.concatenate(corpus)), np.sort(np.concatenate(docs)))
    assert all(np.array_equal(a, b) for a, b in zip(shuffle_token_documents(docs, "none", seed=0), docs))
    with pytest.raises(ValueError, match="unknown shuffle mode"):
        shuffle_token_documents(docs, "sentence", seed=0)
    # One chain for all documents: no document-level dependence, so both controls give I(r) ~ 0.
    for shuffled in (window, corpus):
        summary = level_summary(mutual_information_profile(shuffled, distances=[1, 2, 8], n_half_samples=10,
                                                           seed=0))
        assert summary["max_abs"] < 0.02
        assert summary["mean_low"] < 0.01 and summary["mean_high"] > -0.01


def test_the_window_control_keeps_the_dependence_of_sharing_a_document():
    # Each document draws from its own half of the vocabulary: tokens of one document depend on each other
    # at every distance, with no order at all.
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 20, size=500) + 20 * (k % 2) for k in range(40)]
    profile = mutual_information_profile(shuffle_token_documents(docs, "window", seed=1), distances=[1, 4, 16, 64],
                                         n_half_samples=10, seed=0)
    np.testing.assert_allclose(profile.corrected, 1.0, atol=0.03)  # one bit: which half, at every distance
    assert level_summary(profile)["spread"] < 0.03


def test_distance_grid_and_token_budget():
    docs = [np.zeros(30, dtype=np.int64), np.zeros(100, dtype=np.int64)]
    assert distance_grid(docs).tolist() == [1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 48, 64, 96]
    assert distance_grid(docs, max_distance=10).tolist() == [1, 2, 3, 4, 5, 6, 8, 10]
    many = [np.full(10, k) for k in range(50)]
    kept = limit_tokens(many, 95, seed=0)
    assert sum(len(doc) for doc in kept) == 100  # whole documents, the last one passes the budget
    firsts = [int(doc[0]) for doc in kept]
    assert firsts == sorted(firsts)  # in corpus order
    assert len(limit_tokens(many, None, seed=0)) == 50
    assert len(limit_tokens(many, 5, seed=0)) == 2  # at least two documents, for the half-samples
    with pytest.raises(ValueError, match="at least 2 documents"):
        mutual_information_profile(many[:1], distances=[1], n_half_samples=5)


def test_a_tokenized_sample_keeps_what_the_token_budget_keeps():
    texts = [" ".join(["word"] * (5 + 3 * k)) for k in range(40)]

    def tokenizer(batch, add_special_tokens, verbose):  # one token per word
        return {"input_ids": [[7] * len(text.split()) for text in batch]}

    everything = tokenized_sample(texts, tokenizer, None, seed=0)
    assert [len(ids) for ids in everything] == [5 + 3 * k for k in range(40)]
    for budget in (1, 50, 400):
        expected = limit_tokens(everything, budget, seed=3)
        sample = tokenized_sample(texts, tokenizer, budget, seed=3, batch=4)
        assert [len(ids) for ids in sample] == [len(ids) for ids in expected]


def test_the_rotation_fallback_is_recorded_and_said():
    """One document holding most of the pairs: no rotation exists, the uniform permutation is used, and the
    profile records it (and warns) instead of hiding it."""
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 20, 400), rng.integers(0, 20, 30), rng.integers(0, 20, 30)]
    with pytest.warns(UserWarning, match="no rotation re-pairs the pairs at r = 1, 2"):
        profile = mutual_information_profile(docs, [1, 2], n_half_samples=4, seed=0, n_permutations=2)
    assert profile.rotation_fallback.tolist() == [True, True]
    assert profile.half_fallbacks > 0
    assert not can_rotate(np.repeat([0, 1, 2], [400, 30, 30])) and can_rotate(np.repeat([0, 1, 2], [40, 30, 30]))
    balanced = mutual_information_profile([rng.integers(0, 20, 100) for _ in range(4)], [1, 2], n_half_samples=2)
    assert not balanced.rotation_fallback.any()
