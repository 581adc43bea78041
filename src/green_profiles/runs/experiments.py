"""The experiments, each defined once: :data:`EXPERIMENTS`, and the named settings they run under.

An experiment is a notebook ``notebooks/<name>.ipynb`` and an entry here: the parameters it
takes, each with its default (:data:`SHARED_PARAMETERS`, which every experiment takes, and its
own), and the function that turns parameters into the runs it measures (role -> :class:`RunConfig`).
Everything that lists the experiments reads this registry: the notebooks, ``green-profiles plan``
(:mod:`green_profiles.runs.plans`), ``green-profiles notebook``, the Makefile (``green-profiles
experiments --make``) and the tests. A new experiment is one notebook and one entry of :data:`EXPERIMENTS`
(and its page's line in ``_toc.yml``, the book's order).

``notebooks/settings.yml`` maps a name (``smoke``, ``default``, ``full``, ``paper``, ...) to parameter
values: an ``all`` section shared by every experiment (each takes those it declares) and one section per
experiment. An experiment's parameters under named settings (:func:`experiment_parameters`) are its
defaults, then the settings' values, then the caller's overrides (``-p NAME VALUE``: a name the experiment
does not declare is an error). The settings file is found from the project root (:func:`project_root`), not
from the working directory alone.

Run settings come from the parameters (``seq_len``, ``n_windows``, ``target_stride``, ...), or, with
``published = True``, from the paper's published run of each model's family
(:func:`~green_profiles.runs.configuration.published_run`: ``L``, targets, buffer, distance grid, window
sampler and seed), so that one notebook measures Pythia at ``L = 2048`` and Qwen2.5 at ``L = 4096`` side by
side. ``n_windows``, ``dtype``, ``revision`` and ``split`` always come from the parameters;
``targets_per_window`` (normally ``None``) thins the published targets to that many evenly spaced ones, for
rehearsals on a CPU.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from green_profiles.kernel.precision import resolve_device
from green_profiles.models.families import FAMILIES, planned_steps
from green_profiles.runs.configuration import RunConfig, published_run

Role = tuple[str, ...]

# The parameters every experiment takes, with their defaults.
SHARED_PARAMETERS: Mapping[str, Any] = {
    "seq_len": 512,             # L, tokens the model reads per window
    "n_windows": 16,            # windows sampled per run
    "target_min": None,         # None: L - L/16 (the last sixteenth of the window)
    "target_max": None,         # None: L - 1
    "target_stride": 8,         # tokens between targets
    "source_min_index": None,   # left buffer, None means 3L/16 (384 at L 2048, as in the paper)
    "distances": None,          # None: the paper's grid, cut where a source would enter the buffer
    "sampler": "uniform",       # window rule: "uniform" (ours) or "authors" (the paper scripts')
    "dtype": "auto",            # "auto": float32 on a CPU, the checkpoint's on a GPU; "checkpoint": the checkpoint's everywhere
    "device": "auto",
    "seed": 0,                  # window sampling, shuffling and random initialization
    "split": "test",            # split of a hub corpus (wikitext-103): "train", "validation" or "test"
    "published": False,         # True: every model at its family's published run (L, targets, buffer, sampler, seed)
    "targets_per_window": None,  # with published: thin the targets to this many (CPU rehearsals); None keeps all
    "n_boot": 2000,             # bootstrap replicates for the intervals (documents resampled)
    "selection": "pred",        # token whose logit is differentiated: "pred" (argmax, the paper's) or "true"
}

# The project root holds both; the settings file is found there.
SETTINGS_PATH = Path("notebooks", "settings.yml")
_ROOT_MARKERS = (SETTINGS_PATH, Path("_toc.yml"))
# Where this module lies in a checkout: <root>/src/green_profiles/runs/experiments.py.
_CHECKOUT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Experiment:
    """One experiment: its notebook's name, the function listing its runs and its own parameters' defaults."""

    name: str
    runs: Callable[[Given], dict[Role, RunConfig]]
    own: Mapping[str, Any]

    def defaults(self) -> dict[str, Any]:
        """Every parameter the experiment declares, with its default (a fresh copy: lists may be changed)."""
        return copy.deepcopy(dict(SHARED_PARAMETERS) | dict(self.own))


class Given:
    """Parameters as an experiment's runs function reads them.

    ``given["models"]`` raises a ValueError naming the experiment when the parameter is missing (the
    functions also run on partial parameters, in tests); ``given.get`` for the optional ones;
    ``given.run(model, **changes)`` is the configuration of one run of ``model`` (:func:`run_settings`).
    """

    def __init__(self, experiment: str, parameters: Mapping[str, Any]) -> None:
        self.experiment = experiment
        self.parameters = parameters
        self.run = run_settings(parameters)

    def __getitem__(self, name: str) -> Any:
        if name not in self.parameters:
            raise ValueError(f"{self.experiment} needs the parameter {name!r}")
        return self.parameters[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.parameters.get(name, default)


# --- the runs of each experiment ---------------------------------------------------------------------

def _model_corpus_runs(given: Given) -> dict[Role, RunConfig]:
    """``(model, corpus)`` for every model and corpus (``model_sweep``; ``text_statistics`` sets the
    model's exponent next to the text's with these runs, the same as ``coherent_text``'s)."""
    return {(model, corpus): given.run(model, corpus=corpus) for model in given["models"] for corpus in given["corpora"]}


def _coherent_text_runs(given: Given) -> dict[Role, RunConfig]:
    """``(model, corpus)`` for every model and corpus; with ``shading_windows > 0``, also the runs shown as
    shaded text (:mod:`green_profiles.report.shading`), on the first model and corpus with
    ``shading_windows`` windows and ``full_rows``: ``(model, corpus, "shading", condition)`` for condition
    ``"trained"``, ``"random init"`` (the ``@random`` twin) and ``"shuffled"`` (the trained model on the
    window-shuffled text), the same seed and settings otherwise, so the same windows."""
    runs = _model_corpus_runs(given)
    windows = int(given.get("shading_windows") or 0)
    if windows > 0:
        model, corpus = given["models"][0], given["corpora"][0]
        trained = given.run(model, corpus=corpus, n_windows=windows, full_rows=True)
        runs |= {(model, corpus, "shading", "trained"): trained,
                 (model, corpus, "shading", "random init"): dataclasses.replace(trained, model=f"{model}@random"),
                 (model, corpus, "shading", "shuffled"): dataclasses.replace(trained, shuffle="window")}
    return runs


def _shuffled_tokens_runs(given: Given) -> dict[Role, RunConfig]:
    """``(model, corpus, shuffle)`` with shuffle ``"none"`` and each of ``shuffle_modes``."""
    modes = ["none", *given["shuffle_modes"]]
    return {(model, corpus, mode): given.run(model, corpus=corpus, shuffle=mode)
            for model in given["models"] for corpus in given["corpora"] for mode in modes}


def _random_init_runs(given: Given) -> dict[Role, RunConfig]:
    """``(model, "trained")``, ``(model, "random init")`` on ``corpus``, and the dense unbuffered runs of the
    left-boundary figure, ``(model, "hook", "coherent")`` and ``(model, "hook", "random init")``
    (``hook_windows`` windows, one target at ``L - 1``, every distance)."""
    corpus, hook_windows = given["corpus"], int(given["hook_windows"])
    runs: dict[Role, RunConfig] = {}
    for model in given["models"]:
        trained = given.run(model, corpus=corpus)
        runs[(model, "trained")] = trained
        runs[(model, "random init")] = dataclasses.replace(trained, model=f"{model}@random")
    for model in given["models"]:
        trained = runs[(model, "trained")]
        last = trained.resolved().seq_len - 1
        dense = dataclasses.replace(trained, n_windows=hook_windows, target_min=last, target_max=last,
                                    target_stride=1, source_min_index=0, distances=tuple(range(last + 1)))
        runs[(model, "hook", "coherent")] = dense
        runs[(model, "hook", "random init")] = dataclasses.replace(dense, model=f"{model}@random")
    return runs


def _depth_runs(given: Given) -> dict[Role, RunConfig]:
    """``(model, "trained")`` and ``(model, "random init")`` on ``corpus``, measured ``per_layer`` (the same
    windows and settings as ``random_init``'s, with every block's input)."""
    corpus = given["corpus"]
    runs: dict[Role, RunConfig] = {}
    for model in given["models"]:
        trained = given.run(model, corpus=corpus, per_layer=True)
        runs[(model, "trained")] = trained
        runs[(model, "random init")] = dataclasses.replace(trained, model=f"{model}@random")
    return runs


# Where the targets sit in the window for the placement axis: the start of their span (L/16 tokens) as a
# share of L. "last" is the paper's, the window's last sixteenth.
PLACEMENTS: Mapping[str, float] = {"last": 15 / 16, "middle": 1 / 2, "quarter": 1 / 4}


def at_length(config: RunConfig, length: int) -> RunConfig:
    """``config`` at window length ``length`` as the paper scales its runs: targets in the last sixteenth,
    their stride scaled with ``L`` (as many targets per window), the buffer at ``3L/16``, the paper's grid."""
    resolved = config.resolved()
    stride = max(1, resolved.target_stride * length // resolved.seq_len)
    return dataclasses.replace(config, seq_len=length, target_min=None, target_max=None, target_stride=stride,
                               source_min_index=None, distances=None)


def placed(config: RunConfig, placement: str) -> RunConfig:
    """``config`` with its targets' span (``L/16`` tokens, the same stride) moved to ``placement`` of the window
    (:data:`PLACEMENTS`), the buffer kept at ``3L/16``, the paper's grid cut where a source would enter it."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
    resolved = config.resolved()
    length = resolved.seq_len
    start = round(PLACEMENTS[placement] * length)
    return dataclasses.replace(config, target_min=start, target_max=start + length // 16 - 1,
                               target_stride=resolved.target_stride, source_min_index=3 * length // 16,
                               distances=None)


def _robustness_runs(given: Given) -> dict[Role, RunConfig]:
    """The kernel runs of the specification curve, for every model and corpus (each with whole rows, so that
    every other choice is read from them: :mod:`green_profiles.analysis.robustness`):

    - ``(model, corpus, "reference")``: the experiment's own run (``seq_len``, targets in the last sixteenth),
      buffer 0, so that any buffer can be read from it;
    - ``(model, corpus, "L", str(L))`` for the other window lengths of ``lengths``, scaled as the paper scales
      its runs (:func:`at_length`); ``windows_at_largest`` windows at the largest;
    - ``(model, corpus, "placement", name)`` for each of ``placements`` (:func:`placed`), the same windows;
    - ``(model, corpus, "precision", dtype)`` for each of ``precisions``, the same windows;
    - on the first corpus, the controls of the local slope: ``(model, corpus, "control", "random init")`` (the
      ``@random`` twin) and ``(model, corpus, "control", "shuffled")`` (the window-shuffled text).

    ``targets_per_window`` thins every run's targets (also without ``published``).
    """
    per_window = given.get("targets_per_window")
    largest = max(given["lengths"])
    runs: dict[Role, RunConfig] = {}
    for model in given["models"]:
        for corpus in given["corpora"]:
            config = given.run(model, corpus=corpus, full_rows=True)
            if per_window is not None and not given.get("published"):
                config = _thin_targets(config, int(per_window))
            length = config.resolved().seq_len
            runs[(model, corpus, "reference")] = dataclasses.replace(config, source_min_index=0, distances=None)
            for other in given["lengths"]:
                if other != length:
                    scaled = at_length(config, int(other))
                    if other == largest and given.get("windows_at_largest"):
                        scaled = dataclasses.replace(scaled, n_windows=int(given["windows_at_largest"]))
                    runs[(model, corpus, "L", str(other))] = scaled
            for placement in given["placements"]:
                runs[(model, corpus, "placement", placement)] = placed(config, placement)
            for dtype in given["precisions"]:
                runs[(model, corpus, "precision", dtype)] = dataclasses.replace(config, dtype=dtype)
        reference = runs[(model, given["corpora"][0], "reference")]
        runs[(model, given["corpora"][0], "control", "random init")] = dataclasses.replace(
            reference, model=f"{model}@random")
        runs[(model, given["corpora"][0], "control", "shuffled")] = dataclasses.replace(reference, shuffle="window")
    return runs


def _training_dynamics_runs(given: Given) -> dict[Role, RunConfig]:
    """``(model, "step<N>")`` for every size of ``family`` (or ``sizes``) and every checkpoint step, on
    ``corpus`` (the held-out text) with the experiment's own settings even when ``published`` (the
    family's context is short), ``(model, "random init")`` for each size's ``@random`` twin; and
    ``(model, "step<N>")`` for each of ``pythia_models`` at each of ``pythia_steps`` (hub revisions) on
    ``pythia_corpus``, at the published settings when ``published``. The checkpoint steps are those the
    family's finished training recorded, else those training it here would write."""
    name = given["family"]
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}: use one of {', '.join(FAMILIES)}")
    family = FAMILIES[name]
    base = dataclasses.replace(base_config(given.parameters), corpus=given["corpus"], revision=None)
    device = resolve_device(given.get("device", "auto"))
    runs: dict[Role, RunConfig] = {}
    for size in given.get("sizes") or [size.name for size in family.sizes]:
        family.size(size)
        model = f"{family.name}-{size}"
        for step in planned_steps(family, size, device):
            runs[(model, f"step{step}")] = dataclasses.replace(base, model=model, revision=f"step{step}")
        runs[(model, "random init")] = dataclasses.replace(base, model=f"{model}@random")
    for model in given.get("pythia_models") or []:
        for step in given["pythia_steps"]:
            runs[(model, f"step{step}")] = given.run(model, corpus=given["pythia_corpus"], revision=f"step{step}")
    return runs


# --- the registry: the experiments in the book's order, each with its own parameters -----------------

EXPERIMENTS: Mapping[str, Experiment] = {experiment.name: experiment for experiment in (
    Experiment("coherent_text", _coherent_text_runs, {
        "models": ["smollm2-135m"],         # the first one fills the summary page
        "corpora": ["gutenberg", "wikipedia"],
        "shading_windows": 3,               # windows of the shaded-text runs (first model and corpus, full rows); 0: none
    }),
    Experiment("shuffled_tokens", _shuffled_tokens_runs, {
        "models": ["smollm2-135m"],         # the first one fills the summary page
        "corpora": ["gutenberg", "wikipedia"],
        "shuffle_modes": ["window"],        # add "corpus" for the corpus-wide permutation
    }),
    Experiment("random_init", _random_init_runs, {
        "models": ["smollm2-135m"],         # each against its randomly initialized twin; the first one fills the summary page
        "corpus": "gutenberg",
        "hook_windows": 8,                  # windows of the dense, unbuffered run that shows the left-boundary hook
    }),
    Experiment("model_sweep", _model_corpus_runs, {
        "models": ["smollm2-135m", "smollm2-135m@random"],
        "corpora": ["gutenberg", "wikipedia"],
    }),
    # One trained model under choices of protocol the paper made once: each kernel run once, with whole rows;
    # the other choices (buffer, normalization, aggregate, fitted range, grid, token) read from those rows.
    Experiment("robustness", _robustness_runs, {
        "models": ["smollm2-135m"],
        "corpora": ["gutenberg-heldout", "wikipedia"],
        "lengths": [256, 512, 1024, 2048],  # window lengths L of the L axis; seq_len is the reference
        "windows_at_largest": None,         # windows at the largest L (None: n_windows), its runs being the dearest
        "placements": ["middle", "quarter"],  # targets' span besides the last sixteenth (PLACEMENTS)
        "precisions": ["bfloat16"],         # dtypes besides the reference's (dtype) on the same windows
        "min_distances": [1, 2, 4, 8],      # smallest fitted r; the first is the paper's
    }),
    Experiment("text_statistics", _model_corpus_runs, {
        "corpora": ["gutenberg", "wikipedia"],
        "tokenizer_model": "smollm2-135m",  # whose tokenizer cuts the text into tokens
        "max_distance": 1024,               # largest distance r of the text's I(r), tokens
        "control_distances": [1, 4, 16, 64, 256, 1024],  # the shuffled controls' (sparser) grid
        "tail_min_distance": 8,             # the tail of I(r): also fitted from this distance on, past the first few tokens
        "max_tokens": None,                 # None: every document; else whole documents, in a seeded random order, up to this many tokens
        "n_half_samples": 50,               # half-samples of the documents for the text's intervals
        "n_permutations": 4,                # re-pairings averaged for each baseline (full data and every half)
        # The model's side: the runs of the coherent-text page (read from the store; same parameters, same runs).
        "models": ["smollm2-135m"],         # the first one fills the summary page
    }),
    Experiment("depth", _depth_runs, {
        "models": ["smollm2-135m"],         # each against its randomly initialized twin; the first one fills the summary page
        "corpus": "gutenberg",
        "layer_step": 1,                    # fit and bootstrap every layer_step-th block's input (and always the last); 1: all
    }),
    # seq_len: at most the family's context; with published, the Pythia checkpoints at the paper's published
    # run (our family keeps the experiment's own settings).
    Experiment("training_dynamics", _training_dynamics_runs, {
        "family": "gutenberg-neox",         # the family trained by `make models` (green_profiles.models.families)
        "sizes": None,                      # None: every size of the family
        "corpus": "gutenberg-heldout",      # held-out chapters: never seen in training
        "pythia_models": [],                # with the hub, e.g. ["pythia-70m"]: swept over pythia_steps
        "pythia_steps": [0, 64, 512, 2000, 8000, 32000, 143000],
        "pythia_corpus": "paper-gutenberg",
    }),
)}


def experiment(name: str) -> Experiment:
    """The registered experiment ``name``.

    Raises:
        ValueError: no experiment of that name.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown notebook {name!r}: the experiments (green_profiles.runs.experiments) are "
                         f"{', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def notebook_runs(notebook: str, parameters: Mapping[str, Any]) -> dict[Role, RunConfig]:
    """The runs ``notebook`` measures under ``parameters``, by role (each experiment's function above
    says which roles): what the notebook measures and what ``green-profiles plan`` lists.

    Raises:
        ValueError: an unknown notebook, or parameters the notebook needs that are missing.
    """
    return experiment(notebook).runs(Given(notebook, parameters))


# --- from parameters to run settings -----------------------------------------------------------------

# What a published run fixes; everything else of a run comes from the experiment's parameters.
_PUBLISHED_FIELDS = ("seq_len", "target_min", "target_max", "target_stride", "source_min_index", "distances",
                     "sampler", "seed")
_ALWAYS_FROM_PARAMETERS = ("n_windows", "dtype", "revision", "split")


def base_config(parameters: Mapping[str, Any]) -> RunConfig:
    """The run settings named by an experiment's parameters (names that are :class:`RunConfig` fields;
    anything else, e.g. ``n_boot`` or the notebook's other globals, is ignored)."""
    fields = {field.name for field in dataclasses.fields(RunConfig)}
    settings = {name: parameters[name] for name in fields if name in parameters}
    if settings.get("distances") is not None:
        settings["distances"] = tuple(int(r) for r in settings["distances"])
    return RunConfig(**settings)


def run_settings(parameters: Mapping[str, Any]) -> Callable[..., RunConfig]:
    """``settings(model, **changes)``: the configuration of one run of ``model`` under the parameters.

    Without ``published`` it is the parameters' settings with the model and the
    changes; with it, the published run of the model's family, with ``n_windows``,
    ``dtype``, ``revision`` and ``split`` from the parameters and the targets thinned
    to ``targets_per_window`` when that is set.
    """
    base = base_config(parameters)
    published = bool(parameters.get("published", False))
    per_window = parameters.get("targets_per_window")

    def settings(model: str, **changes: Any) -> RunConfig:
        if not published:
            return dataclasses.replace(base, model=model, **changes)
        paper = published_run(model)
        config = dataclasses.replace(
            base, model=model, **{name: getattr(paper, name) for name in _PUBLISHED_FIELDS})
        if per_window is not None:
            config = _thin_targets(config, int(per_window))
        return dataclasses.replace(config, **changes)

    return settings


def _thin_targets(config: RunConfig, count: int) -> RunConfig:
    """Every k-th target of the range, so that at most ``count`` remain (the first one kept)."""
    if count < 1:
        raise ValueError(f"targets_per_window must be positive, got {count}")
    resolved = config.resolved()
    every = -(-len(resolved.targets) // count)
    return dataclasses.replace(config, target_stride=every * resolved.target_stride)


# --- named settings ------------------------------------------------------------------------------------

def project_root(start: Path | None = None) -> Path:
    """The project's root: the first of ``start`` (default: the working directory) and its parents that
    holds ``notebooks/settings.yml`` and ``_toc.yml``, else the checkout this package is loaded from
    (an editable install, or ``PYTHONPATH=src``).

    Raises:
        FileNotFoundError: none of them is a project root (the message names where it looked).
    """
    here = (Path.cwd() if start is None else Path(start)).resolve()
    for directory in (here, *here.parents, _CHECKOUT):
        if all((directory / marker).is_file() for marker in _ROOT_MARKERS):
            return directory
    raise FileNotFoundError(
        f"no project root (a directory holding {SETTINGS_PATH} and _toc.yml): searched {here} and its parents, "
        f"and {_CHECKOUT} (where green_profiles is loaded from); run inside the project or pass --settings-file")


def settings_path(settings_file: Path | str | None = None) -> Path:
    """The settings file: ``settings_file`` when given, else ``notebooks/settings.yml`` of :func:`project_root`.

    Raises:
        FileNotFoundError: the given file does not exist, or no project root was found.
    """
    if settings_file is None:
        return project_root() / SETTINGS_PATH
    if not Path(settings_file).is_file():
        raise FileNotFoundError(f"no settings file {settings_file}")
    return Path(settings_file)


def settings_parameters(experiment: str, settings: str, settings_file: Path | str | None = None) -> dict[str, Any]:
    """The values named settings give one experiment (``all`` merged with the experiment's own section;
    ``all`` may name parameters the experiment does not take).

    Raises:
        ValueError: unknown settings.
    """
    import yaml

    path = settings_path(settings_file)
    try:
        named = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path}{where}: not valid YAML ({getattr(error, 'problem', None) or error})") from error
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    if not isinstance(named, dict) or not all(isinstance(value, dict | None) for value in named.values()):
        raise ValueError(f"{path}: expected named settings, each a mapping of sections (see notebooks/settings.yml)")
    if settings not in named:
        raise ValueError(f"unknown settings {settings!r}: {path} defines {', '.join(named)}")
    sections = named[settings] or {}
    return dict(sections.get("all") or {}) | dict(sections.get(experiment) or {})


def experiment_parameters(name: str, settings: str = "default", overrides: Mapping[str, Any] | None = None, *,
                          settings_file: Path | str | None = None) -> dict[str, Any]:
    """Every parameter of experiment ``name`` under named settings: its defaults, overridden by the settings'
    values (those it declares), overridden by ``overrides``.

    Raises:
        ValueError: an unknown experiment or settings, or an override the experiment does not declare.
        FileNotFoundError: no settings file (see :func:`settings_path`).
    """
    parameters = experiment(name).defaults()
    unknown = sorted(set(overrides or {}) - set(parameters))
    if unknown:
        raise ValueError(f"{name} has no parameter {', '.join(unknown)}; it declares {', '.join(parameters)}")
    chosen = settings_parameters(name, settings, settings_file)
    return parameters | {key: value for key, value in chosen.items() if key in parameters} | dict(overrides or {})
