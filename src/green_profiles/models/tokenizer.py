"""A byte-level BPE tokenizer trained here (the ``tokenizers`` library), wrapped for transformers.

The families of :mod:`green_profiles.models.families` each train one on their training
documents only, so that nothing of the held-out text shapes the vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from green_profiles.text.documents import Document

END_OF_TEXT = "<|endoftext|>"


def train_tokenizer(documents: Sequence[Document], vocab_size: int) -> object:
    """A byte-level BPE of ``vocab_size`` tokens (``<|endoftext|>`` included) learnt from the documents' text.

    Byte-level: every string encodes (no unknown token), as in GPT-2 and Pythia. The
    result is a ``transformers.PreTrainedTokenizerFast`` whose ``eos``, ``bos`` and
    ``pad`` token are ``<|endoftext|>``; ``save_pretrained`` writes it where
    ``AutoTokenizer.from_pretrained`` finds it.

    Raises:
        ValueError: no documents, or a vocabulary too small for the 256 bytes and the special token.
    """
    from transformers import PreTrainedTokenizerFast

    if not documents:
        raise ValueError("a tokenizer needs at least one document to learn from")
    if vocab_size < 257 + 1:
        raise ValueError(f"a byte-level BPE needs more than 257 tokens, got vocab_size={vocab_size}")
    tokenizer = train_bpe((document.text for document in documents), vocab_size)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=END_OF_TEXT, bos_token=END_OF_TEXT,
                                   pad_token=END_OF_TEXT, model_max_length=1_000_000)


def train_bpe(texts: Iterable[str], vocab_size: int) -> Any:
    """The ``tokenizers.Tokenizer`` of a byte-level BPE of ``vocab_size`` tokens learnt from ``texts``.

    Deterministic for the same texts in the same order; ``<|endoftext|>`` is token 0.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer
