"""Jacobian-norm profiles of causal language models: how token influence decays with distance.

The package's top level is the kernel's public API (:mod:`green_profiles.kernel`). The other layers
import heavier libraries (transformers, datasets, lmfit) and are imported from their own modules:
``from green_profiles.models import load_model``, ``green_profiles.analysis.profiles.run_profile``, ...
"""

from green_profiles.kernel import *  # noqa: F403 - the kernel's API is the package's
from green_profiles.kernel import __all__  # noqa: F401

__version__ = "0.1.0"
