"""Small randomly initialized causal LMs of the three architectures the project measures.

A trained model adds nothing to checks of exactness: the kernel must agree with
plain autograd whatever the weights are.
"""

from __future__ import annotations

import pytest
import torch
from transformers import (
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

VOCAB = 97
CONTEXT = 96


def _tiny(architecture: str) -> torch.nn.Module:
    common = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=CONTEXT)
    if architecture == "gpt_neox":  # Pythia: parallel residual, partial rotary, untied head
        model = GPTNeoXForCausalLM(GPTNeoXConfig(**common, rotary_pct=0.25))
    elif architecture == "llama":  # SmolLM2: tied embeddings, grouped-query attention
        model = LlamaForCausalLM(LlamaConfig(**common, num_key_value_heads=2, tie_word_embeddings=True))
    elif architecture == "qwen2":  # Qwen2.5: biases on q/k/v, grouped-query attention
        model = Qwen2ForCausalLM(Qwen2Config(**common, num_key_value_heads=2, tie_word_embeddings=True))
    else:
        raise ValueError(architecture)
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="session", params=["gpt_neox", "llama", "qwen2"])
def tiny_model(request: pytest.FixtureRequest) -> torch.nn.Module:
    torch.manual_seed(0)
    return _tiny(request.param)


@pytest.fixture(scope="session")
def tiny_llama() -> torch.nn.Module:
    torch.manual_seed(1)
    return _tiny("llama")
