"""Model loading: the offline trained model, its random twin, and the hub path offline.

SmolLM2 is read from (or converted into) the session's data directory (conftest's ``session_data_dir``),
never the repository's ``data/``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from green_profiles.files import hub
from green_profiles.models.loading import ModelUnavailableError, load_model, model_location

UNREACHABLE = "the hub (test) could not be reached (no route to host)"


@pytest.fixture(scope="session")
def smollm2(session_data_dir):
    return load_model("smollm2-135m", data_dir=session_data_dir)


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


def test_random_twin_same_shapes_seeded_weights(smollm2, session_data_dir):
    model, _ = smollm2
    twin, _ = load_model("smollm2-135m@random", seed=0, data_dir=session_data_dir)
    again, _ = load_model("smollm2-135m@random", seed=0, data_dir=session_data_dir)
    other, _ = load_model("smollm2-135m@random", seed=1, data_dir=session_data_dir)
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


def test_random_init_leaves_the_global_rng_alone(session_data_dir):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_model("smollm2-135m@random", seed=5, data_dir=session_data_dir)
    assert torch.equal(torch.rand(3), expected)


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face hub cache, offline mode off, and the hub unreachable: the same on every machine."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "probe", lambda timeout_seconds=0: UNREACHABLE)
    return cache


def test_hub_model_not_cached_and_unreachable_fails_and_says_what_to_do(hub_cache: Path):
    with pytest.raises(ModelUnavailableError) as caught:
        load_model("pythia-14m")
    message = str(caught.value)
    assert message.startswith("EleutherAI/pythia-14m-deduped is not in the local Hugging Face cache"), message
    assert str(hub_cache) in message and UNREACHABLE in message and "'smollm2-135m'" in message


def test_hub_model_in_offline_mode_says_so(hub_cache: Path, monkeypatch: pytest.MonkeyPatch):
    from huggingface_hub import constants

    def no_probe(timeout_seconds: float = 0) -> str | None:
        raise AssertionError("offline mode must not probe the network")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "probe", no_probe)
    with pytest.raises(ModelUnavailableError, match=r"not in the local .* offline mode \(HF_HUB_OFFLINE is set\)"):
        load_model("EleutherAI/pythia-70m-deduped", revision="step3000")


def _tiny_gpt_neox_snapshot(snapshot: Path) -> None:
    """A randomly initialized 2-layer GPT-NeoX and a word-level tokenizer, saved as a hub repository holds them."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    words = ["<unk>", "<eos>", "the", "cat", "sat", "on", "mat", "."]
    backend = Tokenizer(models.WordLevel({word: i for i, word in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>")
    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=64, rotary_pct=0.25)
    GPTNeoXForCausalLM(config).save_pretrained(snapshot)
    tokenizer.save_pretrained(snapshot)


def test_hub_model_from_a_local_cache_loads_with_the_hub_unreachable(hub_cache: Path, monkeypatch: pytest.MonkeyPatch):
    # The cache layout of huggingface_hub: models--org--name/snapshots/<commit>/..., refs/main -> <commit>.
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub_cache / "models--green-profiles-test--tiny-gpt-neox"
    _tiny_gpt_neox_snapshot(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)

    def no_probe(timeout_seconds: float = 0) -> str | None:
        raise AssertionError("a cached model must load without asking the hub")

    monkeypatch.setattr(hub, "probe", no_probe)
    model, tokenizer = load_model("green-profiles-test/tiny-gpt-neox")
    assert type(model).__name__ == "GPTNeoXForCausalLM" and model.config.num_hidden_layers == 2
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    ids = tokenizer("the cat sat on the mat .", add_special_tokens=False)["input_ids"]
    assert ids == [2, 3, 4, 5, 2, 6, 7]
    with torch.no_grad():
        assert model(torch.tensor([ids])).logits.shape == (1, 7, 8)
    # Another repository is not in that cache: an immediate, explicit error.
    monkeypatch.setattr(hub, "probe", lambda timeout_seconds=0: UNREACHABLE)
    with pytest.raises(ModelUnavailableError, match="green-profiles-test/missing is not in the local"):
        load_model("green-profiles-test/missing")


def test_a_cache_without_weights_serves_only_the_random_twin(hub_cache: Path, monkeypatch: pytest.MonkeyPatch):
    """Loading NAME@random downloads the configuration and tokenizer only: that must not pin a later trained
    load of NAME to the cache (where its weights are missing) while the hub could supply them."""
    import huggingface_hub

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub_cache / "models--green-profiles-test--tiny-gpt-neox"
    _tiny_gpt_neox_snapshot(repo / "snapshots" / commit)
    (repo / "snapshots" / commit / "model.safetensors").unlink()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    model, _ = load_model("green-profiles-test/tiny-gpt-neox@random")  # the hub is unreachable: cache only
    assert model.config.num_hidden_layers == 2
    with pytest.raises(ModelUnavailableError, match="has its configuration but no weights in the local"):
        load_model("green-profiles-test/tiny-gpt-neox")
    # With the hub reachable, the trained model is resolved there, not pinned to the incomplete cache.
    monkeypatch.setattr(hub, "probe", lambda timeout_seconds=0: None)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info",
                        lambda self, repo_id, revision=None: type("Info", (), {"sha": "f" * 40})())
    location = model_location("green-profiles-test/tiny-gpt-neox")
    assert (location.cached, location.commit) == (False, "f" * 40)
    assert model_location("green-profiles-test/tiny-gpt-neox@random").cached


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'gpt-17'"):
        load_model("gpt-17")


def test_float16_on_cpu_refused(session_data_dir):
    with pytest.raises(ValueError, match="float16 on a CPU"):
        load_model("smollm2-135m", dtype="float16", device="cpu", data_dir=session_data_dir)


def _perplexity(model, ids: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model(ids[None]).logits[0, :-1]
    return torch.nn.functional.cross_entropy(logits, ids[1:]).exp().item()


def test_trained_model_predicts_real_text_and_its_random_twin_does_not(smollm2, session_data_dir):
    from green_profiles.text import load_corpus

    model, tokenizer = smollm2
    documents = load_corpus("gutenberg", data_dir=session_data_dir)
    # Pride and Prejudice ch. 1 where the Debian novels are here; Botchan ch. I where 'gutenberg' falls back to it.
    chapter = next((doc for doc in documents if doc.title == "Pride and Prejudice, Chapter 1"), documents[0])
    ids = torch.tensor(tokenizer(chapter.text)["input_ids"][:512])
    twin, _ = load_model("smollm2-135m@random", data_dir=session_data_dir)
    trained, random = _perplexity(model, ids), _perplexity(twin, ids)
    print(f"\nperplexity on {chapter.title} ({len(ids)} tokens): trained {trained:.1f}, random {random:.0f}")
    assert trained < 60
    assert random > 100 * trained


def test_a_smollm2_copy_from_another_wheel_or_conversion_is_converted_again(tmp_path: Path):
    import importlib.metadata
    import json

    from green_profiles.models import loading as models

    copy = tmp_path / "smollm2-135m"
    copy.mkdir()
    (copy / "model.safetensors").write_bytes(b"weights")
    record = {"version": importlib.metadata.version(models.SMOLLM2_DISTRIBUTION),
              "conversion_version": models.SMOLLM2_CONVERSION_VERSION}
    (copy / models.SMOLLM2_RECORD).write_text(json.dumps(record))
    assert models._smollm2_is_current(copy)
    for stale in ({"version": "0.0.1"}, {"conversion_version": models.SMOLLM2_CONVERSION_VERSION + 1}):
        (copy / models.SMOLLM2_RECORD).write_text(json.dumps(record | stale))
        assert not models._smollm2_is_current(copy)
    (copy / models.SMOLLM2_RECORD).unlink()  # converted by a version that kept no record
    assert not models._smollm2_is_current(copy)
