"""Per-layer rows: the kernel's gradients with respect to every decoder block's input, from the same backward
pass, against a hook-based autograd reference that makes each block's input a leaf of its own."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from transformers import (
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from green_profiles import NonFiniteGradientError, logit_gradient_norms, protocol_gradient_norms
from green_profiles.kernel.jacobian import decoder_layers, gradient_norm_rows

from support import CONTEXT, VOCAB, LinearLM

L = 40
LAYERS = 3
TARGETS = torch.tensor([17, 29, 39, 39])  # a repeated target with another token
METHODS = ("loop", "vmap", "replicate")


def _model(architecture: str) -> nn.Module:
    """A small random model with three blocks (so that the middle block is neither first nor last)."""
    torch.manual_seed(5)
    common = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=CONTEXT)
    if architecture.startswith("gpt_neox"):  # Pythia's layout, and the sequential-residual variant
        parallel = architecture == "gpt_neox_parallel"
        model = GPTNeoXForCausalLM(GPTNeoXConfig(**common, rotary_pct=0.25, use_parallel_residual=parallel))
    elif architecture == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common, num_key_value_heads=2, tie_word_embeddings=True))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common, num_key_value_heads=2, tie_word_embeddings=True))
    return model.eval().requires_grad_(False)


ARCHITECTURES = ("gpt_neox_parallel", "gpt_neox_sequential", "llama", "qwen2")


@pytest.fixture(scope="module", params=ARCHITECTURES)
def model(request: pytest.FixtureRequest) -> nn.Module:
    return _model(request.param)


@pytest.fixture(scope="module")
def window() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(9)
    return torch.randint(0, VOCAB, (L,), generator=generator), torch.randint(0, VOCAB, (len(TARGETS),),
                                                                             generator=generator)


def hook_reference(model: nn.Module, ids: torch.Tensor, targets: torch.Tensor, tokens: torch.Tensor,
                   layer: int) -> torch.Tensor:
    """``||dz[j, v] / dx_layer[s]||`` ``[T, L]`` the slow, independent way: a pre-hook replaces block ``layer``'s
    input by a detached leaf, a full forward runs from there, and one autograd.grad per row reads the leaf."""
    block = decoder_layers(model)[layer]
    held: dict[str, torch.Tensor] = {}

    def replace(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            held["leaf"] = args[0].detach().requires_grad_(True)
            return (held["leaf"], *args[1:]), kwargs
        held["leaf"] = kwargs["hidden_states"].detach().requires_grad_(True)
        return args, {**kwargs, "hidden_states": held["leaf"]}

    handle = block.register_forward_pre_hook(replace, with_kwargs=True)
    try:
        logits = model(inputs_embeds=model.get_input_embeddings()(ids[None])).logits[0]
    finally:
        handle.remove()
    rows = []
    for j, v in zip(targets.tolist(), tokens.tolist()):
        (grad,) = torch.autograd.grad(logits[j, v], held["leaf"], retain_graph=True)
        rows.append(grad[0].norm(dim=-1))
    return torch.stack(rows)


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    nonzero = want != 0
    return ((got - want).abs()[nonzero] / want[nonzero]).max().item()


def assert_matches(got: torch.Tensor, want: torch.Tensor, min_source: int) -> None:
    assert torch.isnan(got[..., :min_source]).all()
    got, want = got[..., min_source:], want[..., min_source:]
    assert torch.equal(got == 0, want == 0), "zero pattern (causality) differs"
    assert relative_error(got, want) <= 1e-5


def assert_same_rows(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-5) -> None:
    """Rows computed twice along different float paths (other batch shapes, ``per_layer``), where BLAS promises
    no bitwise equality: NaN (buffer) and zero (causality, cut-off) patterns exactly, values to ``rtol`` (the
    bound against the hook reference above; a neighbouring layer or another row is > 1e-2 away)."""
    assert torch.equal(torch.isnan(got), torch.isnan(want)), "NaN pattern (left buffer) differs"
    assert torch.equal(got == 0, want == 0), "zero pattern (causality) differs"
    torch.testing.assert_close(got, want, rtol=rtol, atol=0, equal_nan=True)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("min_source", "skip_prefix"), [(0, None), (11, False), (11, True)])
def test_every_layer_matches_the_hook_reference(model, window, method, min_source, skip_prefix):
    ids, tokens = window
    got = logit_gradient_norms(model, ids, TARGETS, tokens, method=method, min_source=min_source,
                               skip_prefix=skip_prefix, chunk_size=3, per_layer=True)
    assert got.shape == (len(TARGETS), LAYERS, L) and got.dtype == torch.float32
    references = [hook_reference(model, ids, TARGETS, tokens, layer) for layer in range(LAYERS)]
    for layer in range(LAYERS):
        assert_matches(got[:, layer], references[layer], min_source)
    # The comparison can fail: a neighbouring layer's rows are far from these.
    for layer in range(LAYERS - 1):
        shifted = got[:, layer + 1, min_source:]
        assert relative_error(shifted, references[layer][:, min_source:]) > 1e-2


@pytest.mark.parametrize("method", METHODS)
def test_layer_zero_is_the_ordinary_row(model, window, method):
    ids, tokens = window
    for min_source, skip in ((0, None), (11, True)):
        ordinary = logit_gradient_norms(model, ids, TARGETS, tokens, method=method, min_source=min_source,
                                        skip_prefix=skip)
        layers = logit_gradient_norms(model, ids, TARGETS, tokens, method=method, min_source=min_source,
                                      skip_prefix=skip, per_layer=True)
        # per_layer adds hooks, more autograd inputs and its own chunk sizes: held to rounding, not bitwise.
        # Catches layer 0 not being the embeddings (e.g. the first block's output) and a lost buffer cut.
        assert_same_rows(layers[:, 0], ordinary)


def test_shapes_of_several_windows_flat_rows_and_the_protocol(window):
    model = _model("llama")
    generator = torch.Generator().manual_seed(2)
    windows = torch.randint(0, VOCAB, (2, L + 1), generator=generator)
    targets = torch.tensor([[20, 39], [30, 35]])
    tokens = torch.randint(0, VOCAB, (2, 2), generator=generator)
    batched = logit_gradient_norms(model, windows[:, :-1], targets, tokens, min_source=8, per_layer=True)
    assert batched.shape == (2, 2, LAYERS, L)
    for b in range(2):
        for layer in range(LAYERS):
            assert_matches(batched[b, :, layer], hook_reference(model, windows[b, :-1], targets[b], tokens[b], layer), 8)
    flat = gradient_norm_rows(model, windows[:, :-1], torch.tensor([1, 0]), torch.tensor([35, 20]),
                              torch.tensor([int(tokens[1, 1]), int(tokens[0, 0])]), min_source=8, per_layer=True)
    assert flat.shape == (2, LAYERS, L)
    # Other rows in the batch and a shorter cut (positions < 36, not < 40): other matmul shapes, equal only to
    # rounding. Catches a wrong row (batched[1, 0] has another target) and a wrong window or layer.
    assert_same_rows(flat[0], batched[1, 1])
    rows = protocol_gradient_norms(model, windows, [25, 39], min_source=8, per_layer=True)
    plain = protocol_gradient_norms(model, windows, [25, 39], min_source=8)
    assert rows.pred_norms.shape == rows.true_norms.shape == (2, 2, LAYERS, L)
    assert_same_rows(rows.pred_norms[:, :, 0], plain.pred_norms)  # per_layer vs plain: to rounding (see above)
    assert_same_rows(rows.true_norms[:, :, 0], plain.true_norms)
    single = protocol_gradient_norms(model, windows[0], [25, 39], min_source=8, per_layer=True)
    assert single.pred_norms.shape == (2, LAYERS, L)


@pytest.mark.parametrize("method", METHODS)
def test_seed_scaling_and_the_unscaled_retry_per_layer(window, method):
    ids, tokens = window
    model = copy.deepcopy(_model("gpt_neox_parallel"))  # an untied head: scaling it leaves the inputs alone
    unscaled = logit_gradient_norms(model, ids, TARGETS, tokens, method=method, min_source=5, per_layer=True,
                                    seed_exponent=0)
    scaled = logit_gradient_norms(model, ids, TARGETS, tokens, method=method, min_source=5, per_layer=True,
                                  seed_exponent=40)
    # Bitwise by construction: the same shapes and kernels, and the backward is linear in its seed, so 2**40
    # scales every intermediate exactly (no value here comes near float32's overflow or subnormals).
    assert torch.equal(scaled.nan_to_num(-1.0), unscaled.nan_to_num(-1.0)), "a power of two only shifts exponents"
    model.get_output_embeddings().weight *= 1e4  # logits of order 1e4: times 2**127 their gradients overflow float32
    unscaled = logit_gradient_norms(model, ids, TARGETS, tokens, method=method, min_source=5, per_layer=True,
                                    seed_exponent=0)
    with pytest.warns(RuntimeWarning, match=r"4 of 4 rows overflowed .* measured them again unscaled"):
        got = logit_gradient_norms(model, ids, TARGETS, tokens, method=method, min_source=5, per_layer=True,
                                   seed_exponent=127)
    # Bitwise: all 4 rows are measured again with seed 1 as one batch, the very computation of `unscaled`.
    assert torch.equal(got.nan_to_num(-1.0), unscaled.nan_to_num(-1.0))


def test_bfloat16_seed_scaling_is_exact_per_layer(window):
    ids, tokens = window
    model = _model("llama").to(torch.bfloat16)
    unscaled = logit_gradient_norms(model, ids, TARGETS, tokens, per_layer=True)
    scaled = logit_gradient_norms(model, ids, TARGETS, tokens, per_layer=True, seed_exponent=8)
    assert unscaled.dtype == torch.float32
    assert torch.equal(scaled, unscaled)  # bitwise: bfloat16 has float32's exponent range, 2**8 scales exactly


def test_non_finite_gradients_per_layer(window):
    ids, tokens = window
    model = copy.deepcopy(_model("llama"))
    model.model.layers[1].mlp.down_proj.weight[0, 0] = math.inf  # breaks the gradients of layers 0 and 1 only
    with pytest.raises(NonFiniteGradientError, match="non-finite"):
        logit_gradient_norms(model, ids, TARGETS, tokens, min_source=4, per_layer=True)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        got = logit_gradient_norms(model, ids, TARGETS, tokens, min_source=4, per_layer=True, on_nonfinite="nan")
    assert torch.isnan(got[..., :4]).all()
    assert torch.isnan(got[:, :2, 4:]).any()


def test_decoder_layers_found_or_refused_clearly():
    for architecture in ARCHITECTURES:
        model = _model(architecture)
        assert len(decoder_layers(model)) == LAYERS
    with pytest.raises(ValueError, match="cannot find the decoder blocks"):
        logit_gradient_norms(LinearLM().requires_grad_(False), torch.arange(10), [5], [1], per_layer=True)


def test_hooks_are_removed_after_the_pass(window):
    ids, tokens = window
    model = _model("qwen2")
    logit_gradient_norms(model, ids, TARGETS, tokens, per_layer=True)
    assert all(not block._forward_pre_hooks for block in decoder_layers(model))


def test_no_rows_per_layer():
    empty = torch.zeros(0, dtype=torch.long)
    assert gradient_norm_rows(_model("llama"), torch.arange(L)[None], empty, empty, empty,
                              per_layer=True).shape == (0, LAYERS, L)
