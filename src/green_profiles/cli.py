"""``python -m green_profiles`` (also ``green-profiles``): measure a profile and print its fits.

    green-profiles run --model smollm2-135m --corpus gutenberg --seq-len 512 --n-windows 24
    green-profiles run --preset pythia --n-windows 64 --device cuda
    green-profiles list
    green-profiles show 3f1c0a9e2b7d4c55
    green-profiles notebook coherent_text --settings smoke -p seq_len 256
    green-profiles plan --settings paper > paper-plan.jsonl
    green-profiles experiments
    green-profiles prepare
    green-profiles train --settings default
    green-profiles export --all --model pythia-70m -o published/pythia-70m.tar.gz
    green-profiles import published/*.tar.gz

``plan`` lists, before anything is measured, every run the named settings'
notebooks will measure (JSON lines when piped, a table on a terminal).
``experiments`` names the experiments (:mod:`green_profiles.runs.experiments`), one a line; with
``--make``, the make include that lists them and the package modules each notebook imports.
Named settings are read from ``notebooks/settings.yml`` of the project root (found from the
working directory up, else the checkout the package is loaded from) or from ``--settings-file``.
``run`` loads the run from the store when it was measured before with the same
settings, text, weights, tokenizer and code (instantly), otherwise measures it
with a progress bar; then it prints the median profile, the three fits and the
bootstrap verdict. ``show`` prints the same for a stored run without measuring.
``export`` and ``import`` carry stored runs between machines as checksummed
bundles (:mod:`green_profiles.runs.bundles`).

``run`` works unchanged under torchrun, which splits one run's windows over its
processes (:mod:`green_profiles.runs.distributed`); only the first rank prints the report:

    torchrun --nproc-per-node 4 -m green_profiles run --preset pythia

Exit status: 0 done; 2 bad input or data that cannot be had (one line on
stderr: a bad setting, an unknown or unavailable model or corpus, a damaged
run); 130 interrupted by Ctrl-C, 143 stopped by SIGTERM, 129 by SIGHUP (finished windows are
flushed first, as on Ctrl-C). Anything else is a bug or a machine fault (CUDA out of
memory, ...) and keeps its traceback (exit 1); ``--debug`` shows the traceback
of the one-line errors too.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from green_profiles.runs.configuration import PRESETS, SAMPLERS, SELECTIONS, RunConfig
from green_profiles.runs.signals import exit_status, stop_signals_as_interrupt

# Each subcommand imports the modules it needs when it runs (deferred): torch, transformers, pandas and
# datasets take seconds to import, and `--help`, `list` or `plan` should not wait for what they do not use.

if TYPE_CHECKING:
    from green_profiles.analysis.profiles import ProfileRun


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad input or unavailable data)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with stop_signals_as_interrupt():
            return args.handler(args)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM/SIGHUP (signals.Stopped)
        print(f"\n{interrupt or 'interrupted'}: finished windows are kept and the next identical run resumes "
              "from them", file=sys.stderr)
        return exit_status(interrupt)
    except Exception as error:
        if args.debug or not isinstance(error, _expected_errors()):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input or data that cannot be had here, not a bug: one line, exit 2."""
    from green_profiles.text import CorpusUnavailableError
    from green_profiles.models.loading import ModelUnavailableError
    from green_profiles.runs.store import CorruptRunError

    # ValueError covers bad settings, too-short corpora, windows beyond the context and
    # NonFiniteGradientError; RuntimeError in general (CUDA out of memory, ...) is not expected.
    return (ValueError, FileNotFoundError, ModelUnavailableError, CorpusUnavailableError, CorruptRunError)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="green-profiles", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data directory (corpora, converted models, runs/); default $GREEN_PROFILES_DATA or ./data")
    parser.add_argument("--debug", action="store_true", help="show the traceback of every error")
    commands = parser.add_subparsers(dest="command")

    run = commands.add_parser("run", help="measure (or load) a run and print its fits")
    run.add_argument("--preset", choices=sorted(PRESETS), help="start from one of the paper's runs")
    defaults = RunConfig()
    run.add_argument("--model", help=f"model name, hub id or directory (default {defaults.model})")
    run.add_argument("--corpus", help=f"gutenberg, gutenberg-heldout, wikipedia, paper-gutenberg, wikitext-103, pg19 or a .txt/.jsonl file "
                                      f"(default {defaults.corpus})")
    run.add_argument("--seq-len", type=int, help=f"window length L (default {defaults.seq_len})")
    run.add_argument("--n-windows", type=int, help=f"number of windows (default {defaults.n_windows})")
    run.add_argument("--target-min", type=int, help="first target position (default L - L/16)")
    run.add_argument("--target-max", type=int, help="last target position (default L - 1)")
    run.add_argument("--target-stride", type=int, help="step between targets (default: 16 targets)")
    run.add_argument("--source-min-index", type=int, help="left buffer: sources j - r >= this (default 3L/16)")
    run.add_argument("--distances", type=_int_list, help="comma-separated distance grid (default: the paper's)")
    run.add_argument("--shuffle", choices=("none", "window", "corpus"), help="shuffled control (default none)")
    run.add_argument("--sampler", choices=SAMPLERS,
                     help="uniform (ours, the default) or authors (the paper scripts' window rule)")
    run.add_argument("--dtype", help="auto, float32, bfloat16 or float16 (default auto)")
    run.add_argument("--seed", type=int, help="seed of sampling, shuffling and random init (default 0)")
    run.add_argument("--revision", help="hub revision, e.g. a Pythia step3000, or a checkpoint of a model trained "
                     "here (gutenberg-neox-d128 --revision step96)")
    run.add_argument("--split", help="split of a hub corpus (default test)")
    run.add_argument("--per-layer", action="store_true", default=None,
                     help="also store the norms with respect to every decoder block's input (same backward pass)")
    run.add_argument("--full-rows", action="store_true", default=None,
                     help="also store every target's whole row over all sources (for shading the text)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (not part of the cache key)")
    run.add_argument("--selection", choices=SELECTIONS + ("both",), default="both",
                     help="token selection(s) to fit: pred (the paper's figures), true, or both")
    run.add_argument("--bootstrap", type=_count, default=2000, metavar="N",
                     help="bootstrap replicates for the intervals, documents resampled (0 to skip; default 2000)")
    run.add_argument("--recompute", action="store_true", help="measure again even if the run is stored")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--flush-seconds", type=float, default=None, metavar="S",
                     help="write finished windows to the run's partial store at least every S seconds, so a "
                          "killed run resumes from them (default 60)")
    run.set_defaults(handler=_run)

    show = commands.add_parser("show", help="print a stored run's profile, fits and verdict (no measuring)")
    show.add_argument("run", help="a run key (see `list`) or a run directory")
    show.add_argument("--selection", choices=SELECTIONS + ("both",), default="both")
    show.add_argument("--bootstrap", type=_count, default=2000, metavar="N", help="bootstrap replicates (0 to skip)")
    show.set_defaults(handler=_show)

    notebook = commands.add_parser("notebook", help="execute one experiment notebook into the book (papermill)")
    notebook.add_argument("name", help="the experiment's (its notebook's) name, e.g. coherent_text")
    notebook.add_argument("--settings", "--profile", dest="settings", default="default",
                          help="named settings in notebooks/settings.yml (--profile: the name they had before)")
    _add_settings_file(notebook)
    notebook.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                          help="override a parameter (VALUE is read as YAML: 1024, [gutenberg], null)")
    notebook.add_argument("--quiet", action="store_true", help="do not relay the notebook's output")
    notebook.set_defaults(handler=_notebook)

    plan = commands.add_parser("plan", help="every run named settings will measure, and whether it is stored "
                                            "(a dry run: nothing is measured)")
    plan.add_argument("--settings", "--profile", dest="settings", default="default",
                      help="named settings in notebooks/settings.yml (default: default)")
    _add_settings_file(plan)
    plan.add_argument("--device", default="auto", help="the device to estimate kernel times for (default auto)")
    output = plan.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="JSON lines (the default when stdout is not a terminal)")
    output.add_argument("--table", action="store_true", help="a table (the default on a terminal)")
    plan.set_defaults(handler=_plan)

    experiments = commands.add_parser("experiments", help="the experiments (one notebook each), one name a line")
    experiments.add_argument("--make", action="store_true",
                             help="a make include instead: EXPERIMENTS, and each executed notebook's prerequisites "
                                  "(the package modules its code imports, directly or through other modules)")
    experiments.set_defaults(handler=_experiments)

    prepare = commands.add_parser("prepare", help="fetch and prepare the offline default's corpora and SmolLM2 "
                                                  "(`make data`), then count their tokens")
    prepare.set_defaults(handler=_prepare)

    train = commands.add_parser("train", help="train a family of small models here (`make models`)")
    chosen = train.add_mutually_exclusive_group()
    chosen.add_argument("--settings", default="default",
                        help="named settings: trains the family their training_dynamics experiment measures")
    chosen.add_argument("--family", help="train this family instead (e.g. gutenberg-neox, smoke-neox)")
    _add_settings_file(train)
    train.add_argument("--device", default="auto")
    train.set_defaults(handler=_train)

    listing = commands.add_parser("list", help="list the runs in the store")
    listing.add_argument("--markdown", action="store_true", help="a Markdown table with timings and versions")
    listing.set_defaults(handler=_list)
    _add_bundle_commands(commands)
    return parser


