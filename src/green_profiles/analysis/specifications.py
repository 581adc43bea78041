"""Choices of protocol that need no new backward pass: rows for another distance grid, buffer or
normalization, read from a run that kept whole rows.

A run measured with ``full_rows`` stores every target's row ``G(j, s)`` over all sources ``s``
(``{selection}_full [n, T, L]``; NaN left of the run's own buffer, zero right of the target). Any
distance grid, any buffer at least as wide as the run's, and any normalization of those rows are then
a matter of indexing: :func:`specification_rows` builds the ``[n_rows, n_r]`` matrix that the fits
and the bootstrap read, as if the run had been measured that way. (The aggregate over rows is the
bootstrap's ``statistic``; the fitted range is a cut of the returned distances.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from green_profiles.runs.configuration import PAPER_DISTANCES

__all__ = ["NORMALIZATIONS", "Derivation", "dense_grid", "specification_rows"]

NORMALIZATIONS = ("G0", "G1", "none")


@dataclass(frozen=True)
class Derivation:
    """How to read rows from a ``full_rows`` run.

    Attributes:
        grid: ``"paper"`` (:data:`PAPER_DISTANCES`) or ``"dense"`` (:func:`dense_grid`), cut to what the
            buffer leaves for every target.
        buffer: the smallest source index used, in tokens (``None``: the run's own ``source_min_index``);
            it cannot be smaller than the run's, left of which nothing was measured.
        normalization: ``"G0"`` (by ``G(j, j)``, the paper's), ``"G1"`` (by ``G(j, j - 1)``) or ``"none"``.
        selection: ``"pred"`` or ``"true"``.
    """

    grid: Literal["paper", "dense"] = "paper"
    buffer: int | None = None
    normalization: Literal["G0", "G1", "none"] = "G0"
    selection: Literal["pred", "true"] = "pred"


def dense_grid(max_distance: int, per_octave: int = 4) -> NDArray[np.int64]:
    """0 and about ``per_octave`` distances per octave of ``r + 1`` up to ``max_distance``, every integer
    where that is denser (r ≤ 6 or so)."""
    octaves = np.log2(max_distance + 1.0)
    points = np.round(np.exp2(np.linspace(0.0, octaves, int(np.ceil(octaves * per_octave)) + 1)) - 1.0)
    return np.unique(np.concatenate([[0], points.astype(np.int64), [max_distance]]))


def specification_rows(arrays: dict[str, Any], source_min_index: int,
                       derivation: Derivation) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """``(distances [n_r], rows [n_rows, n_r])`` of a ``full_rows`` run read as ``derivation`` says.

    Args:
        arrays: the run's arrays (``targets [T]``, ``{selection}_full [n, T, L]``).
        source_min_index: the run's own buffer.
        derivation: the grid, buffer, normalization and selection.

    Returns:
        the distances kept (every target has its source at ``>=`` the buffer for each of them), and the
        rows, one per (window, target), float64: normalized as asked (``G0``: column ``r = 0`` is 1;
        ``G1``: column ``r = 1`` is 1; NaN where the divisor is zero or not finite).

    Raises:
        KeyError: the run has no whole rows (measured without ``full_rows``).
        ValueError: a buffer left of the run's own, or an unknown grid or normalization.
    """
    full_name = f"{derivation.selection}_full"
    if full_name not in arrays:
        raise KeyError(f"the run keeps no whole rows ({full_name}): measure it with full_rows=True")
    buffer = source_min_index if derivation.buffer is None else int(derivation.buffer)
    if buffer < source_min_index:
        raise ValueError(f"buffer {buffer} is left of the run's own ({source_min_index}): nothing was measured there")
    if derivation.normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {derivation.normalization!r}")
    targets = np.asarray(arrays["targets"], dtype=np.int64)
    reach = int(targets.min()) - buffer  # the largest distance every target's source can have
    if derivation.grid == "paper":
        grid = np.array([r for r in PAPER_DISTANCES if r <= reach], dtype=np.int64)
    elif derivation.grid == "dense":
        grid = dense_grid(reach)
    else:
        raise ValueError(f"grid must be 'paper' or 'dense', got {derivation.grid!r}")
    full = np.asarray(arrays[full_name], dtype=np.float64)  # [n, T, L]
    sources = targets[:, None] - grid[None, :]  # [T, n_r]
    rows = np.take_along_axis(full, np.broadcast_to(sources, full.shape[:2] + sources.shape[1:]), axis=2)
    rows = rows.reshape(-1, len(grid))
    if derivation.normalization == "none":
        return grid, rows
    position = 0 if derivation.normalization == "G0" else 1
    if position >= len(grid) or grid[position] != position:
        raise ValueError(f"normalization {derivation.normalization} needs r = {position} on the grid")
    divisor = rows[:, position:position + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return grid, np.where(np.isfinite(divisor) & (divisor > 0), rows / divisor, np.nan)
