"""Models: loading them offline first (:mod:`.loading`), the paper's published architectures
(:mod:`.published`), and the small GPT-NeoX family trained here (:mod:`.families`, :mod:`.tokenizer`,
:mod:`.training`).

``from green_profiles.models import load_model`` is the public way in; the names below are
re-exported from :mod:`.loading`.
"""

from green_profiles.models.loading import (
    RANDOM_SUFFIX,
    ModelLocation,
    ModelSpec,
    ModelUnavailableError,
    checkpoint_dtype,
    load_model,
    load_tokenizer,
    model_location,
    named_source,
    smollm2_directory,
)

__all__ = ["RANDOM_SUFFIX", "ModelLocation", "ModelSpec", "ModelUnavailableError", "checkpoint_dtype",
           "load_model", "load_tokenizer", "model_location", "named_source", "smollm2_directory"]
