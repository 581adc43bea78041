"""The kernel against a plain per-target autograd loop, a closed-form model, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from green_profiles import (
    NonFiniteGradientError,
    logit_gradient_norms,
    predicted_tokens,
    protocol_gradient_norms,
)
from green_profiles.kernel.jacobian import gradient_norm_rows

from support import CONTEXT, TARGETS, VOCAB, LinearLM, assert_same_norms, plain_loop_norms

L = 48  # the window of TARGETS


@pytest.fixture(scope="module")
def window() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    ids = torch.randint(0, VOCAB, (L,), generator=generator)
    tokens = torch.randint(0, VOCAB, (len(TARGETS),), generator=generator)
    return ids, tokens


@pytest.mark.parametrize("method", ["loop", "vmap", "replicate"])
@pytest.mark.parametrize(("min_source", "chunk_size"), [(0, None), (0, 2), (12, None), (12, 3)])
def test_kernel_matches_plain_autograd(tiny_model, window, method, min_source, chunk_size):
    ids, tokens = window
    want = plain_loop_norms(tiny_model, ids, TARGETS, tokens)
    got = logit_gradient_norms(tiny_model, ids, TARGETS, tokens, method=method,
                               min_source=min_source, chunk_size=chunk_size)
    assert got.shape == (len(TARGETS), L)
    assert_same_norms(got, want, min_source)


@pytest.mark.parametrize("skip_prefix", [False, True])
def test_prefix_skipping_is_exact(tiny_model, window, skip_prefix):
    ids, tokens = window
    want = plain_loop_norms(tiny_model, ids, TARGETS, tokens)
    got = logit_gradient_norms(tiny_model, ids, TARGETS, tokens, min_source=15, skip_prefix=skip_prefix)
    assert_same_norms(got, want, 15)


@pytest.mark.parametrize("method", ["loop", "vmap", "replicate"])
def test_several_windows_with_their_own_targets(tiny_llama, method):
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(0, VOCAB, (3, L), generator=generator)
    targets = torch.tensor([[30, 47], [25, 40], [47, 33]])
    tokens = torch.randint(0, VOCAB, (3, 2), generator=generator)
    got = logit_gradient_norms(tiny_llama, ids, targets, tokens, method=method, min_source=10, chunk_size=4)
    assert got.shape == (3, 2, L)
    for b in range(3):
        assert_same_norms(got[b], plain_loop_norms(tiny_llama, ids[b], targets[b], tokens[b]), 10)


def test_causality_exact_zeros_right_of_target(tiny_model, window):
    ids, tokens = window
    got = logit_gradient_norms(tiny_model, ids, TARGETS, tokens)
    for row, j in zip(got, TARGETS.tolist()):
        assert (row[j + 1 :] == 0).all()
        assert (row[: j + 1] > 0).all()


# --- a linear causal model whose Jacobian is known in closed form (support.LinearLM) ----------


@pytest.mark.parametrize("method", ["loop", "vmap", "replicate"])
def test_closed_form_power_law_model(method):
    torch.manual_seed(0)
    model = LinearLM().requires_grad_(False)
    ids = torch.randint(0, 50, (40,))
    targets, tokens = torch.tensor([10, 25, 39]), torch.tensor([3, 3, 17])
    got = logit_gradient_norms(model, ids, targets, tokens, method=method, min_source=5)
    # d z[j, v] / d e[s] = w(j - s) M^T U[v], so its norm is w(j - s) ||M^T U[v]||.
    scale = (model.head.weight[tokens] @ model.base_model.mix.weight).norm(dim=-1)
    want = model.base_model.weights(40)[targets] * scale[:, None]
    assert torch.isnan(got[:, :5]).all()
    torch.testing.assert_close(got[:, 5:], want[:, 5:], rtol=1e-5, atol=0)
    # The diagonal-normalized row is the power law itself.
    r = torch.arange(0, 6)  # sources 10 - r >= min_source
    torch.testing.assert_close(got[0, 10 - r] / got[0, 10], (r + 1.0) ** -0.8, rtol=1e-5, atol=0)


def test_prefix_skipping_refused_for_models_without_a_cache():
    model = LinearLM().requires_grad_(False)
    with pytest.raises(ValueError, match="past_key_values"):
        logit_gradient_norms(model, torch.arange(10), [9], [1], min_source=3, skip_prefix=True)


# --- the protocol's two token selections ----------------------------------------------------


def test_protocol_rows_select_observed_and_predicted_tokens(tiny_model):
    generator = torch.Generator().manual_seed(11)
    windows = torch.randint(0, VOCAB, (2, L + 1), generator=generator)
    targets = torch.tensor([30, 38, 47])
    rows = protocol_gradient_norms(tiny_model, windows, targets, min_source=8)
    ids = windows[:, :-1]
    with torch.no_grad():
        full_logits = tiny_model(ids).logits
    assert torch.equal(rows.true_tokens, windows[:, targets + 1])
    # Token ids, exact: the argmax of logits from another path, but these fixed inputs' top two logits are >= 3e-3
    # apart, 10**4 times float32 rounding (a near-tie here would need a tolerance on the logits instead).
    assert torch.equal(rows.pred_tokens, full_logits[:, targets].argmax(-1))
    assert torch.equal(rows.pred_correct, rows.true_tokens == rows.pred_tokens)
    want_log_probs = torch.log_softmax(full_logits[:, targets], -1).gather(-1, rows.true_tokens[..., None])[..., 0]
    torch.testing.assert_close(rows.true_log_probs, want_log_probs, rtol=1e-5, atol=1e-5)
    for b in range(2):
        assert_same_norms(rows.true_norms[b], plain_loop_norms(tiny_model, ids[b], targets, rows.true_tokens[b]), 8)
        assert_same_norms(rows.pred_norms[b], plain_loop_norms(tiny_model, ids[b], targets, rows.pred_tokens[b]), 8)


def test_protocol_shares_the_backward_when_tokens_agree(tiny_llama, monkeypatch):
    # Make the observed next token the model's own prediction at every other target, in order: an edit
    # at j + 1 changes no prediction at or before j, so each agreement made stays made.
    window = torch.arange(L + 1) % 5
    targets = torch.arange(30, 48)
    for j in targets[::2].tolist():
        window[j + 1] = predicted_tokens(tiny_llama, window[:-1], [j])[0, 0]
    calls: list[int] = []
    import green_profiles.kernel.jacobian as jacobian

    real = jacobian.gradient_norm_rows

    def counting(*args, **kwargs):
        calls.append(len(args[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(jacobian, "gradient_norm_rows", counting)
    rows = protocol_gradient_norms(tiny_llama, window, targets)
    agree = int(rows.pred_correct.sum())
    assert agree >= len(targets) // 2 and agree < len(targets), "both cases must occur for the test to mean anything"
    assert rows.pred_correct[::2].all()
    assert calls == [2 * len(targets) - agree]
    assert torch.equal(rows.true_norms[rows.pred_correct], rows.pred_norms[rows.pred_correct])  # one row, copied


def test_predicted_tokens_single_window(tiny_llama):
    ids = torch.arange(L) % VOCAB
    with torch.no_grad():
        want = tiny_llama(ids[None]).logits[0, [5, 20]].argmax(-1)
    assert torch.equal(predicted_tokens(tiny_llama, ids, [5, 20])[0], want)  # top two logits >= 0.18 apart


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(targets=[48], token_ids=[1]), "inside the window"),
        (dict(targets=[-1], token_ids=[1]), "inside the window"),
        (dict(targets=[10, 20], token_ids=[1]), "same length"),
        (dict(targets=[10], token_ids=[VOCAB]), "vocabulary"),
        (dict(targets=[10], token_ids=[1], min_source=11), "min_source"),
        (dict(targets=[10], token_ids=[1], method="fast"), "unknown method"),
        (dict(targets=[10], token_ids=[1], on_nonfinite="ignore"), "on_nonfinite"),
    ],
)
def test_bad_input_is_a_clear_value_error(tiny_llama, kwargs, message):
    with pytest.raises(ValueError, match=message):
        logit_gradient_norms(tiny_llama, torch.arange(L), **kwargs)


def test_window_longer_than_context(tiny_llama):
    with pytest.raises(ValueError, match=f"context of {CONTEXT} tokens"):
        logit_gradient_norms(tiny_llama, torch.zeros(CONTEXT + 1, dtype=torch.long), [5], [1])


def test_float_token_ids_rejected(tiny_llama):
    with pytest.raises(ValueError, match="integer token ids"):
        logit_gradient_norms(tiny_llama, torch.zeros(10), [5], [1])


def test_model_without_linear_head():
    model = LinearLM()
    model.head = nn.Sequential(nn.Linear(16, 50))
    with pytest.raises(ValueError, match="not a linear LM head"):
        logit_gradient_norms(model, torch.arange(10), [5], [1])


def test_float16_on_cpu_refused():
    model = LinearLM().half()
    with pytest.raises(ValueError, match="float16 on a CPU"):
        logit_gradient_norms(model, torch.arange(10), [5], [1])


def test_non_finite_gradients_are_reported():
    model = LinearLM().requires_grad_(False)
    model.base_model.mix.weight[0, 0] = math.inf
    with pytest.raises(NonFiniteGradientError, match="non-finite"):
        logit_gradient_norms(model, torch.arange(10), [5, 9], [1, 2])
    with pytest.warns(RuntimeWarning, match="non-finite"):
        got = logit_gradient_norms(model, torch.arange(10), [5, 9], [1, 2], on_nonfinite="nan", min_source=2)
    assert torch.isnan(got[:, 2:]).any()
    assert torch.isnan(got[:, :2]).all()


def test_gradient_norm_rows_with_no_rows(tiny_llama):
    empty = torch.zeros(0, dtype=torch.long)
    assert gradient_norm_rows(tiny_llama, torch.arange(L)[None], empty, empty, empty).shape == (0, L)
