"""The architectures of the paper's published checkpoints, as their hub ``config.json`` states them.

Used without the hub: to estimate a run's cost before anything is downloaded
(:mod:`green_profiles.runs.costs`) and to build random-weight stand-ins of the same shapes
(``tools/rehearsal.py``).
"""

from __future__ import annotations

from typing import Any

_PYTHIA_COMMON: dict[str, Any] = {
    "architectures": ["GPTNeoXForCausalLM"],
    "model_type": "gpt_neox",
    "hidden_act": "gelu",
    "initializer_range": 0.02,
    "vocab_size": 50304,
    "max_position_embeddings": 2048,
    "rotary_pct": 0.25,
    "rotary_emb_base": 10000,
    "use_parallel_residual": True,
    "layer_norm_eps": 1e-05,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "bos_token_id": 0,
    "eos_token_id": 0,
    "use_cache": True,
}


def _pythia(hidden_size: int, num_hidden_layers: int, num_attention_heads: int, intermediate_size: int) -> dict:
    return {**_PYTHIA_COMMON, "hidden_size": hidden_size, "num_hidden_layers": num_hidden_layers,
            "num_attention_heads": num_attention_heads, "intermediate_size": intermediate_size}


# The architecture facts of the published checkpoints, keyed by repository, as their config.json
# on the hub states them (legacy key names included: `torch_dtype`, GPT-NeoX's `rotary_pct` and
# `rotary_emb_base`, Qwen2's `rope_theta`). Sources: https://huggingface.co/<repo>/blob/main/config.json
# and the model cards; the Pythia sizes also in the Pythia paper (Biderman et al. 2023, Table 1) and
# the EleutherAI/pythia README, Qwen2.5-0.5B's in its model card (0.49B parameters, 0.36B
# non-embedding; 24 layers; 14 query and 2 key/value heads; context 32,768). Only what the
# architecture and the loaders depend on is listed: fields such as `transformers_version` are not.
PUBLISHED_CONFIGS: dict[str, dict[str, Any]] = {
    "EleutherAI/pythia-14m-deduped": _pythia(128, 6, 4, 512),
    "EleutherAI/pythia-70m-deduped": _pythia(512, 6, 8, 2048),
    "EleutherAI/pythia-160m-deduped": _pythia(768, 12, 12, 3072),
    "EleutherAI/pythia-410m-deduped": _pythia(1024, 24, 16, 4096),
    "Qwen/Qwen2.5-0.5B": {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "attention_dropout": 0.0,
        "hidden_size": 896,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "intermediate_size": 4864,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-06,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "use_sliding_window": False,
        "bos_token_id": 151643,
        "eos_token_id": 151643,
        "use_cache": True,
    },
}


def published_config(repo_id: str, *, num_hidden_layers: int | None = None) -> Any:
    """The transformers configuration of a published checkpoint (:data:`PUBLISHED_CONFIGS`),
    optionally with fewer layers; no weights, no download.

    Raises:
        KeyError: a repository that is not one of the paper's five.
    """
    from transformers import AutoConfig

    facts = dict(PUBLISHED_CONFIGS[repo_id])
    if num_hidden_layers is not None:
        facts["num_hidden_layers"] = num_hidden_layers
    return AutoConfig.for_model(facts.pop("model_type"), **facts)
