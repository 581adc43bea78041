"""Synthetic runs of known truth: a decay curve times multiplicative noise, rows grouped by document.

What the error rates of the book's readings are measured on (``benchmarks/error_rates.py``, the tests). A
synthetic run is ``rows[i, r] = truth(r) · exp(ε[i, r])`` with ``r = 0`` set to 1 (the normalization), and one
document label per row; its population median profile is ``truth`` (every noise model below has median-zero
``ε`` at each distance, up to the sampling of the borrowed rows).

Truths (:data:`TRUTHS`), on the default grid of distances:

- ``power_floor``: ``c + A (r+1)^-p`` with ``p = 0.9`` (inside the paper's band), ``c = 0.01``;
- ``exp_floor``: the exponential with floor closest to it in log space over the grid (the hardest one to tell
  apart, fitted once);
- ``stretched``: ``c + A exp(-(r/ξ)^0.4)``, neither law;
- ``broken``: a power law whose exponent changes from 0.4 to 1.6 at ``r = 24``, neither law;
- ``pure_power``: ``(r+1)^-p`` with ``p = 0.8``, no floor (what a plateau test should find);
- ``small_drop``: a power law that loses 0.3 nats from ``r = 1`` to ``r = 384`` (what a decay test should find);
- ``flat``: no decay at all.

Noise models (:data:`NOISE_MODELS`), each with an amount of noise the default book's rows show (their log
deviations from the median spread by about 1.1 nats per entry):

- ``iid``: every entry independent, normal in log space (σ = 1.0);
- ``documents``: a document effect (σ 0.4), a row effect (σ 0.8) and entry effects that are heavy-tailed
  (Student t, 3 degrees of freedom, scale 0.5) and correlated along the distance grid (AR(1), ρ = 0.6);
- ``resampled``: the rows of a stored run (the book's own noise): documents drawn with replacement, each row's
  log deviation from that run's median profile kept, with 0.3 nats of fresh jitter per row and per entry so
  that a document drawn twice is two similar documents (:class:`BorrowedNoise`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from green_profiles.analysis.fits.fitting import fit_decay_models
from green_profiles.kernel.counts import valid_mask

__all__ = ["DEFAULT_DISTANCES", "NOISE_MODELS", "TRUTHS", "BorrowedNoise", "SyntheticRun", "synthetic_run",
           "truth_curve"]

FloatArray = NDArray[np.float64]

# The default build's grid (L = 512, sources from 96: distances up to 384).
DEFAULT_DISTANCES: FloatArray = np.array([0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256,
                                          384], dtype=np.float64)

TRUE_P = 0.9
PURE_P = 0.8
BREAK_AT = 24.0


def _power_floor(r: FloatArray) -> FloatArray:
    return 0.01 + 1.0 * (r + 1.0) ** -TRUE_P


_CLOSEST: dict[str, dict[str, float]] = {}


def _closest_exponential(r: FloatArray) -> FloatArray:
    # The exponential with floor nearest the power-law truth in log space over the default grid's r >= 1 (the
    # hardest exponential to tell from it on this grid).
    params = _CLOSEST.get("params")
    if params is None:
        grid = DEFAULT_DISTANCES
        params = _CLOSEST["params"] = fit_decay_models(grid, _power_floor(grid), models=("exp_floor",)).get("exp_floor").params
    return params["c"] + params["A"] * np.exp(-r / params["xi"])


def _stretched(r: FloatArray) -> FloatArray:
    return 0.005 + np.exp(-((r / 2.0) ** 0.4))


def _broken(r: FloatArray) -> FloatArray:
    low = (r + 1.0) ** -0.4
    high = (BREAK_AT + 1.0) ** -0.4 * ((r + 1.0) / (BREAK_AT + 1.0)) ** -1.6
    return 0.002 + np.where(r <= BREAK_AT, low, high)


def _pure_power(r: FloatArray) -> FloatArray:
    return (r + 1.0) ** -PURE_P


def _small_drop(r: FloatArray) -> FloatArray:
    # A power law that loses 0.3 nats from r = 1 to r = 384: a real but small decay.
    return 0.3 * (r + 1.0) ** -(0.3 / np.log(385.0 / 2.0))


def _flat(r: FloatArray) -> FloatArray:
    return np.full_like(r, 0.3)


TRUTHS: dict[str, Callable[[FloatArray], FloatArray]] = {
    "power_floor": _power_floor,
    "exp_floor": _closest_exponential,
    "stretched": _stretched,
    "broken": _broken,
    "pure_power": _pure_power,
    "small_drop": _small_drop,
    "flat": _flat,
}


def truth_curve(name: str, r: ArrayLike = DEFAULT_DISTANCES) -> FloatArray:
    """The truth ``name`` (:data:`TRUTHS`) at distances ``r`` (tokens), with ``Ĝ(0) = 1``. Shape of ``r``."""
    if name not in TRUTHS:
        raise ValueError(f"unknown truth {name!r}; expected one of {', '.join(TRUTHS)}")
    r_arr = np.asarray(r, dtype=np.float64)
    curve = TRUTHS[name](r_arr)
    return np.where(r_arr == 0, 1.0, curve)


class BorrowedNoise:
    """The log deviations of a stored run's rows from their median profile, by document (noise ``resampled``).

    Args:
        distances: ``[n_r]`` the run's distances (tokens).
        rows: ``[n_rows, n_r]`` its normalized rows ``Ĝ``.
        group: one document label per row.
    """

    JITTER = 0.3

    def __init__(self, distances: ArrayLike, rows: ArrayLike, group: ArrayLike) -> None:
        self.distances = np.asarray(distances, dtype=np.float64)
        values = np.asarray(rows, dtype=np.float64)
        valid = valid_mask(values)
        profile = np.nanmedian(np.where(valid, values, np.nan), axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            deviation = np.log(np.where(valid, values, np.nan)) - np.log(profile)[None, :]
        deviation[:, self.distances < 1] = 0.0
        self.deviation = deviation
        labels = np.asarray(group)
        self.documents = [np.nonzero(labels == label)[0] for label in np.unique(labels)]

    def draw(self, rng: np.random.Generator, n_documents: int, per_document: int) -> FloatArray:
        """``[n_documents * per_document, n_r]`` log deviations: documents drawn with replacement, rows of each
        drawn with replacement from its own rows, jittered."""
        out = []
        for d in rng.integers(0, len(self.documents), n_documents):
            chosen = rng.choice(self.documents[d], per_document, replace=len(self.documents[d]) < per_document)
            part = self.deviation[chosen]
            part = part + rng.normal(0, self.JITTER, (per_document, 1)) + rng.normal(0, self.JITTER, part.shape)
            out.append(part)
        noise = np.concatenate(out)
        noise[:, self.distances < 1] = 0.0
        return noise


def _iid(rng: np.random.Generator, n_documents: int, per_document: int, n_r: int) -> FloatArray:
    return rng.normal(0.0, 1.0, (n_documents * per_document, n_r))


def _documents(rng: np.random.Generator, n_documents: int, per_document: int, n_r: int) -> FloatArray:
    n_rows = n_documents * per_document
    level = np.repeat(rng.normal(0.0, 0.4, n_documents), per_document) + rng.normal(0.0, 0.8, n_rows)
    rho = 0.6
    innovations = 0.5 * rng.standard_t(3, (n_rows, n_r))
    entries = np.empty((n_rows, n_r))
    entries[:, 0] = innovations[:, 0]
    for k in range(1, n_r):
        entries[:, k] = rho * entries[:, k - 1] + np.sqrt(1 - rho ** 2) * innovations[:, k]
    return level[:, None] + entries


NOISE_MODELS: tuple[str, ...] = ("iid", "documents", "resampled")


@dataclass(frozen=True)
class SyntheticRun:
    """One synthetic run: ``rows`` ``[n_rows, n_r]`` at ``distances`` ``[n_r]`` with a document label per row
    (``group``), drawn around ``truth`` under ``noise``."""

    distances: FloatArray
    rows: FloatArray
    group: NDArray[np.int64]
    truth: str
    noise: str


def synthetic_run(truth: str, noise: str, n_documents: int, *, per_document: int = 2, seed: int | Sequence[int] = 0,
                  distances: ArrayLike = DEFAULT_DISTANCES, borrowed: BorrowedNoise | None = None) -> SyntheticRun:
    """A synthetic run of ``n_documents`` documents with ``per_document`` rows each.

    Args:
        truth: one of :data:`TRUTHS`.
        noise: one of :data:`NOISE_MODELS` (``"resampled"`` needs ``borrowed``, whose distances are then used).
        n_documents, per_document: the design (documents, rows per document).
        seed: seeds the draw.
        distances: the grid (tokens), ignored for ``"resampled"``.
        borrowed: the stored run's noise for ``"resampled"``.
    """
    rng = np.random.default_rng(seed)
    if noise == "resampled":
        if borrowed is None:
            raise ValueError("noise 'resampled' needs the rows of a stored run (borrowed=BorrowedNoise(...))")
        r = borrowed.distances
        eps = borrowed.draw(rng, n_documents, per_document)
    elif noise in ("iid", "documents"):
        r = np.asarray(distances, dtype=np.float64)
        eps = (_iid if noise == "iid" else _documents)(rng, n_documents, per_document, r.size)
    else:
        raise ValueError(f"unknown noise {noise!r}; expected one of {', '.join(NOISE_MODELS)}")
    rows = truth_curve(truth, r)[None, :] * np.exp(eps)
    rows[:, r == 0] = 1.0
    return SyntheticRun(distances=r, rows=rows, group=np.repeat(np.arange(n_documents), per_document), truth=truth,
                        noise=noise)