def _count(text: str) -> int:
    """A non-negative integer argument (argparse reports the error: one line, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _add_settings_file(command: argparse.ArgumentParser) -> None:
    command.add_argument("--settings-file", type=Path, default=None, metavar="FILE",
                         help="the file of named settings (default: notebooks/settings.yml of the project root)")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run configuration: the preset (or the defaults), overridden by the options given."""
    config = PRESETS[args.preset] if args.preset else RunConfig()
    overrides = {field.name: getattr(args, field.name) for field in dataclasses.fields(RunConfig)
                 if getattr(args, field.name, None) is not None}
    return dataclasses.replace(config, **overrides)


def _run(args: argparse.Namespace) -> int:
    from green_profiles.runs.distributed import world_from_environment
    from green_profiles.analysis.profiles import run_profile
    from green_profiles.runs.measurement import FLUSH_SECONDS

    config = config_from_args(args)
    flush = FLUSH_SECONDS if args.flush_seconds is None else args.flush_seconds
    run = run_profile(config, data_dir=args.data_dir, device=args.device, progress=not args.no_progress,
                      recompute=args.recompute, flush_seconds=flush)
    if world_from_environment().rank == 0:  # under torchrun, one report, not one per process
        _report(run, args.selection, args.bootstrap)
    return 0


