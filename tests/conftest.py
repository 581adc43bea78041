"""Small randomly initialized causal LMs of the three architectures the project measures, and a tiny
model directory with a word-level tokenizer and corpus for runs through the store.

A trained model adds nothing to checks of exactness or of the store: the kernel
must agree with plain autograd, and the store must keep runs apart, whatever the weights are.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from green_profiles.runs.configuration import RunConfig

VOCAB = 97
CONTEXT = 96


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` where no CUDA device is visible, saying so."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none visible)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


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


# --- a tiny model directory and corpus for runs through the store ---------------------------------

TINY_CONTEXT = 64
WORDS = ("the sea whale ship captain deck storm wind sail night day sun moon star island harbour rope "
         "mast crew voyage water wave boat anchor coast rock cloud rain bird fish man woman letter house").split()


@pytest.fixture(scope="session")
def tiny_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model directory, corpus file): a word-level tokenizer and a 2-layer Llama over its vocabulary."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    documents = [" ".join(rng.choice(WORDS, size=size)) for size in (400, 300, 20)]  # the last is too short
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": text, "title": f"doc {i}"}) + "\n"
                              for i, text in enumerate(documents)))
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(documents, trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]")
    model_dir = root / "tiny-llama"
    fast.save_pretrained(model_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                         max_position_embeddings=TINY_CONTEXT, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(model_dir)
    return model_dir, corpus


def tiny_config(tiny_setup: tuple[Path, Path], **changes) -> RunConfig:
    """A small run of the tiny model on the tiny corpus (5 windows x 3 targets); ``changes`` override fields."""
    model_dir, corpus = tiny_setup
    config = RunConfig(model=str(model_dir), corpus=str(corpus), seq_len=48, n_windows=5, target_min=36,
                       target_max=47, target_stride=4, source_min_index=8, distances=(0, 1, 2, 4, 8, 16, 28, 32))
    return dataclasses.replace(config, **changes)
