"""The project's one rule for the Hugging Face hub: may we go online, and what is already here.

Every hub download (models in :mod:`green_profiles.models.loading`, the hub corpora in
:mod:`green_profiles.text.hub_corpora`) asks :func:`offline_reason` first, so that a
machine without the hub gets an immediate, explicit error instead of the hub
client's half-minute of retries. The rule uses the hub library's own settings:

- offline when the hub client is in offline mode: ``HF_HUB_OFFLINE`` (or
  ``TRANSFORMERS_OFFLINE``) as ``huggingface_hub.constants.HF_HUB_OFFLINE`` read it,
  or as ``datasets.config.HF_HUB_OFFLINE`` read it where datasets is loaded;
- otherwise :func:`probe`: one HEAD request to ``huggingface_hub.constants.ENDPOINT``
  (``$HF_ENDPOINT``, default https://huggingface.co) through huggingface_hub's own
  HTTP session, so proxy variables and a custom client factory apply as they do to
  downloads. No answer within :data:`PROBE_TIMEOUT_SECONDS`, or an error status
  from the server, and the hub counts as unavailable. Nothing is cached: every call
  asks again (a few milliseconds online, at most the timeout offline).

Files already downloaded are found with :func:`cached_file` (huggingface_hub's
``try_to_load_from_cache``, in ``huggingface_hub.constants.HF_HUB_CACHE``);
:func:`cache_only` makes the clients read the cache alone while the hub is unavailable.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

PROBE_TIMEOUT_SECONDS = 3.0


def offline_reason(timeout_seconds: float = PROBE_TIMEOUT_SECONDS) -> str | None:
    """``None`` when the hub can be used now; otherwise why not, as a clause for an error message.

    E.g. ``"the hub client is in offline mode (HF_HUB_OFFLINE is set)"`` or
    ``"the hub (https://huggingface.co) could not be reached within 3 s (ConnectError: ...)"``.
    """
    if offline_mode():
        return "the hub client is in offline mode (HF_HUB_OFFLINE is set)"
    return probe(timeout_seconds)


def offline_mode() -> bool:
    """Whether huggingface_hub (or datasets, if loaded) is set to offline mode."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return True
    datasets = sys.modules.get("datasets")  # not imported just to ask: it reads the same variable
    return bool(datasets is not None and getattr(datasets.config, "HF_HUB_OFFLINE", False))


def probe(timeout_seconds: float = PROBE_TIMEOUT_SECONDS) -> str | None:
    """One short HTTP request to the hub's endpoint: ``None`` if it answered, else what went wrong.

    Any answer below HTTP 500 (even a redirect or 4xx) means the hub is reachable;
    a 5xx is the hub's own error; an exception from the session (no route, DNS,
    proxy refusal, timeout) means it is unreachable from here.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    endpoint = constants.ENDPOINT
    try:
        response = get_session().head(endpoint, timeout=timeout_seconds)
    except Exception as error:  # the session's transport errors (httpx, requests) share no base class
        detail = str(error) or "no detail"
        return (
            f"the hub ({endpoint}) could not be reached within {timeout_seconds:g} s "
            f"({type(error).__name__}: {detail})"
        )
    if response.status_code >= 500:
        return f"the hub ({endpoint}) answered with an error (HTTP {response.status_code})"
    return None


def cached_file(repo_id: str, filename: str, *, revision: str | None = None, repo_type: str = "model") -> str | None:
    """The local path of ``filename`` of ``repo_id`` in the hub cache, or ``None`` if it is not there."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, revision=revision, repo_type=repo_type)
    return found if isinstance(found, str) else None  # also None for "known not to exist"


def cache_directory() -> str:
    """Where huggingface_hub keeps downloaded files (``$HF_HUB_CACHE``), for messages."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


@contextlib.contextmanager
def cache_only() -> Iterator[None]:
    """Put huggingface_hub (and datasets, if loaded) in offline mode for the block: local cache only.

    Used where :func:`offline_reason` found the hub unavailable, so that the clients
    answer from the cache at once instead of retrying the network.
    """
    from huggingface_hub import constants

    datasets = sys.modules.get("datasets")
    switches = [constants] + ([datasets.config] if datasets is not None else [])
    saved = [module.HF_HUB_OFFLINE for module in switches]
    for module in switches:
        module.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for module, value in zip(switches, saved):
            module.HF_HUB_OFFLINE = value
