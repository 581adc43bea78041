"""The batched resampling (:mod:`green_profiles.analysis.fits.resampling`): the replicates equal the explicitly
resampled rows' statistic, and, bit for bit, the one-replicate-at-a-time reading with the same draws."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from green_profiles.analysis.fits import resampling
from green_profiles.analysis.fits.resampling import (
    STATISTICS,
    ColumnAggregator,
    drawn_counts,
    group_index,
    jackknife_profiles,
    resampled_profiles,
)
from green_profiles.kernel.counts import measured_mask


def _rows(seed: int, n_rows: int = 90, n_r: int = 6) -> np.ndarray:
    """Log-normal rows with ties, zeros (underflow: the lowest value), NaNs, negatives (missing) and a column
    with no valid value."""
    rng = np.random.default_rng(seed)
    rows = np.round(rng.lognormal(size=(n_rows, n_r)), 1)  # rounding makes ties
    rows[rng.random(rows.shape) < 0.15] = np.nan
    rows[rng.random(rows.shape) < 0.1] = 0.0
    rows[rng.random(rows.shape) < 0.05] = -1.0
    rows[:, -1] = np.nan
    return rows


def _explicit(rows: np.ndarray, multiplicity: np.ndarray, statistic: str) -> np.ndarray:
    """The statistic per column of the rows repeated ``multiplicity`` times, by numpy and scipy."""
    from scipy.stats import trim_mean

    expanded = np.repeat(rows, multiplicity, axis=0)
    expanded = np.where(measured_mask(expanded), expanded, np.nan)
    if statistic == "geometric":
        expanded = np.where(expanded > 0, expanded, np.nan)
    out = np.full(rows.shape[1], np.nan)
    for j, column in enumerate(expanded.T):
        values = column[~np.isnan(column)]
        if values.size:
            out[j] = {"median": np.median, "mean": np.mean, "geometric": lambda v: np.exp(np.mean(np.log(v))),
                      "trimmed": lambda v: trim_mean(v, 0.1)}[statistic](values)
    return out


def _one_at_a_time(rows: np.ndarray, multiplicity: np.ndarray, statistic: str) -> np.ndarray:
    """The aggregate as it was read before the batching, one replicate and one column at a time: the
    reference the batched numbers must equal bit for bit."""
    valid = measured_mask(rows)
    if statistic == "geometric":
        valid &= rows > 0
    out = np.full(rows.shape[1], np.nan)
    for j in range(rows.shape[1]):
        idx = np.nonzero(valid[:, j])[0]
        idx = idx[np.argsort(rows[idx, j], kind="stable")]
        values, counts = rows[idx, j], multiplicity[idx]
        cum = np.cumsum(counts)
        total = int(cum[-1]) if cum.size else 0
        if total == 0:
            continue
        if statistic == "mean":
            out[j] = float(counts @ values) / total
        elif statistic == "geometric":
            out[j] = float(np.exp(counts @ np.log(values) / total))
        elif statistic == "trimmed":
            cut = int(0.1 * total)
            kept = np.clip(np.minimum(cum, total - cut) - np.maximum(cum - counts, cut), 0, None)
            out[j] = float(kept @ values) / (total - 2 * cut)
        else:
            lo = int(np.searchsorted(cum, (total - 1) // 2, side="right"))
            hi = int(np.searchsorted(cum, total // 2, side="right"))
            out[j] = 0.5 * (values[lo] + values[hi])
    return out


@pytest.mark.parametrize("statistic", STATISTICS)
def test_replicates_equal_the_explicitly_resampled_rows(statistic: str) -> None:
    rows = _rows(1)
    group = np.random.default_rng(2).integers(0, 23, size=rows.shape[0])
    profile, replicates, names = resampled_profiles(rows, group, n_boot=60, seed=7, statistic=statistic)
    inverse, _ = group_index(rows.shape[0], group)
    rng = np.random.default_rng(7)
    expected = []
    for _ in range(60):
        group_count = np.bincount(rng.integers(0, len(names), size=len(names)), minlength=len(names))
        expected.append(_explicit(rows, group_count[inverse], statistic))
    compare = np.testing.assert_array_equal if statistic == "median" else (
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12))
    compare(replicates, np.array(expected))
    compare(profile, _explicit(rows, np.ones(rows.shape[0], dtype=np.int64), statistic))
    assert np.isnan(replicates[:, -1]).all()  # no valid value at all


@pytest.mark.parametrize("statistic", STATISTICS)
def test_the_jackknife_equals_the_rows_without_each_group(statistic: str) -> None:
    rows = _rows(3, n_rows=40)
    group = np.repeat(np.arange(8), 5)
    jack = jackknife_profiles(rows, group, statistic=statistic)
    expected = np.array([_explicit(rows, (group != g).astype(np.int64), statistic) for g in range(8)])
    if statistic == "median":
        np.testing.assert_array_equal(jack, expected)
    else:
        np.testing.assert_allclose(jack, expected, rtol=1e-12)


@pytest.mark.parametrize("statistic", STATISTICS)
@pytest.mark.parametrize("groups", [None, 1, 2, 17])
def test_batched_replicates_are_bitwise_the_one_at_a_time_reading(statistic: str, groups: int | None) -> None:
    """What the bootstrap did before the batching: one draw of the groups per replicate, in order, and the
    aggregate of that replicate's row multiplicities alone. The same numbers, bit for bit."""
    rows = _rows(4, n_rows=200)
    group = None if groups is None else np.random.default_rng(5).integers(0, groups, size=200)
    _, replicates, names = resampled_profiles(rows, group, n_boot=150, seed=[3, 1], statistic=statistic)
    inverse, _ = group_index(rows.shape[0], group)
    rng = np.random.default_rng([3, 1])
    multiplicities = [np.bincount(rng.integers(0, len(names), size=len(names)), minlength=len(names))[inverse]
                      for _ in range(150)]
    np.testing.assert_array_equal(replicates, [_one_at_a_time(rows, m, statistic) for m in multiplicities])
    aggregate = ColumnAggregator(rows, statistic)  # one vector of row multiplicities at a time, likewise
    np.testing.assert_array_equal([aggregate(m) for m in multiplicities[:20]], replicates[:20])


