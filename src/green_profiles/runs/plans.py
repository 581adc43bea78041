"""Which runs each experiment notebook measures, from its parameters alone.

A notebook's parameters (its ``parameters`` cell, merged with named settings) decide
its runs; :func:`notebook_runs` turns them into run configurations, one per role
the notebook gives a run (``(model, corpus)``, ``(model, corpus, shuffle)``, ...).
The notebooks measure exactly what it returns, and ``green-profiles plan``
(:func:`settings_plan`, :func:`describe_plan`) lists the same configurations before
anything is measured, so the two cannot disagree.

Run settings come from the notebook's own parameters (``seq_len``, ``n_windows``,
``target_stride``, ...), or, with ``published = True``, from the paper's published
run of each model's family (:func:`~green_profiles.runs.configuration.published_run`:
``L``, targets, buffer, distance grid, window sampler and seed), so that one
notebook measures Pythia at ``L = 2048`` and Qwen2.5 at ``L = 4096`` side by side.
``n_windows``, ``dtype``, ``revision`` and ``split`` always come from the
parameters; ``targets_per_window`` (normally ``None``) thins the published targets
to that many evenly spaced ones, for rehearsals on a CPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from green_profiles.runs.configuration import RunConfig, published_run
from green_profiles.files import hub
from green_profiles.kernel.precision import check_dtype_for_device, device_description, resolve_device, resolve_dtype
from green_profiles.models.families import FAMILIES, planned_steps
from green_profiles.models.loading import ModelUnavailableError, checkpoint_dtype, model_location
from green_profiles.runs import costs
from green_profiles.runs.experiments import SETTINGS_FILE, notebook_parameters
from green_profiles.runs.provenance import Provenance, RESULTS_VERSION, model_fingerprint, run_key, settings_key
from green_profiles.runs.store import runs_directory, stored_metadata
from green_profiles.text import CorpusUnavailableError, HUB_CORPORA, corpus_checksum, load_corpus

NOTEBOOKS = ("coherent_text", "shuffled_tokens", "random_init", "model_sweep", "text_statistics", "depth",
             "training_dynamics")
# What a published run fixes; everything else of a run comes from the notebook's parameters.
_PUBLISHED_FIELDS = ("seq_len", "target_min", "target_max", "target_stride", "source_min_index", "distances",
                     "sampler", "seed")
_ALWAYS_FROM_PARAMETERS = ("n_windows", "dtype", "revision", "split")

Role = tuple[str, ...]


def base_config(parameters: Mapping[str, Any]) -> RunConfig:
    """The run settings named by a notebook's parameters (names that are :class:`RunConfig` fields;
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


