"""The fixtures shared by the test files: small randomly initialized causal LMs of the three architectures
the project measures; a tiny model directory with a word-level tokenizer and corpus for runs through the
store, and a session store of tiny runs measured once; and a data directory of the session's own for
the offline corpora and the converted SmolLM2. Helpers and constants are in ``support.py``.

A trained model adds nothing to checks of exactness or of the store: the kernel
must agree with plain autograd, and the store must keep runs apart, whatever the weights are.
No test writes into the repository's ``data/`` (nor ``$GREEN_PROFILES_DATA``): what is prepared or
measured goes to pytest's temporary directories.
"""

from __future__ import annotations

import json
import os
import shutil
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

from green_profiles.analysis.profiles import ProfileRun
from support import CONTEXT, TINY_CONTEXT, VOCAB, WORDS, TinyStore

REPO = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="session")
def tiny_store(tiny_setup: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> TinyStore:
    """The tiny runs of ``support.TINY_RUNS`` in one store, each measured once per session when first asked
    for: ``tiny_store.run("plain")``. For tests that only read a run; a test that damages, lists or adds
    runs takes its own copy (``tiny_store.copy(tmp_path, "plain")``) or measures in a store of its own."""
    return TinyStore(tmp_path_factory.mktemp("tiny-store"), tiny_setup)


@pytest.fixture
def run_flag() -> str:
    """The flag of the second run of ``plain_and_flagged``: a test module using that fixture overrides this
    fixture with its own, returning ``"per_layer"`` or ``"full_rows"``."""
    pytest.fail("plain_and_flagged needs a run_flag fixture in the test module")


@pytest.fixture
def plain_and_flagged(tiny_store: TinyStore, run_flag: str) -> tuple[ProfileRun, ProfileRun]:
    """(the plain tiny run, the same run measured with ``run_flag``) from the session store: both measured
    once per session, read afresh for each test."""
    return tiny_store.run("plain"), tiny_store.run(run_flag)


# --- a data directory of the session's own for the offline corpora and the converted SmolLM2 ----------


def _real_data_dir() -> Path:
    return Path(os.environ.get("GREEN_PROFILES_DATA", REPO / "data"))


@pytest.fixture(scope="session")
def session_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory for the tests that prepare the offline corpora or load ``smollm2-135m``, so that no
    test writes into the real one (``$GREEN_PROFILES_DATA``, else the repository's ``data/``).

    From the real one it only reads: the downloads under ``raw/`` are copied in, so that preparing the
    corpora needs no network (``prepare_offline_data`` reuses a downloaded file), and a current converted
    SmolLM2 is linked in (the library converts only a copy that is not current, so it never writes through
    the link). Whatever is missing is downloaded, prepared or converted here, as on a fresh clone.
    """
    from green_profiles.files.storage import STAGING_PREFIX
    from green_profiles.models import loading

    data = tmp_path_factory.mktemp("data")
    real = _real_data_dir()
    if (real / "raw").is_dir():
        shutil.copytree(real / "raw", data / "raw", ignore=shutil.ignore_patterns(f"{STAGING_PREFIX}*", "*.lock"))
    smollm2 = real / "models" / "smollm2-135m"
    if loading._smollm2_is_current(smollm2):
        (data / "models").mkdir()
        (data / "models" / "smollm2-135m").symlink_to(smollm2.resolve(), target_is_directory=True)
    return data
