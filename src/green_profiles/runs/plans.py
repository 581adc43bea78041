"""Every run named settings measure, before anything is measured: ``green-profiles plan``.

Each experiment's runs come from its parameters alone
(:func:`green_profiles.runs.experiments.notebook_runs`: the registry says which runs each
experiment measures, one per role it gives a run). The notebooks measure exactly what it
returns, and :func:`settings_plan` collects the same configurations over all experiments, so
the two cannot disagree; :func:`describe_plan` says, for each, whether it is stored, whether
its model and text are on this machine, and an estimated kernel time here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from green_profiles.runs.configuration import RunConfig
from green_profiles.files import hub
from green_profiles.kernel.precision import check_dtype_for_device, device_description, resolve_device, resolve_dtype
from green_profiles.models.loading import ModelUnavailableError, checkpoint_dtype, model_location
from green_profiles.runs import costs
from green_profiles.runs.experiments import EXPERIMENTS, experiment_parameters, notebook_runs, settings_path
from green_profiles.runs.provenance import Provenance, RESULTS_VERSION, model_fingerprint, run_key, settings_key
from green_profiles.runs.store import runs_directory, stored_metadata
from green_profiles.text import CorpusUnavailableError, HUB_CORPORA, corpus_checksum, load_corpus


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


def settings_plan(settings: str, *, notebooks: Sequence[str] | None = None,
                  settings_file: Path | str | None = None) -> list[PlannedRun]:
    """Every distinct run the named settings measure across ``notebooks`` (default: every experiment),
    in the order they are first asked for (a run several notebooks share, e.g. coherent text in the
    shuffled notebook, appears once)."""
    path = settings_path(settings_file)
    asked: dict[RunConfig, list[str]] = {}
    for notebook in EXPERIMENTS if notebooks is None else notebooks:
        parameters = experiment_parameters(notebook, settings, settings_file=path)
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