def notebook_runs(notebook: str, parameters: Mapping[str, Any]) -> dict[Role, RunConfig]:
    """The runs ``notebook`` measures under ``parameters``, by role.

    Roles:
        ``coherent_text``: ``(model, corpus)`` for every model and corpus; with ``shading_windows > 0``,
            also the runs shown as shaded text (:mod:`green_profiles.report.shading`), on the first model and
            corpus with ``shading_windows`` windows and ``full_rows``: ``(model, corpus, "shading", condition)``
            for condition ``"trained"``, ``"random init"`` (the ``@random`` twin) and ``"shuffled"`` (the
            trained model on the window-shuffled text), the same seed and settings otherwise, so the
            same windows.
        ``shuffled_tokens``: ``(model, corpus, shuffle)`` with shuffle ``"none"`` and each of ``shuffle_modes``.
        ``random_init``: ``(model, "trained")``, ``(model, "random init")`` on ``corpus``, and the dense
            unbuffered runs of the left-boundary figure, ``(model, "hook", "coherent")`` and
            ``(model, "hook", "random init")`` (``hook_windows`` windows, one target at ``L - 1``,
            every distance).
        ``model_sweep``: ``(model, corpus)`` for every model and corpus.
        ``text_statistics``: the runs of ``coherent_text`` (the model's exponent, set next to the text's).
        ``depth``: ``(model, "trained")`` and ``(model, "random init")`` on ``corpus``, measured
            ``per_layer`` (the same windows and settings as ``random_init``'s, with every block's input).
        ``training_dynamics``: ``(model, "step<N>")`` for every size of ``family`` (or ``sizes``) and every
            checkpoint step, on ``corpus`` (the held-out text) with the notebook's own settings even when
            ``published`` (the family's context is short), ``(model, "random init")`` for each size's
            ``@random`` twin; and ``(model, "step<N>")`` for each of ``pythia_models`` at each of
            ``pythia_steps`` (hub revisions) on ``pythia_corpus``, at the published settings when ``published``.

    Raises:
        ValueError: an unknown notebook, or parameters the notebook needs that are missing.
    """
    settings = run_settings(parameters)

    def needed(name: str) -> Any:
        if name not in parameters:
            raise ValueError(f"{notebook} needs the parameter {name!r}")
        return parameters[name]

    if notebook in ("coherent_text", "model_sweep", "text_statistics"):
        runs = {(model, corpus): settings(model, corpus=corpus)
                for model in needed("models") for corpus in needed("corpora")}
        if notebook == "coherent_text" and int(parameters.get("shading_windows") or 0) > 0:
            runs |= _shading_runs(settings, needed("models")[0], needed("corpora")[0],
                                  int(parameters["shading_windows"]))
        return runs
    if notebook == "shuffled_tokens":
        modes = ["none", *needed("shuffle_modes")]
        return {(model, corpus, mode): settings(model, corpus=corpus, shuffle=mode)
                for model in needed("models") for corpus in needed("corpora") for mode in modes}
    if notebook == "random_init":
        corpus, hook_windows = needed("corpus"), int(needed("hook_windows"))
        runs: dict[Role, RunConfig] = {}
        for model in needed("models"):
            trained = settings(model, corpus=corpus)
            runs[(model, "trained")] = trained
            runs[(model, "random init")] = dataclasses.replace(trained, model=f"{model}@random")
        for model in needed("models"):
            trained = runs[(model, "trained")]
            last = trained.resolved().seq_len - 1
            dense = dataclasses.replace(trained, n_windows=hook_windows, target_min=last, target_max=last,
                                        target_stride=1, source_min_index=0, distances=tuple(range(last + 1)))
            runs[(model, "hook", "coherent")] = dense
            runs[(model, "hook", "random init")] = dataclasses.replace(dense, model=f"{model}@random")
        return runs
    if notebook == "training_dynamics":
        return _training_runs(parameters, settings, needed)
    if notebook == "depth":
        corpus = needed("corpus")
        runs = {}
        for model in needed("models"):
            trained = settings(model, corpus=corpus, per_layer=True)
            runs[(model, "trained")] = trained
            runs[(model, "random init")] = dataclasses.replace(trained, model=f"{model}@random")
        return runs
    raise ValueError(f"unknown notebook {notebook!r}: use one of {', '.join(NOTEBOOKS)}")


def _shading_runs(settings: Callable[..., RunConfig], model: str, corpus: str,
                  n_windows: int) -> dict[Role, RunConfig]:
    """The three runs of ``coherent_text``'s shaded sentences (see :func:`notebook_runs`)."""
    trained = settings(model, corpus=corpus, n_windows=n_windows, full_rows=True)
    return {(model, corpus, "shading", "trained"): trained,
            (model, corpus, "shading", "random init"): dataclasses.replace(trained, model=f"{model}@random"),
            (model, corpus, "shading", "shuffled"): dataclasses.replace(trained, shuffle="window")}


def _training_runs(parameters: Mapping[str, Any], settings: Callable[..., RunConfig],
                   needed: Callable[[str], Any]) -> dict[Role, RunConfig]:
    """The runs of ``training_dynamics`` (see :func:`notebook_runs`): the checkpoint steps are those the
    family's finished training recorded, else those training it here would write."""
    name = needed("family")
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}: use one of {', '.join(FAMILIES)}")
    family = FAMILIES[name]
    base = dataclasses.replace(base_config(parameters), corpus=needed("corpus"), revision=None)
    device = resolve_device(parameters.get("device", "auto"))
    runs: dict[Role, RunConfig] = {}
    for size in parameters.get("sizes") or [size.name for size in family.sizes]:
        family.size(size)
        model = f"{family.name}-{size}"
        for step in planned_steps(family, size, device):
            runs[(model, f"step{step}")] = dataclasses.replace(base, model=model, revision=f"step{step}")
        runs[(model, "random init")] = dataclasses.replace(base, model=f"{model}@random")
    for model in parameters.get("pythia_models") or []:
        for step in needed("pythia_steps"):
            runs[(model, f"step{step}")] = settings(model, corpus=needed("pythia_corpus"), revision=f"step{step}")
    return runs