def _show(args: argparse.Namespace) -> int:
    from green_profiles.analysis.profiles import load_run
    from green_profiles.runs.store import runs_directory

    path = Path(args.run)
    if not path.is_dir():
        path = runs_directory(args.data_dir) / args.run
        if not path.is_dir():
            raise FileNotFoundError(f"no stored run {args.run!r} in {path.parent}; `green-profiles list` shows them")
    _report(load_run(path), args.selection, args.bootstrap)
    return 0


def _report(run: ProfileRun, selection: str, n_boot: int) -> None:
    """Print a run's settings, quality, median profile, fits and verdict for each selection."""
    from green_profiles.analysis.fits import verdict

    resolved = run.config
    print(f"\n{run}")
    print(f"stored in {run.path}")
    print(f"targets {resolved.target_min}..{resolved.target_max} step {resolved.target_stride}, "
          f"sources >= {resolved.source_min_index}, {len(run.distances)} distances up to {run.distances[-1]}")
    print(f"top-1 accuracy {run.top1_accuracy:.3f}, mean loss {run.mean_loss:.3f} nats at the targets")
    rate = run.metadata.get("rows_per_s")
    if rate:
        print(f"measured at {rate:.3f} rows/s ({run.metadata['backward_rows_per_s']:.3f} backward passes/s) "
              f"on {run.metadata['environment']['device']}")
    selections = SELECTIONS if selection == "both" else (selection,)
    for chosen in selections:
        profile = run.profile(chosen)
        print(f"\n[{chosen}] median diagonal-normalized profile (Ĝ, dimensionless) over {run.n_rows} rows")
        print(profile[["count", "median", "q25", "q75"]].to_string(float_format=lambda v: f"{v:.4g}"))
        print(f"\n[{chosen}] fits over r >= 1, ranked by log-space RMSE")
        print(run.fit(chosen))
        if n_boot > 0:
            print(f"[{chosen}] {verdict(run.bootstrap(chosen, n_boot=n_boot, seed=resolved.seed))}")


