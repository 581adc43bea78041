"""Jacobian-norm profiles of causal language models: how token influence decays with distance."""

from green_profiles.kernel.jacobian import (
    NonFiniteGradientError,
    NormCounts,
    ProtocolRows,
    count_norms,
    default_seed_exponent,
    gradient_norm_rows,
    logit_gradient_norms,
    predicted_tokens,
    protocol_gradient_norms,
)
from green_profiles.kernel.precision import resolve_device, resolve_dtype

# models, corpora, windows and fits import heavier libraries (transformers, datasets,
# lmfit); import them from their modules: green_profiles.models.loading.load_model, ...

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
]

__version__ = "0.1.0"