@dataclass(frozen=True)
class PlannedRun:
    """One distinct run that named settings measure, with the notebooks that ask for it."""

    config: RunConfig
    notebooks: tuple[str, ...]

    @property
    def rows(self) -> int:
        """Windows times targets: the rows the run measures."""
        resolved = self.config.resolved()
        return resolved.n_windows * len(resolved.targets)


def settings_plan(settings: str, *, notebooks: Sequence[str] = NOTEBOOKS, source_dir: Path = Path("notebooks"),
                  settings_file: Path | None = None) -> list[PlannedRun]:
    """Every distinct run the named settings measure across ``notebooks``, in the order they are first
    asked for (a run several notebooks share, e.g. coherent text in the shuffled notebook, appears once)."""
    asked: dict[RunConfig, list[str]] = {}
    for notebook in notebooks:
        parameters = notebook_parameters(notebook, settings, source_dir=source_dir,
                                         settings_file=settings_file or SETTINGS_FILE)
        for config in notebook_runs(notebook, parameters).values():
            users = asked.setdefault(config.resolved(), [])
            if notebook not in users:
                users.append(notebook)
    return [PlannedRun(config, tuple(users)) for config, users in asked.items()]


class _Inputs:
    """What this machine has of each model and corpus, each looked up once per plan.

    A dry run must not download: corpora are read from local files and caches only
    (a hub corpus that is not cached counts as available when the hub can be reached,
    and is then not loaded); models are only resolved to their files or commit.
    """

    def __init__(self, data_dir: Path | None) -> None:
        self.data_dir = data_dir
        self._corpora: dict[tuple[str, str], tuple[Any, str | None]] = {}
        self._models: dict[tuple[str, str | None], tuple[Any, str | None]] = {}

    def documents(self, corpus: str, split: str) -> tuple[Any, str | None]:
        """``(documents or the error saying why they are not here, where they come from)``: the
        source is ``"local"``, ``"hub"`` (reachable, not downloaded yet) or ``None``."""
        if (corpus, split) not in self._corpora:
            try:
                with hub.cache_only():
                    found = load_corpus(corpus, data_dir=self.data_dir, split=split), "local"
            except (CorpusUnavailableError, FileNotFoundError) as error:
                reachable = corpus in HUB_CORPORA and hub.offline_reason() is None
                found = error, "hub" if reachable else None
            self._corpora[(corpus, split)] = found
        return self._corpora[(corpus, split)]

    def model(self, name: str, revision: str | None) -> tuple[Any, str | None]:
        """``(the model's location or the error, where it comes from)``: ``"local"`` (a directory or
        the hub cache), ``"hub"`` (reachable, not downloaded yet) or ``None``."""
        if (name, revision) not in self._models:
            try:
                location = model_location(name, revision=revision, data_dir=self.data_dir)
                found = location, "local" if location.directory is not None or location.cached else "hub"
            except (ModelUnavailableError, FileNotFoundError) as error:
                found = error, None
            self._models[(name, revision)] = found
        return self._models[(name, revision)]


