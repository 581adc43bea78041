"""The Jacobian-norm kernel. For a window of input embeddings ``e[0..L-1]``, a target
position ``j`` and a vocabulary token ``v`` it returns the row

    G(j, s) = || d z[j, v] / d e[s] ||_2        for every source position s,

float32, in logit per unit embedding, with ``z[j, v]`` the LM-head logit (final hidden
state at ``j`` dotted with the head's row ``v``, plus its bias). One vector-Jacobian
product from the scalar ``z[j, v]`` gives the whole row: one input-gradient pass per
(window, target), never one per source, and never the ``L x vocab`` logits.
``G(j, s)`` is exactly zero for ``s > j`` (causality).

Three ways to run the backward passes (``method``), all exact: ``"loop"``, one
forward per window and one ``torch.autograd.grad`` per row (the reference);
``"vmap"``, one forward per window and chunks of rows pulled back at once with
``is_grads_batched=True``; ``"replicate"``, one copy of the window per row in a
batch and one backward of the summed logits. ``"auto"`` is ``loop`` on a CPU and
``vmap`` on a GPU. Work no requested source needs is skipped: positions right of the
last target are cut off, and the prefix left of ``min_source`` can run once without
gradients as a key/value cache (``skip_prefix``).

``per_layer=True`` also returns, from the same backward pass, the norms with respect
to the hidden state entering every decoder block (captured by forward pre-hooks;
block 0's input is the embeddings). In float16 every backward is seeded with ``2**8``
and the norms divided by it again (exact: a power of two only shifts exponents; it
keeps small gradients out of float16's subnormal range), and a row that overflows is
measured again unscaled. Norms are accumulated in float32 whatever the model's dtype;
:func:`count_norms` counts the zero and non-finite ones a median would drop silently.

Needs only torch and the sibling modules :mod:`.precision` and :mod:`.counts` (numpy),
so the ``kernel`` folder can be copied into another project on its own. The protocol
around it (windows, distance grid, aggregation, fits) is on the book's methods page.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .precision import check_dtype_for_device
from .counts import NormCounts, count_norms  # noqa: F401  (the kernel's counts, re-exported)

Method = Literal["auto", "loop", "vmap", "replicate"]
METHODS: tuple[str, ...] = ("loop", "vmap", "replicate")
DEFAULT_MEMORY_BUDGET_BYTES = 2 * 1024**3

# float16's normal range is [2**-14, 65504 < 2**16]; below it, subnormals keep fewer digits down to
# 2**-24, and anything smaller is zero. The backward pass of a unit seed sits low in that range: for
# SmolLM2-135M at L = 512 (run in bfloat16 on a CPU, whose exponent range shows the magnitudes a float16
# pass would have to hold) the largest half-precision entry of the whole backward was ~39 (2**5.3), while
# 36-39% of its nonzero entries lay below 2**-14 and 1.3-1.7% below 2**-24. A seed of 2**8 keeps the
# largest entry 6.6x below float16's maximum and cuts those shares to 3.0-3.5% and 0.07-0.08%. Rows
# that overflow anyway are measured again unscaled. bfloat16 and float32 have float32's exponent range
# (down to 2**-126): nothing there comes near its ends, and a power of two cannot change rounding
# relative to a value, so they are not scaled (k = 0 keeps their results bitwise as before).
_SEED_EXPONENTS: dict[torch.dtype, int] = {torch.float16: 8}


class NonFiniteGradientError(ValueError):
    """A gradient norm came out NaN or infinite (overflow, or a broken model)."""


def default_seed_exponent(dtype: torch.dtype) -> int:
    """``k`` of the seed cotangent ``2**k`` the kernel uses for a model in ``dtype``: 8 in float16, else 0."""
    return _SEED_EXPONENTS.get(dtype, 0)


@dataclass(frozen=True)
class _Rows:
    """The flat list of requested rows: window index, target position, token id; each ``[R]``."""

    window: Tensor
    target: Tensor
    token: Tensor

    def __len__(self) -> int:
        return int(self.window.numel())

    def take(self, index: Tensor) -> _Rows:
        return _Rows(self.window[index], self.target[index], self.token[index])


@dataclass(frozen=True)
class _Plan:
    """What part of the window the passes cover: positions ``[offset, end)``."""

    offset: int
    end: int
    min_source: int


def logit_gradient_norms(
    model: nn.Module,
    input_ids: Tensor,
    targets: Tensor | Sequence[int],
    token_ids: Tensor | Sequence[int],
    *,
    min_source: int = 0,
    method: Method = "auto",
    skip_prefix: bool | None = None,
    chunk_size: int | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
    on_nonfinite: Literal["raise", "nan"] = "raise",
    seed_exponent: int | None = None,
    per_layer: bool = False,
) -> Tensor:
    """Gradient norms of selected logits with respect to every input embedding.

    Args:
        model: a causal LM with ``get_input_embeddings()``, ``get_output_embeddings()``
            (an ``nn.Linear`` head, bias allowed) and ``base_model(inputs_embeds=...,
            use_cache=False)`` whose first output is the final hidden state.
        input_ids: token ids, ``[L]`` for one window or ``[B, L]`` for several.
        targets: target positions ``j``, ``[T]`` (shared by all windows) or ``[B, T]``.
        token_ids: the vocabulary token ``v`` of each target, ``[T]`` or ``[B, T]``
            (a ``[T]`` tensor is shared by all windows).
        min_source: leftmost source position whose norm is needed; columns left of
            it are returned as NaN. Must not exceed the smallest target.
        method: ``"loop"``, ``"vmap"``, ``"replicate"`` or ``"auto"`` (see the module
            docstring); all give the same numbers up to float rounding.
        skip_prefix: run positions left of ``min_source`` once without gradients
            and reuse their key/value cache. ``None`` enables it for transformers
            models when ``min_source > 0``.
        chunk_size: rows pulled back per batched pass; ``None`` derives it from
            ``memory_budget_bytes``.
        memory_budget_bytes: rough bound on the transient memory of one batched pass.
        on_nonfinite: ``"raise"`` a :class:`NonFiniteGradientError`, or ``"nan"``:
            warn and return NaN in those entries.
        seed_exponent: ``k`` of the seed cotangent ``2**k`` (the norms are divided
            by ``2**k``, so the result does not depend on it except through rounding
            at the ends of the dtype's range); ``None`` is :func:`default_seed_exponent`
            of the model's dtype. A row that is not finite with ``k > 0`` is measured
            again with ``k = 0``.
        per_layer: also the norms with respect to the input of every decoder block
            (:func:`decoder_layers`), from the same backward pass.

    Returns:
        float32 norms (units of logit per unit embedding), ``[T, L]`` for one window
        or ``[B, T, L]``; exactly zero for sources right of the target, NaN left of
        ``min_source``. With ``per_layer``, ``[T, n_layers, L]`` or ``[B, T, n_layers, L]``:
        entry ``l`` is ``|| d z[j, v] / d x_l[s] ||_2`` (logit per unit of hidden state) with
        ``x_l`` the hidden state entering block ``l``; ``x_0`` is the input embeddings, so
        layer 0 equals the rows without ``per_layer`` to rounding (bitwise only where the chunks and
        the float path happen to be the same).
    """
    single = torch.as_tensor(input_ids).dim() == 1
    ids = _as_window_batch(input_ids, "input_ids")
    n_windows = ids.shape[0]
    targets_2d = _broadcast_rows(targets, n_windows, "targets")
    tokens_2d = _broadcast_rows(token_ids, n_windows, "token_ids")
    if targets_2d.shape != tokens_2d.shape:
        raise ValueError(
            f"targets and token_ids must have the same length per window; got {tuple(targets_2d.shape)} "
            f"and {tuple(tokens_2d.shape)}"
        )
    n_targets = targets_2d.shape[1]
    rows = _Rows(
        torch.arange(n_windows).repeat_interleave(n_targets),
        targets_2d.reshape(-1),
        tokens_2d.reshape(-1),
    )
    norms = gradient_norm_rows(
        model,
        ids,
        rows.window,
        rows.target,
        rows.token,
        min_source=min_source,
        method=method,
        skip_prefix=skip_prefix,
        chunk_size=chunk_size,
        memory_budget_bytes=memory_budget_bytes,
        on_nonfinite=on_nonfinite,
        seed_exponent=seed_exponent,
        per_layer=per_layer,
    )
    norms = norms.reshape(n_windows, n_targets, *norms.shape[1:])
    return norms[0] if single else norms


@dataclass(frozen=True)
class ProtocolRows:
    """Both token selections of the protocol for a set of windows and targets.

    Tokens are ``[B, T]`` (``[T]`` for a single window); norms are ``[B, T, L]``
    (``[T, L]``), or ``[B, T, n_layers, L]`` (``[T, n_layers, L]``) with ``per_layer``,
    as returned by :func:`logit_gradient_norms`.
    """

    true_tokens: Tensor
    pred_tokens: Tensor
    true_norms: Tensor
    pred_norms: Tensor
    true_log_probs: Tensor  # natural-log probability of the observed next token, [B, T] or [T]

    @property
    def pred_correct(self) -> Tensor:
        """Whether the model's top-1 prediction at each target was the observed next token."""
        return self.true_tokens == self.pred_tokens


def predicted_tokens(model: nn.Module, input_ids: Tensor, targets: Tensor | Sequence[int]) -> Tensor:
    """The model's argmax token at each target, ``[B, T]`` for ``input_ids`` ``[B, L]``.

    Forms logits only at the targets (``[B, T, vocab]``), never at every position.
    """
    return _target_log_probs(model, input_ids, targets).argmax(-1)


def _target_log_probs(model: nn.Module, input_ids: Tensor, targets: Tensor | Sequence[int]) -> Tensor:
    """Float32 next-token log-probabilities at the targets, ``[B, T, vocab]``, on the CPU."""
    ids = _as_window_batch(input_ids, "input_ids")
    targets_2d = _broadcast_rows(targets, ids.shape[0], "targets")
    embedding, head, base = _model_parts(model)
    end = int(targets_2d.max()) + 1
    with torch.no_grad():
        hidden = base(inputs_embeds=embedding(ids[:, :end].to(head.weight.device)), use_cache=False)[0]
        at_targets = hidden.gather(1, targets_2d.to(hidden.device)[..., None].expand(-1, -1, hidden.shape[-1]))
        return torch.log_softmax(head(at_targets).float(), dim=-1).cpu()


def protocol_gradient_norms(
    model: nn.Module,
    window_ids: Tensor,
    targets: Tensor | Sequence[int],
    **kernel_options,
) -> ProtocolRows:
    """Rows for the observed next token and for the model's prediction at each target.

    ``window_ids`` holds ``L + 1`` tokens (``[L + 1]`` or ``[B, L + 1]``): the model
    reads the first ``L`` and token ``j + 1`` is the observed next token of target
    ``j``. Where prediction and observation agree, one backward serves both.
    ``kernel_options`` go to :func:`gradient_norm_rows` (``min_source``, ``method``, ...).
    """
    single = torch.as_tensor(window_ids).dim() == 1
    windows = _as_window_batch(window_ids, "window_ids")
    if windows.shape[1] < 2:
        raise ValueError("window_ids must hold L + 1 >= 2 tokens: the input and its next tokens")
    ids = windows[:, :-1]
    targets_2d = _broadcast_rows(targets, ids.shape[0], "targets")
    if int(targets_2d.min()) < 0 or int(targets_2d.max()) >= ids.shape[1]:
        raise ValueError(f"targets must lie inside the window [0, {ids.shape[1]})")
    true_tokens = windows.gather(1, targets_2d + 1)
    log_probs = _target_log_probs(model, ids, targets_2d)
    pred_tokens = log_probs.argmax(-1)
    true_log_probs = log_probs.gather(-1, true_tokens[..., None])[..., 0]
    differ = (pred_tokens != true_tokens).reshape(-1)
    n_windows, n_targets = targets_2d.shape
    window_index = torch.arange(n_windows).repeat_interleave(n_targets)
    norms = gradient_norm_rows(
        model,
        ids,
        torch.cat([window_index, window_index[differ]]),
        torch.cat([targets_2d.reshape(-1), targets_2d.reshape(-1)[differ]]),
        torch.cat([true_tokens.reshape(-1), pred_tokens.reshape(-1)[differ]]),
        **kernel_options,
    )
    true_norms = norms[: len(window_index)]
    pred_norms = true_norms.clone()
    pred_norms[differ] = norms[len(window_index) :]
    shape = (n_windows, n_targets, *norms.shape[1:])
    result = ProtocolRows(
        true_tokens, pred_tokens, true_norms.reshape(shape), pred_norms.reshape(shape), true_log_probs
    )
    if single:
        result = ProtocolRows(*(getattr(result, field.name)[0] for field in dataclasses.fields(result)))
    return result


def gradient_norm_rows(
    model: nn.Module,
    input_ids: Tensor,
    row_windows: Tensor,
    row_targets: Tensor,
    row_tokens: Tensor,
    *,
    min_source: int = 0,
    method: Method = "auto",
    skip_prefix: bool | None = None,
    chunk_size: int | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
    on_nonfinite: Literal["raise", "nan"] = "raise",
    seed_exponent: int | None = None,
    per_layer: bool = False,
) -> Tensor:
    """The kernel on a flat list of rows, each its own (window, target, token).

    ``input_ids`` is ``[B, L]``; ``row_windows``, ``row_targets`` and ``row_tokens``
    are ``[R]`` (window index into ``input_ids``, target position, vocabulary id).
    Returns float32 ``[R, L]`` (``[R, n_layers, L]`` with ``per_layer``). Keyword
    arguments as in :func:`logit_gradient_norms`.
    Rows may repeat a target with different tokens, and windows may carry
    different numbers of rows.
    """
    ids = _as_window_batch(input_ids, "input_ids")
    rows = _Rows(*(_as_index_vector(x, name) for x, name in (
        (row_windows, "row_windows"), (row_targets, "row_targets"), (row_tokens, "row_tokens"))))
    if not len(rows.window) == len(rows.target) == len(rows.token):
        raise ValueError("row_windows, row_targets and row_tokens must have the same length")
    embedding, head, base = _model_parts(model)
    device = head.weight.device
    check_dtype_for_device(head.weight.dtype, device)
    plan = _validate(model, ids, rows, head, min_source)
    method = _resolve_method(method, device)
    if skip_prefix is None:
        skip_prefix = _supports_kv_cache(model) and min_source > 0 and _prefix_skip_pays(model, plan, device)
    if skip_prefix and not _supports_kv_cache(model):
        raise ValueError("skip_prefix needs a transformers model that accepts past_key_values")
    plan = dataclasses.replace(plan, offset=min_source if skip_prefix else 0)
    if on_nonfinite not in ("raise", "nan"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'nan', got {on_nonfinite!r}")
    exponent = _checked_seed_exponent(seed_exponent, head.weight.dtype)
    # Layer 0 is the embeddings themselves (the leaf); blocks 1.. are read by hooks on their inputs.
    blocks = decoder_layers(model)[1:] if per_layer else []

    out = torch.zeros(len(rows), 1 + len(blocks), ids.shape[1], dtype=torch.float32)
    if len(rows) == 0:
        return out if per_layer else out[:, 0]
    ids = ids[:, : plan.end].to(device)
    rows = _Rows(rows.window, rows.target.to(device), rows.token.to(device))
    with torch.no_grad():
        embeds = embedding(ids)
        prefix_cache = _prefix_key_values(base, embeds[:, : plan.offset]) if plan.offset > 0 else None
    if chunk_size is None:
        chunk_size = _rows_per_chunk(model, plan, method, memory_budget_bytes, embeds.element_size(),
                                     gradients=1 + len(blocks))
    chunk_size = max(1, int(chunk_size))

    def pass_rows(index: Tensor, k: int) -> None:
        out[index, :, plan.offset : plan.end] = _pass_rows(
            base, head, embeds, prefix_cache, rows.take(index), plan, method, chunk_size, k, blocks)

    pass_rows(torch.arange(len(rows)), exponent)
    if exponent > 0:
        # The scaled seed overflowed somewhere in these rows: measure them as an unscaled pass would.
        overflowed = (~torch.isfinite(out[..., min_source:])).flatten(1).any(1).nonzero().flatten()
        if len(overflowed):
            pass_rows(overflowed, 0)
            warnings.warn(f"{len(overflowed)} of {len(rows)} rows overflowed in {head.weight.dtype} with the "
                          f"seed scaled by 2**{exponent}; measured them again unscaled", RuntimeWarning,
                          stacklevel=2)

    _check_finite(out[..., min_source:], rows, on_nonfinite)
    out[..., :min_source] = math.nan
    return out if per_layer else out[:, 0]


def _checked_seed_exponent(seed_exponent: int | None, dtype: torch.dtype) -> int:
    """The seed exponent to use: the dtype's default, or a given one whose ``2**k`` is finite in ``dtype``."""
    if seed_exponent is None:
        return default_seed_exponent(dtype)
    if isinstance(seed_exponent, bool) or not isinstance(seed_exponent, int) or seed_exponent < 0:
        raise ValueError(f"seed_exponent must be a non-negative integer, got {seed_exponent!r}")
    if 2.0**seed_exponent > torch.finfo(dtype).max:
        raise ValueError(f"seed_exponent {seed_exponent} is too large for {dtype}: 2**{seed_exponent} overflows")
    return seed_exponent


def _pass_rows(
    base: nn.Module, head: nn.Linear, embeds: Tensor, prefix_cache: list[tuple[Tensor, Tensor]] | None,
    rows: _Rows, plan: _Plan, method: str, chunk_size: int, exponent: int, blocks: Sequence[nn.Module] = (),
) -> Tensor:
    """Float32 norms ``[R, 1 + len(blocks), end - offset]`` of ``rows`` with the seed cotangent ``2**exponent``,
    unscaled: with respect to the embeddings, then to the input of each of ``blocks``."""
    norms = torch.zeros(len(rows), 1 + len(blocks), plan.end - plan.offset, dtype=torch.float32)
    if method == "replicate":
        for start in range(0, len(rows), chunk_size):
            index = torch.arange(start, min(start + chunk_size, len(rows)))
            norms[index] = _replicate_chunk(base, head, embeds, prefix_cache, rows.take(index), plan, exponent,
                                            blocks)
        return norms
    for window in rows.window.unique().tolist():
        index = torch.nonzero(rows.window == window).flatten()
        inputs, hidden = _forward_with_grad(base, embeds[window : window + 1], prefix_cache, [window], plan, blocks)
        logits = _selected_logits(head, hidden[0], rows.target[index] - plan.offset, rows.token[index])
        for start in range(0, len(index), 1 if method == "loop" else chunk_size):
            part = slice(start, start + (1 if method == "loop" else chunk_size))
            norms[index[part]] = _pull_back(logits, inputs, part, batched=method == "vmap", exponent=exponent)
        del inputs, hidden, logits
    return norms


def _pull_back(logits: Tensor, inputs: Sequence[Tensor], part: slice, *, batched: bool, exponent: int = 0) -> Tensor:
    """Norms ``[C, K, n]`` of the gradients of ``logits[part]`` with respect to each of the ``K`` ``inputs``
    (``[1, n, d]`` each: the leaf, then block inputs), from one backward pass.

    The backward starts from the seed ``2**exponent`` and the norms are divided by it again.
    """
    if not batched:
        summed = logits[part].sum()
        grads = torch.autograd.grad(summed, inputs, grad_outputs=_seed(summed, exponent), retain_graph=True)
        return torch.stack([_norm_over_embedding(grad, exponent) for grad in grads], dim=1)
    chosen = torch.arange(len(logits), device=logits.device)[part]
    basis = torch.zeros(len(chosen), len(logits), dtype=logits.dtype, device=logits.device)
    basis[torch.arange(len(chosen)), chosen] = 2.0**exponent
    grads = torch.autograd.grad(logits, inputs, grad_outputs=basis, retain_graph=True, is_grads_batched=True)
    return torch.stack([_norm_over_embedding(grad[:, 0], exponent) for grad in grads], dim=1)


def _seed(output: Tensor, exponent: int) -> Tensor | None:
    """The cotangent ``2**exponent`` of a scalar ``output``; ``None`` (autograd's own 1) when unscaled."""
    return None if exponent == 0 else torch.full_like(output, 2.0**exponent)


def _replicate_chunk(
    base: nn.Module, head: nn.Linear, embeds: Tensor, prefix_cache: list[tuple[Tensor, Tensor]] | None,
    rows: _Rows, plan: _Plan, exponent: int = 0, blocks: Sequence[nn.Module] = (),
) -> Tensor:
    """Norms ``[C, 1 + len(blocks), n]`` for a chunk of rows run as a batch of window copies, one per row
    (seed ``2**exponent``). Copies do not interact, so each copy's gradient holds its own row alone."""
    copies = embeds[rows.window.to(embeds.device)]
    inputs, hidden = _forward_with_grad(base, copies, prefix_cache, rows.window.tolist(), plan, blocks)
    batch = torch.arange(len(rows), device=hidden.device)
    logits = (hidden[batch, rows.target - plan.offset] * head.weight[rows.token]).sum(-1)
    summed = logits.sum()
    grads = torch.autograd.grad(summed, inputs, grad_outputs=_seed(summed, exponent))
    return torch.stack([_norm_over_embedding(grad, exponent) for grad in grads], dim=1)


def _forward_with_grad(
    base: nn.Module, embeds: Tensor, prefix_cache: list[tuple[Tensor, Tensor]] | None,
    cache_rows: list[int], plan: _Plan, blocks: Sequence[nn.Module] = (),
) -> tuple[list[Tensor], Tensor]:
    """Forward over positions ``[offset, end)`` with the embeddings there as a fresh leaf.

    Returns ``[leaf, input of blocks[0], input of blocks[1], ...]`` (each ``[b, n, d]``)
    and the final hidden states ``[b, n, d]``.
    """
    leaf = embeds[:, plan.offset : plan.end].detach().requires_grad_(True)
    with _block_inputs(blocks) as captured:
        if prefix_cache is None:
            hidden = base(inputs_embeds=leaf, use_cache=False)[0]
        else:
            from transformers import DynamicCache

            # A fresh cache each time: the forward appends its own keys and values to it.
            cache = DynamicCache(ddp_cache_data=[(k[cache_rows], v[cache_rows]) for k, v in prefix_cache])
            hidden = base(inputs_embeds=leaf, past_key_values=cache, use_cache=False)[0]
    return [leaf, *captured], hidden


@contextlib.contextmanager
def _block_inputs(blocks: Sequence[nn.Module]) -> Iterator[list[Tensor]]:
    """Collect the hidden state each of ``blocks`` receives during the forward of the block (in order).

    Forward pre-hooks read the first positional argument (or ``hidden_states``) and
    change nothing; they are removed on leaving, so no other forward is observed.
    """
    captured: list[Tensor | None] = [None] * len(blocks)

    def hook_for(position: int) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            captured[position] = args[0] if args else kwargs["hidden_states"]
        return hook

    handles = [block.register_forward_pre_hook(hook_for(i), with_kwargs=True) for i, block in enumerate(blocks)]
    found: list[Tensor] = []
    try:
        yield found
    finally:
        for handle in handles:
            handle.remove()
    missing = [i + 1 for i, tensor in enumerate(captured) if tensor is None]
    if missing:
        raise RuntimeError(f"decoder blocks {missing} were not called in the forward pass: cannot read their inputs")
    found.extend(captured)  # type: ignore[arg-type]  (checked above)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a causal LM, in order: ``x_l``, the input of block ``l``, is what
    ``per_layer`` differentiates against.

    Looks for the stack of blocks in the base model (``layers`` in Llama, Qwen2 and
    GPT-NeoX; ``h`` in GPT-2 style models; ``blocks``; ``decoder.layers``), else for the one
    ``ModuleList`` there with ``config.num_hidden_layers`` entries.

    Raises:
        ValueError: no such list is found (or several candidates are).
    """
    base = getattr(model, "base_model", model)
    for path in ("layers", "h", "blocks", "decoder.layers"):
        found: Any = base
        for name in path.split("."):
            found = getattr(found, name, None)
        if isinstance(found, nn.ModuleList) and len(found) > 0:
            return found
    count = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    candidates = [module for module in base.modules() if isinstance(module, nn.ModuleList) and count
                  and len(module) == count]
    if len(candidates) == 1:
        return candidates[0]
    raise ValueError(f"cannot find the decoder blocks of {type(model).__name__} (no base_model.layers, .h, .blocks "
                     f"or .decoder.layers, and {len(candidates)} lists of num_hidden_layers = {count} modules): "
                     "per_layer needs them")


def _prefix_key_values(base: nn.Module, prefix: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Per-layer keys and values ``[B, heads, offset, head_dim]`` of the prefix, no gradients."""
    cache = base(inputs_embeds=prefix, use_cache=True).past_key_values
    return [(layer.keys, layer.values) for layer in cache.layers]


def _selected_logits(head: nn.Linear, hidden: Tensor, positions: Tensor, tokens: Tensor) -> Tensor:
    """``z[j, v]`` for each (position, token) pair, ``[R]``, without forming all logits."""
    logits = (hidden[positions] * head.weight[tokens]).sum(-1)
    if head.bias is not None:
        logits = logits + head.bias[tokens]
    return logits


def _norm_over_embedding(grad: Tensor, exponent: int = 0) -> Tensor:
    """L2 norm over the last (embedding) axis, accumulated in float32, divided by ``2**exponent``.

    The gradient is converted to float32 before squaring: squares of half-precision
    values leave its range long before the values themselves do. Dividing a float32
    number by a power of two is exact (short of float32's own subnormals).
    """
    norms = torch.linalg.vector_norm(grad.float(), dim=-1)
    if exponent:
        norms = norms * 2.0**-exponent
    return norms.cpu()


def _check_finite(out: Tensor, rows: _Rows, on_nonfinite: str) -> None:
    bad = ~torch.isfinite(out)
    if not bad.any():
        return
    bad_rows = bad.flatten(1).any(1).nonzero().flatten().tolist()
    where = ", ".join(f"(window {int(rows.window[r])}, target {int(rows.target[r])})" for r in bad_rows[:5])
    message = f"{int(bad.sum())} non-finite gradient norms in {len(bad_rows)} rows, e.g. {where}"
    if on_nonfinite == "raise":
        raise NonFiniteGradientError(message + "; pass on_nonfinite='nan' to keep them as NaN")
    warnings.warn(message + "; returned as NaN", RuntimeWarning, stacklevel=3)
    out[bad] = math.nan


def _model_parts(model: nn.Module) -> tuple[nn.Module, nn.Linear, nn.Module]:
    missing = [name for name in ("get_input_embeddings", "get_output_embeddings", "base_model") if not hasattr(model, name)]
    if missing:
        raise ValueError(f"{type(model).__name__} is not a causal LM the kernel can read: it lacks {', '.join(missing)}")
    head = model.get_output_embeddings()
    if not isinstance(head, nn.Linear):
        raise ValueError(
            f"{type(model).__name__}.get_output_embeddings() is {type(head).__name__}, not a linear LM head; "
            "the kernel needs z[j, v] = hidden[j] . W[v] + b"
        )
    return model.get_input_embeddings(), head, model.base_model


def _validate(model: nn.Module, ids: Tensor, rows: _Rows, head: nn.Linear, min_source: int) -> _Plan:
    length = ids.shape[1]
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if context is not None and length > context:
        raise ValueError(f"window of {length} tokens is longer than the model's context of {context} tokens")
    if len(rows) == 0:
        return _Plan(0, 0, min_source)
    if int(rows.window.min()) < 0 or int(rows.window.max()) >= ids.shape[0]:
        raise ValueError(f"row window indices must lie in [0, {ids.shape[0]})")
    lo, hi = int(rows.target.min()), int(rows.target.max())
    if lo < 0 or hi >= length:
        raise ValueError(f"targets must lie inside the window [0, {length}); got {lo}..{hi}")
    vocab = head.weight.shape[0]
    if int(rows.token.min()) < 0 or int(rows.token.max()) >= vocab:
        raise ValueError(f"token ids must lie in [0, {vocab}), the LM head's vocabulary")
    if not 0 <= min_source <= lo:
        raise ValueError(f"min_source must lie in [0, smallest target = {lo}]; got {min_source}")
    return _Plan(0, hi + 1, min_source)


def _resolve_method(method: str, device: torch.device) -> str:
    if method == "auto":
        # On a CPU one backward per row already keeps the matmuls large, and the vmapped
        # and replicated forms only add overhead there (`make bench` compares them). On a GPU
        # a single row leaves the device idle; batching rows is what fills it.
        return "loop" if device.type == "cpu" else "vmap"
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use 'auto' or one of {METHODS}")
    return method


def _prefix_skip_pays(model: nn.Module, plan: _Plan, device: torch.device) -> bool:
    """Whether running the prefix as a key/value cache is expected to save time.

    It removes the prefix rows from every matmul, but the suffix's attention then
    needs an explicit (bottom-right causal) mask, and on CPUs the fused attention
    kernel visits every masked block instead of skipping the upper triangle. So on
    a CPU it pays only where matmul weights dominate attention: it saves time for
    SmolLM2-135M at L=512 (attention ~1/10 of the work) and costs time for a
    pythia-14m-shaped model at L=2048 (attention ~1.3x the matmul work); `make bench`
    measures both.
    """
    if device.type != "cpu":
        return True
    config = getattr(model, "config", None)
    layers = getattr(config, "num_hidden_layers", None)
    if not layers:
        return True
    d = model.get_input_embeddings().weight.shape[1]
    matmul_weights_per_layer = sum(
        p.numel() for name, p in model.base_model.named_parameters() if p.dim() == 2 and "embed" not in name
    ) / layers
    n = plan.end - plan.min_source
    keys_per_query = plan.min_source + (n + 1) / 2
    attention_per_token = 4 * d * keys_per_query
    return attention_per_token < 0.5 * 2 * matmul_weights_per_layer


def _supports_kv_cache(model: nn.Module) -> bool:
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover - transformers is a dependency
        return False
    return isinstance(model, PreTrainedModel)


def _rows_per_chunk(model: nn.Module, plan: _Plan, method: str, budget: int, element_size: int,
                    gradients: int = 1) -> int:
    """Rows per batched pass so that one pass stays near ``budget`` bytes.

    A rough per-row estimate: the input-gradient pass keeps a few ``[n, d]`` and
    ``[n, ffn]`` tensors alive per layer boundary plus one attention map
    ``[heads, n, n + offset]``; the replicated batch also stores the whole
    forward's activations, about that much again per layer. With ``gradients`` > 1
    (per layer), each row also keeps that many ``[n, d]`` input gradients.
    """
    config = getattr(model, "config", None)
    d = getattr(config, "hidden_size", None) or model.get_input_embeddings().weight.shape[1]
    ffn = getattr(config, "intermediate_size", None) or 4 * d
    heads = getattr(config, "num_attention_heads", None) or max(1, d // 64)
    layers = getattr(config, "num_hidden_layers", None) or 1
    n = max(1, plan.end - plan.offset)
    per_layer = n * (8 * d + 2 * ffn) + 2 * heads * n * (n + plan.offset)
    per_row = (per_layer * (layers if method == "replicate" else 1) + (gradients - 1) * n * d) * element_size
    return max(1, budget // per_row)


def _as_window_batch(input_ids: Tensor | Sequence[int], name: str) -> Tensor:
    ids = torch.as_tensor(input_ids)
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(f"{name} must be [L] or [B, L] with L > 0; got shape {tuple(ids.shape)}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer token ids, got {ids.dtype}")
    return ids.long()


def _broadcast_rows(values: Tensor | Sequence[int], n_windows: int, name: str) -> Tensor:
    tensor = torch.as_tensor(values).long().cpu()
    if tensor.dim() == 1:
        return tensor[None].expand(n_windows, -1)
    if tensor.dim() == 2 and tensor.shape[0] == n_windows:
        return tensor
    raise ValueError(f"{name} must be [T] or [B, T] with B = {n_windows}; got shape {tuple(tensor.shape)}")


def _as_index_vector(values: Tensor | Sequence[int], name: str) -> Tensor:
    tensor = torch.as_tensor(values)
    if tensor.dim() != 1 or tensor.dtype.is_floating_point:
        raise ValueError(f"{name} must be a 1-d integer tensor; got {tensor.dtype} of shape {tuple(tensor.shape)}")
    return tensor.long().cpu()
