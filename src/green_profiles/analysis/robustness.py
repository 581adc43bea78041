"""The specification curve: the exponent of one model under each choice of protocol the paper made once.

A specification is the paper's protocol with one choice changed (the window length, where the targets sit,
the left buffer, the normalization, the aggregate over rows, the fitted range, the distance grid, the token,
the precision). Choices that change the kernel's inputs read their own run; the others are read from the
same run's whole rows (:mod:`~green_profiles.analysis.specifications`), so each kernel input is measured once.
Every specification is fitted and bootstrapped like a whole run, with the same seed, so two specifications
read from runs of the same documents are compared over the same resampled documents (a paired difference).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from green_profiles.analysis.fits import PAPER_P_RANGE, N_BOOT, bootstrap_fits, paired_difference
from green_profiles.analysis.fits.bootstrap import BootstrapResult, PairedDifference
from green_profiles.analysis.local_slope import LocalSlope, Plateau, local_slope
from green_profiles.analysis.profiles import ProfileRun
from green_profiles.analysis.specifications import Derivation, specification_rows

__all__ = ["AXES", "Curve", "Specification", "axis_effects", "band_overlap", "control_slopes", "curve_numbers",
           "evaluate", "kernel_costs", "plateau_text", "reachability", "specification_curve", "specifications"]

Run = tuple[str, ...]  # a kernel run of one model and corpus: ("reference",), ("L", "1024"), ("placement", "middle"), ...

# The axes in the order the figure lists them, each with its label of the paper's choice where it is fixed.
AXES = ("L", "placement", "buffer", "normalization", "aggregate", "min r", "max r", "grid", "token", "precision")
STATISTIC_LABELS = {"median": "median", "geometric": "mean of logs", "trimmed": "10% trimmed mean", "mean": "mean"}
NORMALIZATION_LABELS = {"G0": "G(j, 0)", "none": "none (raw G)", "G1": "G(j, 1)"}


@dataclass(frozen=True)
class Specification:
    """One point of the curve: which kernel run it reads and how.

    Attributes:
        axis: the axis on which it leaves the paper's protocol (``"paper"``: none).
        setting: its choice on that axis (the label the figure and table show).
        run: the kernel run it reads (see :data:`Run`).
        derivation: the grid, buffer (tokens; ``None``: the run's own), normalization and token.
        statistic: the aggregate over rows (a :func:`~green_profiles.analysis.fits.bootstrap_fits` statistic).
        min_distance, max_distance: the fitted range of ``r``, tokens (``None``: up to the grid's largest).
    """

    axis: str
    setting: str
    run: Run
    derivation: Derivation
    statistic: str = "median"
    min_distance: int = 1
    max_distance: int | None = None


def specifications(runs: Mapping[Run, Any], *, min_distances: Sequence[int] = (1, 2, 4, 8),
                   precision: str = "float32") -> tuple[list[Specification], dict[str, str]]:
    """Every specification the kernel runs allow: the paper's, then each axis' other choices alone.

    Args:
        runs: the kernel runs of one model and corpus by :data:`Run` (their :class:`RunConfig` or anything
            with a ``config``): ``("reference",)`` (the paper's ``L``, targets in the last sixteenth, buffer
            0, whole rows), ``("L", str(L))``, ``("placement", name)``, ``("precision", dtype)``.
        min_distances: the smallest fitted ``r`` of the ``min r`` axis; the first is the paper's.
        precision: the reference run's dtype as measured (its label on the precision axis).

    Returns:
        the specifications (the paper's first), and the paper's choice on each axis (axis -> label).
    """
    configs = {run: getattr(value, "config", value).resolved() for run, value in runs.items()}
    reference = configs[("reference",)]
    length = reference.seq_len
    buffer = 3 * length // 16
    paper = Derivation(grid="paper", buffer=buffer)
    paper_choices = {"L": str(length), "placement": "last", "buffer": "3L/16", "normalization": "G(j, 0)",
                     "aggregate": "median", "min r": str(min_distances[0]), "max r": "largest", "grid": "paper",
                     "token": "pred", "precision": precision}
    found = [Specification("paper", "paper", ("reference",), paper, min_distance=min_distances[0])]

    def add(axis: str, setting: str, run: Run = ("reference",), **changes: Any) -> None:
        derivation = changes.pop("derivation", paper)
        found.append(Specification(axis, setting, run, derivation, **({"min_distance": min_distances[0]} | changes)))

    for run in sorted((run for run in configs if run[0] == "L"), key=lambda run: int(run[1])):
        add("L", run[1], run, derivation=Derivation(grid="paper"))
    for run in (run for run in configs if run[0] == "placement"):
        add("placement", run[1], run, derivation=Derivation(grid="paper"))
    add("buffer", "none", derivation=Derivation(grid="paper", buffer=0))
    add("buffer", "L/2", derivation=Derivation(grid="paper", buffer=length // 2))
    for normalization in ("none", "G1"):
        add("normalization", NORMALIZATION_LABELS[normalization],
            derivation=Derivation(grid="paper", buffer=buffer, normalization=normalization))
    for statistic in ("geometric", "trimmed", "mean"):
        add("aggregate", STATISTIC_LABELS[statistic], statistic=statistic)
    for smallest in min_distances[1:]:
        add("min r", str(smallest), min_distance=int(smallest))
    add("max r", "L/8", max_distance=length // 8)
    add("max r", "L/4", max_distance=length // 4)
    add("grid", "dense", derivation=Derivation(grid="dense", buffer=buffer))
    add("token", "true", derivation=Derivation(grid="paper", buffer=buffer, selection="true"))
    for run in (run for run in configs if run[0] == "precision"):
        add("precision", run[1], run, derivation=Derivation(grid="paper"))
    return found, paper_choices


def evaluate(spec: Specification, run: ProfileRun, *, n_boot: int = N_BOOT, seed: int = 0
             ) -> tuple[NDArray[np.int64], BootstrapResult]:
    """The fitted distances ``[n_r]`` (tokens) and the document bootstrap of one specification on its run."""
    distances, rows = specification_rows(run.arrays, run.config.resolved().source_min_index, spec.derivation)
    largest = math.inf if spec.max_distance is None else spec.max_distance
    keep = (distances >= spec.min_distance) & (distances <= largest)
    unit, labels = run.resampling_unit()
    result = bootstrap_fits(distances[keep], rows[:, keep], n_boot=n_boot, seed=seed, group=labels,
                            group_name=unit, statistic=spec.statistic)
    return distances[keep], result


@dataclass
class Curve:
    """The specification curve of one model and corpus.

    Attributes:
        table: one row per specification (pandas DataFrame): ``axis``, ``setting``, a column per axis of
            :data:`AXES` holding its choice, the fitted range, ``p`` with ``p_low``/``p_high``, the gap and
            the verdict (as :meth:`ProfileRun.summary`), and ``p − paper`` (a :class:`PairedDifference`).
        results: each specification's bootstrap, in the table's order.
        paper_choices: the paper's choice on each axis.
    """

    table: Any
    results: list[BootstrapResult] = field(repr=False)
    paper_choices: dict[str, str]

    def choices(self) -> dict[str, list[str]]:
        """Each axis with its choices in the table, the paper's first (the rows of the figure's lower panel)."""
        table = self.table
        return {axis: [self.paper_choices[axis], *table.loc[table["axis"] == axis, "setting"].astype(str)]
                for axis in AXES}


def specification_curve(runs: Mapping[Run, ProfileRun], *, min_distances: Sequence[int] = (1, 2, 4, 8),
                        n_boot: int = N_BOOT, seed: int = 0) -> Curve:
    """Every specification of one model and corpus fitted and bootstrapped, with its difference from the paper's.

    Args:
        runs: the kernel runs by :data:`Run` (see :func:`specifications`).
        min_distances: the ``min r`` axis.
        n_boot, seed: the bootstrap's replicates and seed (the same for every specification, so that those
            read from the same windows resample the same documents).
    """
    import pandas as pd

    precision = str(runs[("reference",)].metadata.get("dtype", runs[("reference",)].config.dtype))
    specs, paper_choices = specifications(runs, min_distances=min_distances, precision=precision)
    records, results = [], []
    for spec in specs:
        run = runs[spec.run]
        distances, result = evaluate(spec, run, n_boot=n_boot, seed=seed)
        summary = run.summary(spec.derivation.selection, result=result)
        choices = paper_choices | ({} if spec.axis == "paper" else {spec.axis: spec.setting})
        records.append({"axis": spec.axis, "setting": spec.setting, **choices,
                        "fitted r": f"{int(distances[0])}–{int(distances[-1])}" if len(distances) else "none",
                        "n_r": len(distances), "run": "/".join(spec.run), "key": run.key,
                        **{name: summary[name] for name in ("windows", "rows", "p", "p_low", "p_high", "rmse_gap",
                                                             "rmse_gap_low", "rmse_gap_high", "verdict_word",
                                                             "verdict", "bootstrap_unit", "bootstrap_groups")}})
        results.append(result)
    table = pd.DataFrame.from_records(records)
    table["p − paper"] = [paired_difference(result, results[0]) for result in results]
    return Curve(table=table, results=results, paper_choices=paper_choices)


def axis_effects(curve: Curve) -> Any:
    """Each axis' largest move of ``p`` from the paper's protocol: one row per axis (pandas DataFrame, the
    axis that moves ``p`` most first) with the setting, ``p``, the difference and its interval, and whether
    the difference is paired (the same documents) and resolved (its interval excludes zero)."""
    import pandas as pd

    rows = []
    table = curve.table
    for axis in AXES:
        part = table[table["axis"] == axis]
        moves = [(abs(d.difference) if math.isfinite(d.difference) else -1.0, index)
                 for index, d in zip(part.index, part["p − paper"], strict=True)]
        if not moves:
            continue
        _, index = max(moves)
        difference: PairedDifference = table.at[index, "p − paper"]
        rows.append({"axis": axis, "setting": table.at[index, "setting"], "p": table.at[index, "p"],
                     "difference": difference.difference, "low": difference.low, "high": difference.high,
                     "paired": difference.paired, "resolved": difference.resolved, "p − paper": difference})
    effects = pd.DataFrame.from_records(rows)
    if effects.empty:
        return effects
    order = effects["difference"].abs().fillna(-1.0).sort_values(ascending=False).index
    return effects.loc[order].reset_index(drop=True)


def band_overlap(table: Any, band: tuple[float, float] = PAPER_P_RANGE) -> tuple[int, int, int]:
    """``(overlapping, inside, usable)``: how many specifications' intervals of ``p`` overlap ``band``, how
    many point estimates lie inside it, out of those with a usable ``p`` and interval."""
    p = table["p"].to_numpy(dtype=float)
    low = table["p_low"].to_numpy(dtype=float)
    high = table["p_high"].to_numpy(dtype=float)
    usable = np.isfinite(p) & np.isfinite(low) & np.isfinite(high)
    overlapping = usable & (low <= band[1]) & (high >= band[0])
    inside = usable & (p >= band[0]) & (p <= band[1])
    return int(overlapping.sum()), int(inside.sum()), int(usable.sum())


def control_slopes(runs: Mapping[str, ProfileRun], buffer: int, *, n_boot: int = N_BOOT, seed: int = 0
                   ) -> dict[str, LocalSlope]:
    """The local slope of each run's median profile (label -> :class:`LocalSlope`), read on the dense grid
    (about four distances an octave) of its whole rows from ``buffer`` (tokens) on, the paper's normalization."""
    slopes = {}
    for label, run in runs.items():
        distances, rows = specification_rows(run.arrays, run.config.resolved().source_min_index,
                                             Derivation(grid="dense", buffer=buffer))
        _, group = run.resampling_unit()
        slopes[label] = local_slope(distances, rows, group, n_boot=n_boot, seed=seed)
    return slopes


def plateau_text(found: Plateau | None) -> str:
    """A plateau of the local slope in words: its level with the interval and its range of ``r``, or, where the
    interval includes zero, a range over which the profile does not decay (a floor, not a scaling range)."""
    if found is None:
        return "no plateau over two octaves"
    level = f"{found.level:.2f} [{found.low:.2f}, {found.high:.2f}]"
    span = f"r = {found.start:.0f}–{found.stop:.0f} ({found.octaves:.1f} octaves)"
    if found.low <= 0.0 <= found.high:
        return f"no decay over {span}: slope {level}, a floor rather than a power law"
    return f"{level} over {span}"


def kernel_costs(runs: Mapping[tuple[str, ...], ProfileRun]) -> Any:
    """One line per kernel run (pandas DataFrame): its role, ``L``, windows, rows, dtype and the kernel's
    seconds as recorded when it was measured (``timings.kernel_s`` of its metadata; NaN if not recorded)."""
    import pandas as pd

    return pd.DataFrame.from_records([{
        "run": " · ".join(role), "L": run.config.resolved().seq_len, "windows": len(run.arrays["window_ids"]),
        "rows": run.n_rows, "dtype": run.metadata.get("dtype", run.config.dtype),
        "kernel s": float((run.metadata.get("timings") or {}).get("kernel_s", math.nan)),
    } for role, run in runs.items()]).set_index("run")


def _label(record: Mapping[str, Any]) -> str:
    return "the paper's protocol" if record["axis"] == "paper" else f"{record['axis']} {record['setting']}"


def reachability(curves: Mapping[tuple[str, str], Curve], band: tuple[float, float] = PAPER_P_RANGE) -> str:
    """A sentence: whether the paper's band of ``p`` is reached by a specification's estimate or interval."""
    parts = []
    for (model, corpus), curve in curves.items():
        table = curve.table
        inside = [_label(record) for record in table.to_dict("records")
                  if math.isfinite(record["p"]) and band[0] <= record["p"] <= band[1]]
        overlapping, _, usable = band_overlap(table, band)
        if inside:
            parts.append(f"on {corpus}, {len(inside)} of {usable} estimates lie inside {band[0]}–{band[1]} "
                         f"({', '.join(inside)})")
        elif overlapping:
            parts.append(f"on {corpus}, no estimate lies inside {band[0]}–{band[1]}, but {overlapping} of {usable} "
                         "intervals reach into it")
        else:
            parts.append(f"on {corpus}, no specification's interval reaches {band[0]}–{band[1]}")
    return f"By choices of protocol alone, for {next(iter(curves))[0]}: " + "; ".join(parts) + "."


def curve_numbers(curves: Mapping[tuple[str, str], Curve], effects: Mapping[tuple[str, str], Any],
                  slopes: Mapping[str, LocalSlope], costs: Any) -> dict[str, str]:
    """The page's headline numbers as text, by name (the summary page pastes them): the range of ``p`` over
    every specification, the paper protocol's ``p`` on each corpus, the axis that moves ``p`` most (and the
    largest paired move), the overlap with the paper's band, each control's plateau, the kernel runs' cost."""
    records = [dict(record, corpus=corpus) for (_, corpus), curve in curves.items()
               for record in curve.table.to_dict("records")]
    usable = [record for record in records if math.isfinite(record["p"])]
    moves = [dict(row, corpus=corpus) for (_, corpus), table in effects.items() for row in table.to_dict("records")
             if math.isfinite(row["difference"])]
    paired = [row for row in moves if row["paired"] and row["resolved"]]
    counts = [band_overlap(curve.table) for curve in curves.values()]
    overlapping, inside = sum(count[0] for count in counts), sum(count[1] for count in counts)

    def interval(record: Mapping[str, Any]) -> str:
        if not math.isfinite(record["p"]):
            return f"no estimate ({record['verdict_word']})"
        return f"{record['p']:.2f} [{record['p_low']:.2f}, {record['p_high']:.2f}]"

    def extreme(pick: Any) -> str:
        if not usable:
            return "no specification has an estimate"
        record = pick(usable, key=lambda record: record["p"])
        return f"{interval(record)} ({_label(record)}, {record['corpus']})"

    def move(row: Mapping[str, Any]) -> str:
        kind = "paired" if row["paired"] else "unpaired"
        return (f"{row['axis']} {row['setting']} on {row['corpus']}: {row['difference']:+.2f} "
                f"[{row['low']:+.2f}, {row['high']:+.2f}], {kind}")

    plateaus = {label.replace(" ", "_"): plateau_text(slope.plateau) for label, slope in slopes.items()}
    total = float(costs["kernel s"].sum())
    largest = float(costs.loc[costs["L"] == costs["L"].max(), "kernel s"].sum())
    return {
        "model": next(iter(curves))[0],
        "corpora": " and ".join(corpus for _, corpus in curves),
        "n_specifications": str(len(records)),
        "kernel_runs": str(len(costs)),
        "p_low": extreme(min),
        "p_high": extreme(max),
        "paper_p": "; ".join(f"{interval(curve.table.iloc[0])} on {corpus}" for (_, corpus), curve in curves.items()),
        "most": move(max(moves, key=lambda row: abs(row["difference"]))) if moves else "no difference estimated",
        "most_paired": move(max(paired, key=lambda row: abs(row["difference"]))) if paired else "none resolved",
        "overlap": f"{overlapping} of {len(usable)}",
        "inside": f"{inside} of {len(usable)}",
        "reachable": reachability(curves),
        **{f"plateau_{label}": text for label, text in plateaus.items()},
        "kernel_s": f"{total:.0f}",
        "largest_share": f"{largest:.0f} s ({largest / total:.0%}) at L = {int(costs['L'].max())}" if total else "—",
    }
