"""The specification curve: the exponent of one model under each choice of protocol the paper made once.

A specification is the paper's protocol with one choice changed (the window length, where the targets sit,
the left buffer, the normalization, the aggregate over rows, the fitted range, the distance grid, the token,
the precision). Choices that change the kernel's inputs read their own run; the others are read from the
same run's whole rows (:mod:`~green_profiles.analysis.specifications`), so each kernel input is measured once.
Every specification is fitted and bootstrapped like a whole run, with the same seed, so two specifications
read from runs of the same documents are compared over the same resampled documents (a paired difference).
Each specification's ``p`` is tested against the paper's band (:func:`~green_profiles.analysis.decisions.band_test`:
inside, outside or inconclusive), and its difference from the paper protocol's by a bootstrap p-value,
Holm-adjusted over all the specifications of its curve (:func:`specification_tests`): a move is resolved
when its adjusted p-value is below 0.05.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from green_profiles.analysis.decisions import (BAND_VERDICTS, INCONCLUSIVE, INSIDE, NO_ESTIMATE, OUTSIDE, BandTest,
                                               band_test, difference_pvalue, holm, holm_text)
from green_profiles.analysis.fits import PAPER_P_RANGE, N_BOOT, bootstrap_fits, paired_difference
from green_profiles.analysis.fits.bootstrap import BootstrapResult, PairedDifference
from green_profiles.analysis.local_slope import PLATEAU_MARGIN, LocalSlope, Plateau, local_slope
from green_profiles.analysis.profiles import ProfileRun
from green_profiles.analysis.specifications import Derivation, specification_rows

__all__ = ["AXES", "Curve", "Specification", "axis_effects", "band_counts", "band_tests", "control_slopes",
           "curve_numbers", "curve_tests_text", "effects_tests_table", "evaluate", "kernel_costs", "plateau_text",
           "reachability", "specification_curve", "specification_tests", "specifications"]

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


def specification_tests(curve: Curve, key: str = "p_power_floor") -> Any:
    """Each specification's test of "its ``key`` (``p``) equals the paper protocol's", corrected for the curve.

    Returns a pandas DataFrame indexed like ``curve.table``: ``p-value``, the two-sided bootstrap p-value of a
    zero difference from the replicate-wise differences (:func:`~green_profiles.analysis.decisions.difference_pvalue`:
    paired where both were read from the same documents), and ``Holm p``, Holm-adjusted over every
    specification of the curve but the paper's own (NaN on its line, and where no difference is finite);
    ``tests``, how many specifications the correction ran over (the same on every line).
    """
    import pandas as pd

    table = curve.table
    paper = curve.results[0]
    raw = np.array([math.nan if axis == "paper" else difference_pvalue(result, paper, key)
                    for axis, result in zip(table["axis"], curve.results, strict=True)], dtype=np.float64)
    return pd.DataFrame({"p-value": raw, "Holm p": holm(raw), "tests": int(np.isfinite(raw).sum())},
                        index=table.index)


def axis_effects(curve: Curve) -> Any:
    """Each axis' largest move of ``p`` from the paper's protocol: one row per axis (pandas DataFrame, the
    axis that moves ``p`` most first) with the setting, ``p``, the difference and its interval, whether the
    difference is paired (the same documents), its bootstrap ``p-value``, its ``Holm p`` adjusted over all
    ``tests`` specifications of the curve (:func:`specification_tests`), and whether it is resolved (Holm-adjusted
    p below 0.05, with at most 2.5% of the replicates left out)."""
    import pandas as pd

    rows = []
    table = curve.table
    tests = specification_tests(curve)
    for axis in AXES:
        part = table[table["axis"] == axis]
        moves = [(abs(d.difference) if math.isfinite(d.difference) else -1.0, index)
                 for index, d in zip(part.index, part["p − paper"], strict=True)]
        if not moves:
            continue
        _, index = max(moves)
        difference: PairedDifference = table.at[index, "p − paper"]
        adjusted = float(tests.at[index, "Holm p"])
        rows.append({"axis": axis, "setting": table.at[index, "setting"], "p": table.at[index, "p"],
                     "difference": difference.difference, "low": difference.low, "high": difference.high,
                     "paired": difference.paired, "p-value": float(tests.at[index, "p-value"]), "Holm p": adjusted,
                     "tests": int(tests.at[index, "tests"]), "resolved": difference.resolved_by(adjusted),
                     "p − paper": difference})
    effects = pd.DataFrame.from_records(rows)
    if effects.empty:
        return effects
    order = effects["difference"].abs().fillna(-1.0).sort_values(ascending=False).index
    return effects.loc[order].reset_index(drop=True)


def effects_tests_table(effects: Any) -> Any:
    """The tests of :func:`axis_effects` as the page shows them, one line per axis: the bootstrap p-value, the
    Holm-adjusted one (over every specification of the curve) and whether the move is resolved."""
    import pandas as pd

    def pvalue(value: float) -> str:
        return f"{value:.2g}" if math.isfinite(value) else "—"

    tests = int(effects["tests"].max()) if len(effects) else 0
    return pd.DataFrame.from_records([{
        "axis": record["axis"],
        "p-value": pvalue(record["p-value"]),
        f"Holm-adjusted p (over {tests})": pvalue(record["Holm p"]),
        "resolved": "yes" if record["resolved"] else "no",
    } for record in effects.to_dict("records")],
        columns=["axis", "p-value", f"Holm-adjusted p (over {tests})", "resolved"]).set_index("axis")


def band_tests(curve: Curve, band: tuple[float, float] = PAPER_P_RANGE) -> list[BandTest]:
    """Each specification's ``p`` against ``band`` (:func:`~green_profiles.analysis.decisions.band_test`), in
    the table's order."""
    return [band_test(result, band) for result in curve.results]