def _notebook(args: argparse.Namespace) -> int:
    import yaml

    from green_profiles.report.execution import execute_notebook

    overrides = {name: yaml.safe_load(value) for name, value in args.parameter}
    path = execute_notebook(args.name, settings=args.settings, overrides=overrides, settings_file=args.settings_file,
                            data_dir=args.data_dir, log_output=not args.quiet)
    print(f"executed {args.name} ({args.settings} settings) -> {path}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    import json

    from green_profiles.runs.plans import describe_plan, settings_plan

    records = []
    as_json = args.json or (not args.table and not sys.stdout.isatty())
    plan = settings_plan(args.settings, settings_file=args.settings_file)
    for record in describe_plan(plan, data_dir=args.data_dir, device=args.device):
        records.append(record)
        if as_json:
            print(json.dumps(record), flush=True)
    rows = sum(record["rows"] for record in records)
    missing = [record for record in records if not record["stored"]]
    known = [record["estimated_kernel_s"] for record in missing if record["estimated_kernel_s"] is not None]
    device = records[0]["device"] if records else args.device
    total = f"{len(records)} runs, {rows:,} rows; {len(missing)} to measure"
    if known:
        total += f", estimated kernel time {duration_text(sum(known))} on {device}"
        if sum(known) > _CPU_PATIENCE_S and not str(device).startswith("cuda"):
            total += " (these settings are meant for a GPU: `make plan` there estimates its time)"
    if len(known) < len(missing):
        total += (f" ({len(missing) - len(known)} without an estimate on {device}: architecture unknown, "
                  "or a dtype this device cannot run)")
    if as_json:
        print(total, file=sys.stderr)
        return 0
    print(_plan_table(records))
    print(total)
    return 0


def _experiments(args: argparse.Namespace) -> int:
    from green_profiles.report.dependencies import make_include
    from green_profiles.runs.experiments import EXPERIMENTS, project_root

    print(make_include(project_root(), EXPERIMENTS) if args.make else "\n".join(EXPERIMENTS))
    return 0


# A plan longer than this on a CPU is said to need a GPU.
_CPU_PATIENCE_S = 24 * 3600


def duration_text(seconds: float) -> str:
    """A duration in the largest unit that keeps it readable: ``"42 s"``, ``"3.5 min"``, ``"7.2 h"``,
    ``"3.1 days"``, ``"76.5 years"``."""
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size if unit in ("years", "days") else seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _plan_table(records: Sequence[dict]) -> str:
    """The plan as a fixed-width table, one line per run."""
    import pandas as pd

    def here(record: dict) -> str:
        return f"{record['model_source'] or 'none'}/{record['text_source'] or 'none'}"

    def hours(seconds: float | None) -> str:
        return "?" if seconds is None else duration_text(seconds)

    table = pd.DataFrame([{
        "model": record["model"], "corpus": record["corpus"], "shuffle": record["shuffle"], "L": record["seq_len"],
        "windows": record["n_windows"], "rows": record["rows"], "dtype": record["dtype"],
        "stored": record["stored_match"] or "no", "model/text from": here(record),
        "kernel time": "stored" if record["stored"] else hours(record["estimated_kernel_s"]),
        "notebooks": ", ".join(record["notebooks"]),
    } for record in records])
    return table.to_string(index=False) if len(table) else "nothing to measure"


def _prepare(args: argparse.Namespace) -> int:
    import numpy as np
    from transformers import AutoTokenizer

    from green_profiles.files.locations import default_data_dir
    from green_profiles.models.loading import smollm2_directory
    from green_profiles.text import load_corpus, prepare_offline_data
    from green_profiles.text.token_cache import token_cache
    from green_profiles.text.windows import tokenize_documents

    data_dir = args.data_dir or default_data_dir()
    cache = token_cache(data_dir)  # the runs sample their windows from the same tokens: tokenized once
    prepare_offline_data(data_dir)
    model_dir = smollm2_directory(data_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    print(f"{'corpus':<11} {'documents':>9} {'tokens':>10} {'>= 513':>7} {'>= 2049':>8}   (SmolLM2 tokens)")
    for name in ("gutenberg", "wikipedia"):
        documents = load_corpus(name, data_dir=data_dir)
        lengths = np.array([len(ids) for ids in tokenize_documents(documents, tokenizer, cache=cache)])
        print(f"{name:<11} {len(documents):>9} {lengths.sum():>10,} {(lengths >= 513).sum():>7} "
              f"{(lengths >= 2049).sum():>8}")
    print(f"model weights: {model_dir}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from green_profiles.models.families import FAMILIES
    from green_profiles.models.training import train_and_report
    from green_profiles.runs.experiments import experiment_parameters

    family = args.family or experiment_parameters("training_dynamics", args.settings,
                                                  settings_file=args.settings_file)["family"]
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; families: {', '.join(sorted(FAMILIES))}")
    return train_and_report(family, data_dir=args.data_dir, device=args.device)


def _list(args: argparse.Namespace) -> int:
    from green_profiles.analysis.profiles import list_runs

    runs = list_runs(args.data_dir)
    damaged = runs.attrs.get("damaged", 0)
    skipped = f"{damaged} damaged run{'s' if damaged != 1 else ''} skipped (named above)"
    if runs.empty:
        print(f"no intact runs stored; {skipped}" if damaged else "no runs stored yet")
        return 0
    if damaged:
        print(skipped, file=sys.stderr)
    if not args.markdown:
        columns = ["key", "model", "corpus", "seq_len", "n_windows", "shuffle", "dtype", "seed", "rows", "created"]
        print(runs[columns].to_string(index=False))
        return 0
    header = ("key", "model", "corpus", "shuffle", "L", "windows", "rows", "dtype", "kernel time", "rows/s",
              "device", "torch", "transformers", "git commit", "created")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for run in runs.sort_values("created").itertuples():
        rate = f"{run.rows_per_s:.3f}" if run.rows_per_s == run.rows_per_s and run.rows_per_s else "resumed"
        commit = (run.git_commit or "")[:12] + ("-dirty" if str(run.git_commit).endswith("-dirty") else "")
        cells = (f"`{run.key}`", run.model, run.corpus, run.shuffle, run.seq_len, run.n_windows, run.rows, run.dtype,
                 f"{run.kernel_s:.0f} s", rate, run.device, run.torch, run.transformers, f"`{commit}`", run.created)
        print("| " + " | ".join(str(cell) for cell in cells) + " |")
    return 0


# --- export / import: runs as bundles ---------------------------------------------------------------

def _add_bundle_commands(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="write stored runs into one checksummed .tar.gz bundle")
    export.add_argument("keys", nargs="*", metavar="KEY", help="run keys (see `list`)")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="the bundle to write")
    export.add_argument("--all", action="store_true", help="every intact stored run (with --model/--corpus: those)")
    export.add_argument("--model", help="only runs of this model (exact name in the stored settings)")
    export.add_argument("--corpus", help="only runs on this corpus (exact name in the stored settings)")
    export.set_defaults(handler=_export)

    bring = commands.add_parser("import", help="verify bundles and add their runs to the store")
    bring.add_argument("bundles", nargs="+", type=Path, metavar="FILE", help="bundles written by `export`")
    bring.add_argument("--replace", action="store_true",
                       help="overwrite a stored run that has the same key but other content")
    bring.add_argument("--require-listed", action="store_true",
                       help="import only bundles whose SHA-256 is listed in published/SHA256SUMS of the project "
                            "(what a maintainer committed)")
    bring.add_argument("--trusted", type=Path, default=None, metavar="FILE",
                       help="the list of trusted SHA-256s (sha256sum format) for --require-listed")
    bring.set_defaults(handler=_import)

    verify = commands.add_parser("verify", help="measure a sample of stored runs' windows again and compare")
    verify.add_argument("keys", nargs="*", metavar="KEY", help="run keys (see `list`)")
    verify.add_argument("--all", action="store_true", help="every intact stored run")
    verify.add_argument("--windows", type=_count, default=2, metavar="N", help="windows per run (default 2)")
    verify.add_argument("--seed", type=int, default=0, help="chooses the windows (default 0)")
    verify.add_argument("--device", default="auto", help="device to measure on (default auto)")
    verify.set_defaults(handler=_verify)


def _export(args: argparse.Namespace) -> int:
    from green_profiles.runs.bundles import export_runs
    from green_profiles.runs.store import runs_directory

    store = runs_directory(args.data_dir)
    filtered = args.model is not None or args.corpus is not None
    if bool(args.keys) == (args.all or filtered):
        raise ValueError("give run keys, or --all and/or --model/--corpus to choose among the stored runs")
    keys = args.keys or _matching_runs(store, args.model, args.corpus)
    if not keys:
        raise ValueError(f"no intact stored run in {store}" + (" matches --model/--corpus" if filtered else ""))
    path = export_runs(store, keys, args.output)
    print(f"exported {len(set(keys))} run(s) to {path} ({path.stat().st_size / 1e6:.1f} MB):", *sorted(set(keys)))
    return 0


def _matching_runs(store: Path, model: str | None, corpus: str | None) -> list[str]:
    """Keys of the intact stored runs whose stored settings name ``model`` and ``corpus`` (None: any)."""
    from green_profiles.runs.store import CorruptRunError, stored_metadata

    keys = []
    for path, metadata in stored_metadata(store):
        if isinstance(metadata, CorruptRunError) or metadata["key"] != path.name:
            why = metadata if isinstance(metadata, CorruptRunError) else f"{path} holds run {metadata['key']}"
            print(f"green-profiles: not exporting a damaged run: {why}", file=sys.stderr)
            continue
        config = metadata["config"]
        if (model is None or config.get("model") == model) and (corpus is None or config.get("corpus") == corpus):
            keys.append(path.name)
    return keys


def _verify(args: argparse.Namespace) -> int:
    from green_profiles.analysis.profiles import list_runs
    from green_profiles.runs.verification import verify_run

    if bool(args.keys) == args.all:
        raise ValueError("give run keys or --all (not both)")
    if args.windows < 1:
        raise ValueError("--windows must be at least 1")
    keys = list(list_runs(args.data_dir).get("key", [])) if args.all else args.keys
    status = 0
    for key in keys:
        try:
            outcome = verify_run(key, args.data_dir, n_windows=args.windows, seed=args.seed, device=args.device)
        except _expected_errors() as error:  # one run that cannot be verified here does not stop the others
            if args.debug or len(keys) == 1:
                raise
            print(f"error: {error}", file=sys.stderr)
            status = 2
            continue
        print(outcome)
        status = status if outcome.matches else 2
    return status


def _import(args: argparse.Namespace) -> int:
    from green_profiles.runs.bundles import BundleError, import_runs
    from green_profiles.runs.store import runs_directory

    store = runs_directory(args.data_dir)
    trusted = None
    if args.require_listed or args.trusted is not None:
        from green_profiles.runs.bundles import trusted_checksums
        from green_profiles.runs.experiments import project_root

        trusted = trusted_checksums(args.trusted or project_root() / "published" / "SHA256SUMS")
    status = 0
    for bundle in args.bundles:
        try:
            report = import_runs(bundle, store, replace=args.replace, trusted=trusted)
        except (BundleError, FileNotFoundError) as error:  # one bad bundle does not stop the others
            if args.debug:
                raise
            print(f"error: {error}", file=sys.stderr)
            status = 2
            continue
        for key in report.imported:
            print(f"{bundle}: {key} imported")
        for key in report.already_present:
            print(f"{bundle}: {key} already present")
        for key, why in report.refused.items():
            print(f"{bundle}: {key} refused: {why}")
        status = status if report.ok else 2
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