@pytest.mark.parametrize("size", [16, 32])
def test_the_block_median_reads_every_block_boundary(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """Small blocks over many tied values: the middle values often sit at a block's end, and the upper one in a
    later block (one with any drawn value). The medians still equal the plain cumulative count's."""
    monkeypatch.setattr(resampling, "_block_size", lambda *_: size)
    rng = np.random.default_rng(6)
    rows = rng.integers(0, 6, size=(400, 3)).astype(float)
    rows[rng.random(rows.shape) < 0.3] = np.nan
    group = rng.integers(0, 40, size=400)
    inverse, _ = group_index(400, group)
    aggregate = ColumnAggregator(rows, "median", inverse)
    assert aggregate.block_size == size
    counts = drawn_counts(rng, 40, 300)
    counts[::7] *= rng.integers(0, 3, size=40)  # zero counts: whole groups, and whole blocks, not drawn
    counts[5] = 0  # nothing drawn: NaN
    expected = np.array([aggregate(row[inverse]) for row in counts])
    np.testing.assert_array_equal(aggregate.profiles(counts), expected)
    assert np.isnan(expected[5]).all()


def test_the_block_median_stays_exact_beyond_float32_integers() -> None:
    """Block counts come from a matrix product; counts too large for float32's integers go through float64."""
    rows = _rows(8, n_rows=64, n_r=3)
    group = np.repeat(np.arange(16), 4)
    aggregate = ColumnAggregator(rows, "median", group)
    counts = np.random.default_rng(9).integers(0, 2**22, size=(20, 16))
    expected = np.array([aggregate(row[group]) for row in counts])
    np.testing.assert_array_equal(aggregate.profiles(counts), expected)


@pytest.mark.parametrize("n_groups", [1, 2, 3, 7, 1024, 1025])
def test_drawing_replicates_at_once_is_drawing_them_in_turn(n_groups: int) -> None:
    """The batched draw relies on numpy giving the same stream however the draws are split into calls."""
    in_turn_rng, at_once_rng = np.random.default_rng(11), np.random.default_rng(11)
    in_turn = [np.bincount(in_turn_rng.integers(0, n_groups, size=n_groups), minlength=n_groups) for _ in range(9)]
    np.testing.assert_array_equal(drawn_counts(at_once_rng, n_groups, 4), in_turn[:4])
    np.testing.assert_array_equal(drawn_counts(at_once_rng, n_groups, 5), in_turn[4:])
    assert in_turn_rng.integers(0, 2**40) == at_once_rng.integers(0, 2**40)


def test_profiles_checks_its_counts() -> None:
    aggregate = ColumnAggregator(_rows(12, n_rows=10), "median", np.repeat(np.arange(5), 2))
    with pytest.raises(ValueError, match=r"\[n, 5\]"):
        aggregate.profiles(np.ones((3, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="negative"):
        aggregate.profiles(-np.ones((3, 5), dtype=np.int64))
    assert aggregate.profiles(np.zeros((0, 5), dtype=np.int64)).shape == (0, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division or empty-slice warnings where nothing was drawn
        assert np.isnan(ColumnAggregator(_rows(12, n_rows=10), "mean", np.repeat(np.arange(5), 2)).profiles(
            np.zeros((2, 5), dtype=np.int64))).all()
