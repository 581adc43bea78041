"""A measured run and its decay profile: the per-distance statistics of ``Ĝ``, fits and bootstrap.

:class:`ProfileRun` holds one stored run (see :mod:`green_profiles.runs.store` for the
files and :mod:`green_profiles.runs.measurement` for how it is measured). Its rows are
the raw norms ``G(j, r)`` at the grid distances; ``Ĝ = G / G(j, 0)`` is derived
on load, and :func:`aggregate_rows` turns rows into the profile: median, mean,
10%-trimmed mean and quantile bands per distance over finite, positive values.
A run measured with ``per_layer`` also holds the rows of every decoder block's
input ``x_l``; the same methods read them with ``layer=l`` (each layer normalized
by its own diagonal, ``G_l(j, r) / G_l(j, 0)``).

By source position instead of distance, :func:`source_profile` and
:func:`left_boundary_table` show the "hook" near the window start that the
paper's left buffer avoids.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from green_profiles.runs.configuration import SELECTIONS, RunConfig, Selection
from green_profiles.runs.measurement import measure_run
from green_profiles.runs.store import CorruptRunError, StoredRun, read_run, runs_directory, stored_metadata
from green_profiles.kernel.counts import NormCounts, count_norms, measured_mask, valid_mask
from green_profiles.analysis.fits import N_BOOT, bootstrap_fits, fit_decay_models, verdict
from green_profiles.analysis.local_slope import local_slope

_STATISTICS = ("median", "mean", "trimmed_mean", "q10", "q25", "q75", "q90")
# With fewer documents than this a document bootstrap has too few units to resample; windows are used.
MIN_DOCUMENTS_TO_RESAMPLE = 5


def aggregate_rows(rows: np.ndarray, distances: Sequence[int] | np.ndarray) -> Any:
    """Per-distance statistics of profile rows over their finite, positive values.

    Args:
        rows: ``[n_rows, n_r]`` values (normalized or raw); NaN, inf and negative entries are
            left out of every statistic; a zero (a norm below the dtype's range) counts as the lowest
            value (:func:`~green_profiles.kernel.counts.measured_mask`).
        distances: ``[n_r]`` distances ``r`` in tokens (or any column labels, e.g. source positions).

    Returns:
        a pandas DataFrame indexed by ``r`` with ``count``, ``median``, ``mean``,
        ``trimmed_mean`` (10% cut from each end) and quantiles ``q10``, ``q25``,
        ``q75``, ``q90``; NaN where a distance has no valid value.
    """
    import pandas as pd
    from scipy.stats import trim_mean

    data = np.asarray(rows, dtype=np.float64)
    r = np.asarray(distances, dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != r.size:
        raise ValueError(f"rows must be [n_rows, {r.size}], got {data.shape}")
    records = []
    for column in data.T:
        valid = column[measured_mask(column)]
        if valid.size == 0:
            records.append({"count": 0} | dict.fromkeys(_STATISTICS, math.nan))
            continue
        q10, q25, median, q75, q90 = np.quantile(valid, [0.10, 0.25, 0.50, 0.75, 0.90])
        records.append({"count": int(valid.size), "median": median, "mean": float(valid.mean()),
                        "trimmed_mean": float(trim_mean(valid, 0.1)), "q10": q10, "q25": q25, "q75": q75,
                        "q90": q90})
    return pd.DataFrame.from_records(records, index=pd.Index(r, name="r"))


@dataclass(frozen=True, eq=False)  # arrays: no element-wise __eq__
class ProfileRun:
    """A finished run: the arrays, the per-row table and the metadata.

    Rows are (window, target) pairs in window-major order: row ``i * T + t`` is
    window ``i``, target ``targets[t]``.
    """

    config: RunConfig
    key: str
    path: Path | None
    arrays: Mapping[str, np.ndarray]
    table: Any  # pandas.DataFrame, one line per row
    metadata: Mapping[str, Any]

    @classmethod
    def from_stored(cls, stored: StoredRun) -> ProfileRun:
        """The run read from the store (:func:`green_profiles.runs.store.read_run`)."""
        return cls(config=RunConfig.from_dict(stored.metadata["config"]), key=stored.metadata["key"],
                   path=stored.path, arrays=stored.arrays, table=stored.table, metadata=stored.metadata)

    @property
    def distances(self) -> np.ndarray:
        """``[n_r]`` distances in tokens, starting with 0."""
        return self.arrays["distances"]

    @property
    def targets(self) -> np.ndarray:
        """``[T]`` target positions."""
        return self.arrays["targets"]

    @property
    def n_rows(self) -> int:
        """Number of (window, target) rows."""
        return int(self.arrays["pred_raw"].shape[0] * self.arrays["pred_raw"].shape[1])

    @property
    def window_of_row(self) -> np.ndarray:
        """``[n_rows]`` window index of each row."""
        n_windows, n_targets = self.arrays["pred_raw"].shape[:2]
        return np.repeat(np.arange(n_windows), n_targets)

    @property
    def document_of_row(self) -> np.ndarray:
        """``[n_rows]`` document index of each row (windows of one document share it)."""
        return self.arrays["document"][self.window_of_row]

    @property
    def document_identity(self) -> np.ndarray:
        """``[n_windows]`` each window's document as an identity of its text: 16 hex digits (a string) of a SHA-256.

        What the bootstrap resamples and :func:`~green_profiles.analysis.fits.paired_difference` pairs on
        (:meth:`resampling_unit`). A run stores no text and no hash per document: ``document`` is the index of a
        window's document in the corpus the run read, and the provenance records that corpus' checksum
        (``corpus_sha256``, :func:`~green_profiles.text.corpus_checksum`: every title and text, in order). The
        checksum and the index together fix one text, so the identity hashes the two. Two windows get the same
        identity only if they come from the same text of the same corpus, so runs over different texts never
        pair, whatever their indices say; and every run over that corpus gives a document the same identity
        whatever the model, window length, grid, seed or shuffle, so runs that drew the same documents pair.
        The same text at another position, or in a corpus that differs in any other text, gets another
        identity: such runs do not pair (the safe side: their comparison is read as unpaired). A run without
        a recorded checksum (one made in memory) hashes its corpus' name and split instead.
        """
        provenance = self.metadata.get("provenance") or {}
        corpus = provenance.get("corpus_sha256")
        corpus = f"sha256:{corpus}" if corpus else f"name:{self.config.corpus}:{self.config.split}"
        documents = np.asarray(self.arrays["document"])
        unique, inverse = np.unique(documents, return_inverse=True)
        identities = np.array([_identity("document", corpus, str(int(index))) for index in unique], dtype="<U16")
        return identities[inverse.ravel()]

    @property
    def window_identity(self) -> np.ndarray:
        """``[n_windows]`` each window's identity: its document's (:attr:`document_identity`), its start and its
        length in tokens hashed together, and, for a window drawn again at the same place, how many times it
        was drawn before (each draw stays a group of its own). Start and length count tokens, so runs with
        different tokenizers share a window's label only where both drew the same token span of a document."""
        documents = self.document_identity
        starts = np.asarray(self.arrays["start"])
        length = int(self.arrays["window_ids"].shape[1])
        seen: dict[tuple[str, int], int] = {}
        labels = []
        for document, start in zip(documents.tolist(), starts.tolist(), strict=True):
            repeat = seen.get((document, start), 0)
            seen[(document, start)] = repeat + 1
            labels.append(_identity("window", document, str(int(start)), str(length), str(repeat)))
        return np.array(labels, dtype="<U16")

    @property
    def target_of_row(self) -> np.ndarray:
        """``[n_rows]`` target position ``j`` of each row."""
        return np.tile(self.targets, self.arrays["pred_raw"].shape[0])

    @property
    def n_layers(self) -> int:
        """Decoder blocks whose inputs the run measured (0 for a run without ``per_layer``)."""
        layers = self.arrays.get("pred_layers")
        return 0 if layers is None else int(layers.shape[2])

    @property
    def has_full_rows(self) -> bool:
        """Whether the run kept whole rows (measured with ``full_rows``)."""
        return "pred_full" in self.arrays

    def full_row(self, window: int, target_index: int, selection: Selection = "pred") -> np.ndarray:
        """The stored whole row ``G(j, s)`` of one (window, target): ``[L]`` float32, by source ``s``.

        ``j = targets[target_index]``; NaN left of the buffer (the kernel never computed
        it), zero right of ``j``; at ``s = j - r`` it equals :meth:`raw` at distance ``r``.

        Raises:
            ValueError: the run was measured without ``full_rows``, or an index is out of range.
        """
        _check_selection(selection)
        if not self.has_full_rows:
            raise ValueError(f"run {self.key} was measured without full_rows: it has no whole rows")
        full = self.arrays[f"{selection}_full"]
        if not (0 <= window < full.shape[0] and 0 <= target_index < full.shape[1]):
            raise ValueError(f"(window, target_index) must lie in [0, {full.shape[0]}) x [0, {full.shape[1]}) "
                             f"for run {self.key}, got ({window}, {target_index})")
        return full[window, target_index]

    def raw(self, selection: Selection = "pred", layer: int | None = None) -> np.ndarray:
        """Raw norms ``G(j, r)``, ``[n_rows, n_r]`` float32 (gradient of a logit per unit embedding).

        With ``layer = l`` (a ``per_layer`` run), ``G_l(j, r) = ||dz[j, v] / dx_l[j - r]||`` with
        respect to the hidden state entering decoder block ``l`` (``l = 0``: the embeddings,
        the same numbers as ``layer=None``); negative ``l`` counts from the last block.
        """
        _check_selection(selection)
        if layer is None:
            values = self.arrays[f"{selection}_raw"]
            return values.reshape(-1, values.shape[-1])
        if not self.n_layers:
            raise ValueError(f"run {self.key} was measured without per_layer: it has no per-layer rows")
        if not -self.n_layers <= layer < self.n_layers:
            raise ValueError(f"layer must lie in [0, {self.n_layers}) for run {self.key}, got {layer}")
        values = self.arrays[f"{selection}_layers"][:, :, layer]
        return values.reshape(-1, values.shape[-1])

    def norm_counts(self, selection: Selection = "pred") -> NormCounts:
        """Zero and non-finite raw norms per row, ``[n_rows]`` each, over the grid points.

        Each grid point is a causal source, so every one of these norms should be
        positive; the run's totals are in its metadata (``"norm_counts"``) too.
        """
        return count_norms(self.raw(selection))

    def normalized(self, selection: Selection = "pred", layer: int | None = None) -> np.ndarray:
        """Diagonal-normalized rows ``Ĝ(j, r) = G(j, r) / G(j, 0)``, ``[n_rows, n_r]`` float64.

        A row whose ``G(j, 0)`` is zero or not finite is all NaN. With ``layer`` (see
        :meth:`raw`), that layer's rows over its own diagonal ``G_l(j, 0)``.
        """
        raw = self.raw(selection, layer).astype(np.float64)
        diagonal = raw[:, :1]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(valid_mask(diagonal), raw / diagonal, np.nan)

    def profile(self, selection: Selection = "pred", normalized: bool = True, layer: int | None = None) -> Any:
        """Per-distance statistics (:func:`aggregate_rows`) of the chosen rows (of one layer's, with ``layer``)."""
        rows = self.normalized(selection, layer) if normalized else self.raw(selection, layer)
        return aggregate_rows(rows, self.distances)

    def layer_profile(self, layer: int, selection: Selection = "pred") -> Any:
        """The normalized profile of decoder block ``layer``'s input: ``profile(selection, layer=layer)``."""
        return self.profile(selection, layer=layer)

    def fit(self, selection: Selection = "pred", statistic: Literal["median", "mean"] = "median",
            layer: int | None = None) -> Any:
        """The three decay models fitted to the normalized profile over ``r >= 1`` (a FitTable)."""
        return fit_decay_models(self.distances, self.profile(selection, layer=layer)[statistic].to_numpy())

    def resampling_unit(self, unit: Literal["document", "window"] | None = None) -> tuple[str, np.ndarray]:
        """What the bootstrap resamples, and each row's label of it: e.g. ``("document", [n_rows])``.

        By default (``unit=None``) whole documents: windows may overlap, and
        windows of one document share its text, so neither rows nor windows are
        independent. A run drawn from fewer than :data:`MIN_DOCUMENTS_TO_RESAMPLE`
        documents (a single local file, say) falls back to resampling windows, with
        a warning: its intervals then ignore the correlation between overlapping
        windows. ``unit="window"`` asks for windows regardless (to compare).

        The labels are identities of the text (:attr:`document_identity`, :attr:`window_identity`), not
        indices: the bootstrap draws groups in the order of their sorted labels, so two runs that hold the
        same documents draw the same ones in every replicate with the same seed (and pair), and two runs over
        different texts never share labels (and never pair), however each numbered its documents.
        """
        if unit not in (None, "document", "window"):
            raise ValueError(f"unit must be 'document', 'window' or None, got {unit!r}")
        if unit == "window":
            return "window", self.window_identity[self.window_of_row]
        documents = self.document_identity
        n_documents = np.unique(documents).size
        if n_documents >= MIN_DOCUMENTS_TO_RESAMPLE:
            return "document", documents[self.window_of_row]
        if unit == "document":
            raise ValueError(f"run {self.key} draws on {n_documents} document(s): too few to resample")
        warnings.warn(f"run {self.key} draws on {n_documents} document(s): the bootstrap resamples windows "
                      "instead of documents, and overlapping windows make its intervals too narrow", stacklevel=3)
        return "window", self.window_identity[self.window_of_row]

    def bootstrap(self, selection: Selection = "pred", n_boot: int = N_BOOT, seed: int = 0,
                  statistic: Literal["median", "mean", "geometric", "trimmed"] = "median",
                  unit: Literal["document", "window"] | None = None, layer: int | None = None,
                  n_sim: int | None = None) -> Any:
        """Bootstrap of the fits over whole documents (a BootstrapResult; see :meth:`resampling_unit`),
        with the calibrated checks of its verdict.

        With ``layer``, of that layer's profile; the same seed draws the same documents for every
        layer, so the layers' intervals come from the same resampled text. ``n_sim`` simulated
        profiles per law for the calibrated checks (``None``: ``min(N_SIM, n_boot)``; see
        :func:`~green_profiles.analysis.fits.bootstrap_fits`).
        """
        unit_name, labels = self.resampling_unit(unit)
        return bootstrap_fits(self.distances, self.normalized(selection, layer), n_boot=n_boot, seed=seed,
                              group=labels, group_name=unit_name, statistic=statistic,
                              n_sim=n_sim)

    def local_slope(self, selection: Selection = "pred", n_boot: int = N_BOOT, seed: int = 0,
                    unit: Literal["document", "window"] | None = None, layer: int | None = None) -> Any:
        """The local slope ``-d log Ĝ / d log(r+1)`` of the median profile with its band and plateau (a
        :class:`~green_profiles.analysis.local_slope.LocalSlope`), resampled like :meth:`bootstrap`
        (the same seed draws the same documents)."""
        _, labels = self.resampling_unit(unit)
        return local_slope(self.distances, self.normalized(selection, layer), labels, n_boot=n_boot, seed=seed)

    def summary(self, selection: Selection = "pred", n_boot: int = N_BOOT, seed: int = 0,
                layer: int | None = None, result: Any = None) -> dict[str, Any]:
        """One flat record of the run's headline numbers, for tables and forest plots.

        ``p`` (power + floor) and the log-RMSE gap (exponential with floor minus
        power law with floor, positive when the power law fits better) with their
        bootstrap 95% intervals (NaN where the fit is flat or stuck at a bound),
        the best of the three laws by log-RMSE, the verdict (``verdict_word`` and
        the sentence) with its calibrated tests (``p_vs_exp``, ``p_vs_power``: the null
        simulations' p-values, read at ``verdict_level``), the decay trend (``trend``, ``trend_low``,
        ``trend_high``), top-1 accuracy and mean loss at the targets. With ``layer``, of that
        decoder block's input (the record gains ``layer``).
        """
        if result is None:
            result = self.bootstrap(selection, n_boot=n_boot, seed=seed, layer=layer)
        decision = verdict(result)
        best = result.point.best
        point = result.point_estimates
        return {
            "model": self.config.model, "corpus": self.config.corpus, "shuffle": self.config.shuffle,
            "selection": selection, "seq_len": self.config.seq_len, "windows": len(self.arrays["window_ids"]),
            "rows": self.n_rows, "top1_accuracy": self.top1_accuracy, "mean_loss": self.mean_loss,
            "best_model": best.name if best is not None else None,
            "p": decision.p, "p_low": decision.p_low, "p_high": decision.p_high, "p_pure_power": point["p_power"],
            "floor_c": point["c_power_floor"], "xi": point["xi_exp_floor"],
            "rmse_gap": decision.gap, "rmse_gap_low": decision.gap_low, "rmse_gap_high": decision.gap_high,
            "power_wins": decision.power_wins_fraction, "bootstrap_unit": decision.unit,
            "bootstrap_groups": decision.n_groups, "verdict_word": decision.winner, "verdict": str(decision),
            "trend": decision.trend, "trend_low": decision.trend_low, "trend_high": decision.trend_high,
            "verdict_level": decision.level, **_checks_record(decision.calibration), "key": self.key,
        } | ({} if layer is None else {"layer": layer % self.n_layers})

    @property
    def top1_accuracy(self) -> float:
        """Share of rows where the argmax prediction was the observed next token."""
        return float(np.mean(self.arrays["pred_tokens"] == self.arrays["true_tokens"]))

    @property
    def mean_loss(self) -> float:
        """Mean next-token cross-entropy at the targets, in nats."""
        return float(-np.mean(self.arrays["true_log_probs"]))

    def __repr__(self) -> str:
        c = self.config
        return (f"ProfileRun({c.model} on {c.corpus}, L={c.seq_len}, {self.n_rows} rows, shuffle={c.shuffle}, "
                f"key={self.key})")


def _identity(kind: str, *parts: str) -> str:
    """16 hex digits of the SHA-256 of a tagged, NUL-separated record: what :attr:`ProfileRun.document_identity`
    and :attr:`ProfileRun.window_identity` are (64 bits: no two of a run's thousands collide in practice)."""
    record = "\0".join((f"green_profiles.{kind}_identity/1", *parts))
    return hashlib.sha256(record.encode()).hexdigest()[:16]


def _checks_record(checks: Any) -> dict[str, float]:
    """The null simulations' p-values of a verdict as flat record fields (NaN where they were not run)."""
    if checks is None:
        return dict.fromkeys(("p_vs_exp", "p_vs_power"), math.nan)
    return {"p_vs_exp": checks.p_exponential, "p_vs_power": checks.p_power}


def source_profile(run: ProfileRun, selection: Selection = "pred") -> Any:
    """The profile by source position ``s = j − r`` instead of distance: :func:`aggregate_rows` per ``s``.

    Every (row, grid distance) entry with ``r >= 1`` counts at its source index,
    whatever the targets and the grid, so runs with several targets pool the
    entries that share a source. Returns a DataFrame indexed by ``s`` (tokens from
    the window start), ascending.
    """
    import pandas as pd

    values = run.normalized(selection)[:, 1:]  # r = 0 is 1 by construction
    sources = run.target_of_row[:, None] - run.distances[None, 1:]
    keep = valid_mask(values)
    frame = pd.DataFrame({"s": sources[keep], "value": values[keep]})
    positions = np.unique(sources)
    columns = [frame.loc[frame["s"] == s, "value"].to_numpy() for s in positions]
    width = max((len(c) for c in columns), default=0)
    padded = np.full((width, len(positions)), np.nan)
    for index, column in enumerate(columns):
        padded[: len(column), index] = column
    table = aggregate_rows(padded, positions)
    table.index.name = "s"
    return table


def left_boundary_table(run: ProfileRun, buffer: int, selection: Selection = "pred", edge: int = 4) -> Any:
    """Median ``Ĝ`` in three bands of source position: the first ``edge`` sources, ``edge..buffer``, ``buffer..j``.

    Each band's value is the median over its sources of the per-source median
    (:func:`source_profile`), so a band is not weighted by how many rows reach it.
    A rise in the first band over the others is the left-boundary hook.

    Returns:
        a one-column Series indexed by band label (NaN for a band no source reaches).
    """
    import pandas as pd

    if not 0 < edge <= buffer:
        raise ValueError(f"need 0 < edge <= buffer, got edge {edge} and buffer {buffer}")
    medians = source_profile(run, selection)["median"]
    s = medians.index.to_numpy()
    bands = {f"median Ĝ, sources 0..{edge - 1}": s < edge,
             f"median Ĝ, sources {edge}..{buffer - 1}": (s >= edge) & (s < buffer),
             f"median Ĝ, sources {buffer}..j−1": s >= buffer}
    return pd.Series({label: float(np.nanmedian(medians[mask])) if mask.any() and medians[mask].notna().any()
                      else math.nan for label, mask in bands.items()})


def load_run(path: Path) -> ProfileRun:
    """Read a stored run, checking that it is complete and its files match their checksums.

    Raises:
        CorruptRunError: missing files, unreadable metadata or a checksum mismatch.
    """
    return ProfileRun.from_stored(read_run(Path(path)))


def run_profile(config: RunConfig, **options: Any) -> ProfileRun:
    """Measure a run, or read it from the store, and return it for analysis.

    ``options`` are those of :func:`green_profiles.runs.measurement.measure_run` (``data_dir``,
    ``device``, ``progress``, ``recompute``, ``kernel_options``, ``flush_seconds``, ``processes``),
    which also documents what it raises.
    """
    return ProfileRun.from_stored(measure_run(config, **options))


def list_runs(data_dir: Path | None = None) -> Any:
    """A table of the intact runs in the store: key, configuration, rows, provenance and when they ran.

    A damaged run (unreadable metadata, a file missing or not matching its
    checksum, metadata that does not give its key) is left out with a warning naming it;
    it is measured again the next time it is asked for. The table's ``attrs["damaged"]``
    counts them.
    """
    import pandas as pd

    records = []
    damaged = 0
    for path, metadata in stored_metadata(runs_directory(data_dir)):
        if isinstance(metadata, CorruptRunError):
            warnings.warn(f"skipping a damaged run: {metadata}", stacklevel=2)
            damaged += 1
            continue
        environment = metadata.get("environment", {})
        provenance = metadata.get("provenance", {})
        records.append({"key": metadata["key"], **metadata["config"], "dtype": metadata.get("dtype"),
                        "rows": metadata.get("n_rows"), "created": metadata.get("created"),
                        "device": environment.get("device"),
                        "kernel_s": metadata.get("timings", {}).get("kernel_s"),
                        "rows_per_s": metadata.get("rows_per_s"), "git_commit": environment.get("git_commit"),
                        "torch": environment.get("versions", {}).get("torch"),
                        "transformers": environment.get("versions", {}).get("transformers"),
                        "corpus_sha256": provenance.get("corpus_sha256"), "weights": provenance.get("weights"),
                        "results_version": provenance.get("results_version"), "path": str(path)})
    table = pd.DataFrame.from_records(records)
    table.attrs["damaged"] = damaged
    return table


def _check_selection(selection: str) -> None:
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
