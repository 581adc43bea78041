"""Choice of compute dtype and device.

Half precision is a trap on CPUs: without native half-precision matmuls a float16
matmul there runs hundreds of times slower than float32, so nothing here ever
picks float16 for a CPU (``benchmarks/half_precision.py`` measures a machine).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

_NAMED_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is the first CUDA GPU when one is visible, else the CPU.

    Raises:
        ValueError: a name torch does not know as a device (``""``, ``"tpu"``, ...).
    """
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(spec)
    except RuntimeError as error:  # torch's message names neither the argument nor what would do
        raise ValueError(f"unknown device {spec!r} ({error}): use auto, cpu, cuda or cuda:N") from error


def resolve_dtype(
    spec: str | torch.dtype,
    device: str | torch.device,
    checkpoint_dtype: torch.dtype | None = None,
    *,
    check: bool = True,
) -> torch.dtype:
    """The dtype to run a model in.

    ``"auto"`` gives float32 on a CPU (the reference precision) and, on a GPU,
    the checkpoint's own dtype when known (fp16 for Pythia, bf16 for Qwen2.5, as
    the paper ran them), else float32. ``"checkpoint"`` gives the checkpoint's
    dtype on every device (float32 when unknown): the paper's choice, and a
    setting whose runs are the same wherever they were measured. Asking for float16
    on a CPU raises, unless ``check`` is off (to name a run's dtype without running it).

    Why ``"auto"`` keeps the checkpoint's half precision on a GPU: measured against
    float32 on the same windows (``benchmarks/half_precision.py``; numbers on the book's
    methods page, "Half precision"), half precision moved the median profile and the
    fitted ``p`` far less than their statistical uncertainty, and the kernel guards
    float16 against underflow and counts any norm lost to it. Single rows move by
    several percent in bfloat16: ask for ``"float32"`` for row-level comparisons.
    """
    device = resolve_device(device)
    if isinstance(spec, torch.dtype):
        dtype = spec
    elif spec == "auto":
        if device.type == "cpu":
            return torch.float32
        return checkpoint_dtype or torch.float32
    elif spec == "checkpoint":
        dtype = checkpoint_dtype or torch.float32
    elif spec in _NAMED_DTYPES:
        dtype = _NAMED_DTYPES[spec]
    else:
        raise ValueError(f"unknown dtype {spec!r}; use one of 'auto', 'checkpoint', "
                         f"{', '.join(map(repr, _NAMED_DTYPES))}")
    if check:
        check_dtype_for_device(dtype, device)
    return dtype


def check_dtype_for_device(dtype: torch.dtype, device: str | torch.device) -> None:
    """Raise for float16 on a CPU, where it is hundreds of times slower than float32."""
    if dtype == torch.float16 and resolve_device(device).type == "cpu":
        raise ValueError(
            "float16 on a CPU is hundreds of times slower than float32 (no fast half-precision "
            "matmul there); run the model in float32 (the reference) or bfloat16 instead"
        )


def device_description(device: torch.device) -> str:
    """The device as runs record it: the GPU's name, or ``"cpu: <model name> (<n> cores)"``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"cpu: {platform.processor() or 'unknown'} ({os.cpu_count()} cores)"
