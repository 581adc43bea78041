"""Model loading: the offline trained model, its random twin, and the hub path offline."""

from __future__ import annotations

import time

import pytest
import torch

from green_profiles.models import ModelUnavailableError, load_model


@pytest.fixture(scope="session")
def smollm2():
    return load_model("smollm2-135m")


def test_offline_model_is_the_real_smollm2(smollm2):
    model, tokenizer = smollm2
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.dtype == torch.float32
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert len(tokenizer) == 49152
    assert tokenizer.decode(tokenizer("It is a truth universally acknowledged")["input_ids"]) == \
        "It is a truth universally acknowledged"


def test_random_twin_same_shapes_seeded_weights(smollm2):
    model, _ = smollm2
    twin, _ = load_model("smollm2-135m@random", seed=0)
    again, _ = load_model("smollm2-135m@random", seed=0)
    other, _ = load_model("smollm2-135m@random", seed=1)
    names = [name for name, _ in model.named_parameters()]
    assert names == [name for name, _ in twin.named_parameters()]
    weight = "model.layers.0.mlp.up_proj.weight"
    params = {n: dict(m.named_parameters())[weight] for n, m in [("twin", twin), ("again", again), ("other", other),
                                                                  ("trained", model)]}
    assert torch.equal(params["twin"], params["again"])
    assert not torch.equal(params["twin"], params["other"])
    assert not torch.equal(params["twin"], params["trained"])
    # The architecture's own initializer: normal(0, initializer_range) for linear weights.
    assert params["twin"].std().item() == pytest.approx(model.config.initializer_range, rel=0.02)


def test_random_init_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_model("smollm2-135m@random", seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_hub_model_offline_fails_fast_and_says_what_to_do():
    # Our machines reach no hub and cache no Pythia: the hub client alone would retry for ~30 s.
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="unreachable.*smollm2-135m"):
        load_model("pythia-14m")
    assert time.perf_counter() - start < 10


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'gpt-17'"):
        load_model("gpt-17")


def test_float16_on_cpu_refused():
    with pytest.raises(ValueError, match="float16 on a CPU"):
        load_model("smollm2-135m", dtype="float16", device="cpu")


def _perplexity(model, ids: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model(ids[None]).logits[0, :-1]
    return torch.nn.functional.cross_entropy(logits, ids[1:]).exp().item()


def test_trained_model_predicts_real_text_and_its_random_twin_does_not(smollm2):
    from green_profiles.corpora import load_corpus

    model, tokenizer = smollm2
    chapter = next(doc for doc in load_corpus("gutenberg") if "Pride and Prejudice" in doc.source)
    ids = torch.tensor(tokenizer(chapter.text)["input_ids"][:512])
    twin, _ = load_model("smollm2-135m@random")
    trained, random = _perplexity(model, ids), _perplexity(twin, ids)
    print(f"\nperplexity on Pride and Prejudice ch. 1 (512 tokens): trained {trained:.1f}, random {random:.0f}")
    assert trained < 60
    assert random > 100 * trained