def band_counts(curve: Curve, band: tuple[float, float] = PAPER_P_RANGE) -> dict[str, int]:
    """How many specifications' band tests read each outcome (every key of
    :data:`~green_profiles.analysis.decisions.BAND_VERDICTS`, zero where none): "inside the paper's band" (the
    90% interval inside it), "outside the paper's band" (the 95% interval above or below it), "inconclusive",
    "no estimate"."""
    counts = Counter(test.verdict for test in band_tests(curve, band))
    return {verdict: counts.get(verdict, 0) for verdict in BAND_VERDICTS}


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
    """The plateau test of a local slope in words: the level with its interval and range of ``r`` where the test
    showed the slope constant; a range over which the profile does not decay where the level's interval includes
    zero (a floor, not a scaling range); or that no range passed."""
    if found is None:
        return (f"no plateau shown: over none of the ranges tried does the slope stay within ±{PLATEAU_MARGIN:g} "
                "(equivalence test, Bonferroni over the ranges)")
    level = f"{found.level:.2f} [{found.low:.2f}, {found.high:.2f}]"
    span = f"r = {found.start:.0f}–{found.stop:.0f} ({found.octaves:.1f} octaves)"
    shown = f"slope shown constant within ±{found.margin:g} over {found.n_ranges} ranges tried"
    if not found.decays:
        return f"no decay over {span}: slope {level}, a floor rather than a power law ({shown})"
    return f"plateau {level} over {span} ({shown})"


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


def curve_tests_text(curve: Curve, effects: Any, band: tuple[float, float] = PAPER_P_RANGE) -> str:
    """One curve's tests in a sentence for its page: the band tests' counts and the family its moves were
    corrected over: ``"against 0.7–0.9, of 21 specifications with an estimate 0 are shown inside (90% interval
    inside the band), 2 outside (95% interval above or below it), 19 inconclusive; each move from the paper's
    protocol is resolved by its bootstrap p-value, Holm over 20 specifications"``."""
    counts = band_counts(curve, band)
    usable = sum(counts.values()) - counts[NO_ESTIMATE]
    tests = int(effects["tests"].max()) if len(effects) else 0
    return (f"against {band[0]:g}–{band[1]:g}, of {usable} specifications with an estimate {counts[INSIDE]} are shown "
            f"inside (90% interval inside the band), {counts[OUTSIDE]} outside (95% interval above or below it), "
            f"{counts[INCONCLUSIVE]} inconclusive; each move from the paper's protocol is resolved by its bootstrap "
            f"p-value, Holm over {tests} specifications")


