"""The Jacobian-norm kernel: ``||∂z[j, v] / ∂e[j − r]||₂`` for every source of a row, one backward per row.

Self-contained (torch and numpy only; relative imports): copy this folder into another project and
``from kernel import logit_gradient_norms`` works there. :mod:`.jacobian` is the kernel,
:mod:`.precision` picks dtypes and devices, :mod:`.counts` says which values count.
"""

from .counts import NormCounts, count_norms, measured_mask, valid_mask
from .jacobian import (
    NonFiniteGradientError,
    ProtocolRows,
    default_seed_exponent,
    gradient_norm_rows,
    logit_gradient_norms,
    predicted_tokens,
    protocol_gradient_norms,
)
from .precision import resolve_device, resolve_dtype

__all__ = [
    "NonFiniteGradientError",
    "NormCounts",
    "ProtocolRows",
    "count_norms",
    "default_seed_exponent",
    "gradient_norm_rows",
    "logit_gradient_norms",
    "predicted_tokens",
    "protocol_gradient_norms",
    "resolve_device",
    "resolve_dtype",
    "measured_mask",
    "valid_mask",
]
