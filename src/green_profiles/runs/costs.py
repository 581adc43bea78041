"""What a run costs: the kernel's floating-point work, and its time on a device estimated from that.

The FLOP model counts the work the kernel must do, not what it happens to do:
one forward pass per window over the positions from the left buffer to the last
target (the prefix before the buffer is read once through the key/value cache),
and one input-gradient pass per backward row over the same positions. Matmul
weights cost 2 FLOPs per weight and token forward and again for the input
gradient (no weight gradients are formed); attention scores and mixing cost
``4 d`` FLOPs per (query, key) pair forward and twice that backward.

A ``per_layer`` run costs the same: its input-gradient pass crosses every block's
input on its way to the embeddings anyway, and reading the gradient there adds
only a norm per block (``n_layers`` norms of ``[n, d]`` per row, negligible).

Time estimates divide that work by a throughput measured on this device: the
rate stored runs achieved here (their ``kernel_flops`` over their kernel time),
or, before any run was measured here, a short matmul probe, the peak the kernel
would reach only with perfect efficiency (an estimate from below).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from green_profiles.models.loading import ModelUnavailableError, model_location, named_source
from green_profiles.models.published import PUBLISHED_CONFIGS, published_config
from green_profiles.runs.configuration import RunConfig


def kernel_flops(model: nn.Module, n_windows: int, targets: torch.Tensor | Iterable[int], min_source: int,
                 backward_rows: float | None = None) -> float:
    """FLOPs of measuring ``n_windows`` windows at ``targets`` with sources ``>= min_source``.

    Args:
        model: a causal LM (any device, ``meta`` included: only shapes are read).
        n_windows: windows measured.
        targets: target positions ``[T]`` of each window.
        min_source: the left buffer.
        backward_rows: input-gradient passes in all; default one per (window, target)
            row. Each row needs a second pass where the predicted token is not the true one.

    Returns:
        floating-point operations (FLOPs, not FLOP/s).
    """
    config = model.config
    positions = [int(t) for t in targets]
    n = max(positions) + 1 - min_source
    linear_weights = sum(p.numel() for name, p in model.base_model.named_parameters()
                         if p.dim() == 2 and "embed" not in name)
    pairs = n * min_source + n * (n + 1) / 2
    attention = 4 * config.num_hidden_layers * config.hidden_size * pairs
    forward = 2 * linear_weights * n + attention
    input_gradient = 2 * linear_weights * n + 2 * attention
    passes = n_windows * len(positions) if backward_rows is None else backward_rows
    return n_windows * forward + passes * input_gradient


def run_flops(config: RunConfig, architecture: Any, passes_per_row: float = 2.0) -> float:
    """FLOPs of a run with a model of ``architecture`` (a transformers ``PretrainedConfig``), built on
    the meta device (no memory). ``passes_per_row`` 2 assumes no prediction is right: an upper bound."""
    from transformers import AutoModelForCausalLM

    resolved = config.resolved()
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(architecture)
    targets = resolved.targets
    return kernel_flops(model, resolved.n_windows, targets, resolved.source_min_index,
                        backward_rows=passes_per_row * resolved.n_windows * len(targets))


def stored_throughput(metadata: Iterable[Mapping[str, Any]], device_name: str) -> float | None:
    """Median FLOP/s that stored runs measured on ``device_name`` achieved (runs that recorded
    ``kernel_flops``; a resumed run counts only its last session's work), ``None`` without any."""
    rates = []
    for record in metadata:
        flops, seconds = record.get("kernel_flops"), (record.get("timings") or {}).get("kernel_s")
        if record.get("environment", {}).get("device") == device_name and flops and seconds:
            rates.append(flops / seconds)
    return statistics.median(rates) if rates else None


def matmul_throughput(device: torch.device, dtype: torch.dtype = torch.float32, seconds: float = 0.3) -> float:
    """Peak FLOP/s of square matmuls in ``dtype`` on ``device`` (1024 on a CPU, 4096 on a GPU), timed
    for about ``seconds``."""
    size = 1024 if device.type == "cpu" else 4096
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.matmul(a, b)  # warm-up: kernels chosen, memory allocated
    _synchronize(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.matmul(a, b)
        _synchronize(device)
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_architecture(name: str, *, revision: str | None = None, data_dir: Path | None = None) -> Any:
    """The transformers config of a model name (``@random`` allowed) from local files, without weights.

    Falls back to the published configs of the paper's checkpoints
    (:data:`green_profiles.models.published.PUBLISHED_CONFIGS`, all layers) when the model is not here;
    ``None`` when neither is known.
    """
    from transformers import AutoConfig  # deferred: transformers takes seconds to import

    try:
        where = model_location(name, revision=revision, data_dir=data_dir)
        if where.directory is not None:
            return AutoConfig.from_pretrained(where.directory)
        return AutoConfig.from_pretrained(where.repo_id, revision=where.commit, local_files_only=where.cached)
    except (ModelUnavailableError, OSError, ValueError):
        pass
    source = named_source(name)
    return published_config(source) if source in PUBLISHED_CONFIGS else None