def reachability(curves: Mapping[tuple[str, str], Curve], band: tuple[float, float] = PAPER_P_RANGE) -> str:
    """A sentence: on each corpus, how many specifications' ``p`` are shown inside ``band`` (equivalence test:
    the 90% interval inside it, named), shown outside it (the 95% interval above or below) or neither."""
    parts = []
    span = f"{band[0]:g}–{band[1]:g}"
    for (_, corpus), curve in curves.items():
        tests = band_tests(curve, band)
        counts = Counter(test.verdict for test in tests)
        usable = len(tests) - counts[NO_ESTIMATE]
        inside = [_label(record) for record, test in zip(curve.table.to_dict("records"), tests, strict=True)
                  if test.verdict == INSIDE]
        named = f" ({', '.join(inside)})" if inside else ""
        parts.append(f"on {corpus}, of {usable} specifications with an estimate, {counts[INSIDE]} shown inside "
                     f"{span}{named}, {counts[OUTSIDE]} shown outside it and {counts[INCONCLUSIVE]} inconclusive")
    return (f"By choices of protocol alone, for {next(iter(curves))[0]}: " + "; ".join(parts)
            + ". Inside: the 90% interval lies inside the band (two one-sided tests at 5%); outside: the 95% "
              "interval lies above or below it; inconclusive: neither (each specification tested on its own).")


def curve_numbers(curves: Mapping[tuple[str, str], Curve], effects: Mapping[tuple[str, str], Any],
                  slopes: Mapping[str, LocalSlope], costs: Any) -> dict[str, str]:
    """The page's headline numbers as text, by name (the summary page pastes them): the range of ``p`` over
    every specification, the paper protocol's ``p`` on each corpus, the axis that moves ``p`` most (and the
    largest paired move resolved by its Holm-adjusted p-value, ``holm``: over how many specifications), the band
    tests against the paper's 0.7–0.9 on each corpus (``band_inside``, ``band_outside``, ``band_inconclusive``),
    each control's plateau, the kernel runs' cost."""
    records = [dict(record, corpus=corpus) for (_, corpus), curve in curves.items()
               for record in curve.table.to_dict("records")]
    usable = [record for record in records if math.isfinite(record["p"])]
    moves = [dict(row, corpus=corpus) for (_, corpus), table in effects.items() for row in table.to_dict("records")
             if math.isfinite(row["difference"])]
    paired = [row for row in moves if row["paired"] and row["resolved"]]
    counts = {corpus: band_counts(curve) for (_, corpus), curve in curves.items()}
    tests = {corpus: int(specification_tests(curve)["tests"].max()) if len(curve.table) else 0
             for (_, corpus), curve in curves.items()}
    holm_over = (f"{next(iter(tests.values()))} specifications per corpus" if len(set(tests.values())) == 1
                 else " and ".join(f"{count} specifications on {corpus}" for corpus, count in tests.items()))

    def band(verdict: str) -> str:
        return "; ".join(f"{count[verdict]} of {sum(count.values()) - count[NO_ESTIMATE]} on {corpus}"
                         for corpus, count in counts.items())

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
                f"[{row['low']:+.2f}, {row['high']:+.2f}], {kind}, "
                f"{holm_text(row['Holm p'], str(row['tests']) + ' specifications')}")

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
        "most_paired": (move(max(paired, key=lambda row: abs(row["difference"]))) if paired
                        else f"none resolved (Holm over {holm_over})"),
        "holm": f"Holm over {holm_over}",
        "band_inside": band(INSIDE),
        "band_outside": band(OUTSIDE),
        "band_inconclusive": band(INCONCLUSIVE),
        "reachable": reachability(curves),
        **{f"plateau_{label}": text for label, text in plateaus.items()},
        "kernel_s": f"{total:.0f}",
        "largest_share": f"{largest:.0f} s ({largest / total:.0%}) at L = {int(costs['L'].max())}" if total else "—",
    }
