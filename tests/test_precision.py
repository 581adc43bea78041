"""The one dtype choice: pure, so its GPU branches are checked on any machine."""

from __future__ import annotations

import pytest
import torch

from green_profiles.models.loading import checkpoint_dtype
from green_profiles.kernel.precision import resolve_dtype


def test_auto_on_a_gpu_is_the_checkpoints_dtype_as_the_paper_ran_it():
    assert resolve_dtype("auto", "cuda", torch.float16) == torch.float16  # Pythia
    assert resolve_dtype("auto", "cuda", torch.bfloat16) == torch.bfloat16  # Qwen2.5
    assert resolve_dtype("auto", "cuda", None) == torch.float32  # a model of unknown storage
    assert resolve_dtype("auto", "cuda", checkpoint_dtype("pythia-14m@random")) == torch.float16


def test_auto_on_a_cpu_is_float32_whatever_the_checkpoint():
    assert resolve_dtype("auto", "cpu", torch.float16) == torch.float32
    assert resolve_dtype("auto", "cpu", torch.bfloat16) == torch.float32


def test_explicit_dtypes_and_the_half_precision_trap():
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    assert resolve_dtype("float16", "cuda") == torch.float16
    with pytest.raises(ValueError, match="hundreds of times slower"):
        resolve_dtype("fp16", "cpu")
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("float8", "cpu")