def describe_plan(plan: Sequence[PlannedRun], *, data_dir: Path | None = None,
                  device: str | torch.device = "auto") -> Iterator[dict[str, Any]]:
    """One JSON-ready record per planned run: its settings, ``rows``, the ``notebooks`` asking for it,
    whether it is ``stored`` (and how that was decided), whether its model and text are here, and an
    estimated kernel time on ``device`` in seconds (:mod:`green_profiles.runs.costs`; ``None`` where the
    architecture is unknown or the dtype cannot run there).

    ``model_source`` and ``text_source`` say where the inputs would come from: ``"local"`` (files or
    caches here), ``"hub"`` (reachable, not downloaded; nothing is downloaded by a plan) or ``None``
    (not to be had: ``unavailable`` says why).

    ``stored_match`` is ``"exact"`` when the text is here and a run with the same key (settings and
    provenance) is stored; ``"settings"`` when the inputs are not here but a run of the same settings
    is (what a measurement would then serve); ``None`` when nothing usable is stored.
    """
    target = resolve_device(device)
    store = runs_directory(data_dir)
    stored = [metadata for _, metadata in stored_metadata(store) if isinstance(metadata, dict)]
    device_name = device_description(target)
    inputs = _Inputs(data_dir)
    rates: dict[torch.dtype, tuple[float, str] | None] = {}
    # Per model and per text, not per run: a plan asks for the same few dozens of times, and hashing a
    # corpus or resolving a model (a hub probe where it is unreachable) is the slow part.
    checksums: dict[tuple[str, str], str] = {}
    fingerprints: dict[tuple[str, str | None], tuple[str, str]] = {}
    architectures: dict[tuple[str, str | None], Any] = {}

    for planned in plan:
        config = planned.config.resolved()
        dtype = resolve_dtype(config.dtype, target, checkpoint_dtype(config.model), check=False)
        documents, text_source = inputs.documents(config.corpus, config.split)
        location, model_source = inputs.model(config.model, config.revision)
        settings = settings_key(config, target)
        match, key = None, None
        if text_source == "local" and model_source is not None:
            model_id, text_id = (config.model, config.revision), (config.corpus, config.split)
            if model_id not in fingerprints:
                fingerprints[model_id] = model_fingerprint(config.model, revision=config.revision, data_dir=data_dir)
            if text_id not in checksums:
                checksums[text_id] = corpus_checksum(documents)
            weights, tokenizer = fingerprints[model_id]
            key = run_key(config, Provenance(checksums[text_id], weights, tokenizer, RESULTS_VERSION), target)
            match = "exact" if any(metadata["key"] == key for metadata in stored) else None
        elif any(metadata.get("settings_key") == settings for metadata in stored):
            match = "settings"

        if dtype not in rates:
            rates[dtype] = _throughput(stored, device_name, target, dtype)
        if (config.model, config.revision) not in architectures:
            architectures[(config.model, config.revision)] = costs.model_architecture(
                config.model, revision=config.revision, data_dir=data_dir)
        architecture = architectures[(config.model, config.revision)]
        estimate = None
        if architecture is not None and rates[dtype] is not None:
            estimate = costs.run_flops(config, architecture) / rates[dtype][0]

        yield {
            **{name: getattr(config, name) for name in PLAN_FIELDS},
            "dtype": str(dtype).removeprefix("torch."),
            "n_distances": len(config.distances),
            "max_distance": config.distances[-1],
            "rows": planned.rows,
            "notebooks": list(planned.notebooks),
            "stored": match is not None,
            "stored_match": match,
            "key": key,
            "settings_key": settings,
            "model_available": model_source is not None,
            "model_source": model_source,
            "text_available": text_source is not None,
            "text_source": text_source,
            "unavailable": "; ".join(str(item).split(". ")[0] for item, source in
                                     ((location, model_source), (documents, text_source)) if source is None) or None,
            "estimated_kernel_s": None if estimate is None else round(estimate, 1),
            "throughput_source": None if rates[dtype] is None else rates[dtype][1],
            "device": device_name,
        }


PLAN_FIELDS = ("model", "corpus", "seq_len", "n_windows", "target_min", "target_max", "target_stride",
               "source_min_index", "shuffle", "sampler", "seed", "split", "revision", "per_layer",
               "full_rows")


def _throughput(stored: Sequence[Mapping[str, Any]], device_name: str, device: torch.device,
                dtype: torch.dtype) -> tuple[float, str] | None:
    """FLOP/s to divide by, and where the number comes from; ``None`` for float16 on a CPU."""
    dtype_name = str(dtype).removeprefix("torch.")
    same = [metadata for metadata in stored if metadata.get("dtype") == dtype_name]
    rate = costs.stored_throughput(same, device_name)
    if rate is not None:
        return rate, f"runs stored from {device_name} in {dtype_name}"
    try:
        check_dtype_for_device(dtype, device)
    except ValueError:
        return None
    return costs.matmul_throughput(device, dtype), f"matmul peak of {device_name} in {dtype_name} (a lower bound)"
