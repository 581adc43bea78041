"""Benchmark: the kernel against the plain per-target autograd loop, in one process.

Prints, per model and method: rows per second, the speed-up over the plain loop,
the largest relative difference from it, and the fraction of this machine's
matmul peak that the kernel's useful FLOPs reach. Run with `make bench`.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from collections.abc import Callable

import torch
from torch import nn
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from green_profiles import logit_gradient_norms
from green_profiles.runs.costs import kernel_flops
from green_profiles.models.loading import ModelUnavailableError, load_model


def pythia_14m_shaped(seed: int = 0) -> nn.Module:
    """A randomly initialized GPT-NeoX with pythia-14m's shape (6 layers, d=128, 4 heads)."""
    torch.manual_seed(seed)
    config = GPTNeoXConfig(vocab_size=50304, hidden_size=128, num_hidden_layers=6, num_attention_heads=4,
                           intermediate_size=512, max_position_embeddings=2048, rotary_pct=0.25)
    return GPTNeoXForCausalLM(config).eval().requires_grad_(False)


def plain_loop(model: nn.Module, ids: torch.Tensor, targets: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The plain way: one full forward per window, one autograd.grad per target."""
    out = []
    head = model.get_output_embeddings()
    for window, window_tokens in zip(ids, tokens):
        embeds = model.get_input_embeddings()(window[None]).detach().requires_grad_(True)
        hidden = model.base_model(inputs_embeds=embeds, use_cache=False)[0][0]
        rows = []
        for j, v in zip(targets.tolist(), window_tokens.tolist()):
            (grad,) = torch.autograd.grad(hidden[j] @ head.weight[v], embeds, retain_graph=True)
            rows.append(grad[0].float().norm(dim=-1))
        out.append(torch.stack(rows))
    return torch.stack(out)


def matmul_peak_flops(dtype: torch.dtype, size: int = 2048, repeats: int = 3) -> float:
    """FLOP/s of a large square matmul: the practical peak the kernel is measured against."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def timed(function: Callable[[], torch.Tensor], repeats: int) -> tuple[torch.Tensor, float]:
    """The result and the best wall time of ``repeats`` runs (a shared VM's timings vary by ~15%)."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return result, best


def max_relative_difference(got: torch.Tensor, want: torch.Tensor, min_source: int) -> float:
    got, want = got[..., min_source:], want[..., min_source:]
    nonzero = want != 0
    return ((got - want).abs()[nonzero] / want[nonzero]).max().item()


def bench_model(name: str, model: nn.Module, length: int, n_targets: int, n_windows: int, min_source: int,
                methods: list[str], peak: dict[torch.dtype, float], bfloat16: bool, repeats: int) -> None:
    generator = torch.Generator().manual_seed(0)
    vocab = model.get_output_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (n_windows, length), generator=generator)
    targets = torch.arange(length - n_targets, length)
    tokens = torch.randint(0, vocab, (n_windows, n_targets), generator=generator)
    rows = n_windows * n_targets
    flops = kernel_flops(model, n_windows, targets, min_source)
    print(f"\n## {name}: L={length}, {n_targets} targets x {n_windows} windows, min_source={min_source}")
    print(f"useful work: {flops / rows / 1e9:.1f} GFLOP per row")
    print(f"{'method':<28} {'dtype':<9} {'rows/s':>8} {'vs loop':>8} {'max rel diff':>13} {'% of peak':>10}")
    reference, seconds = timed(lambda: plain_loop(model, ids, targets, tokens), repeats)
    loop_rate = rows / seconds
    print(f"{'plain per-target loop':<28} {'float32':<9} {loop_rate:8.2f} {1.0:8.2f} {0.0:13.1e} "
          f"{100 * kernel_flops(model, n_windows, targets, 0) / seconds / peak[torch.float32]:9.1f}%")
    variants = [(method, None) for method in methods] + [("loop", False)]
    if bfloat16:
        variants.append(("auto", "bfloat16"))
    for method, option in variants:
        dtype = torch.bfloat16 if option == "bfloat16" else torch.float32
        model.to(dtype)
        skip_prefix = False if option is False else None
        got, seconds = timed(lambda: logit_gradient_norms(model, ids, targets, tokens, min_source=min_source,
                                                          method=method, skip_prefix=skip_prefix), repeats)
        rate = rows / seconds
        label = f"kernel {method}" + (", no prefix skip" if option is False else "")
        print(f"{label:<28} {str(dtype).removeprefix('torch.'):<9} {rate:8.2f} {rate / loop_rate:8.2f} "
              f"{max_relative_difference(got, reference, min_source):13.1e} "
              + (f"{100 * flops / seconds / peak[dtype]:9.1f}%" if dtype in peak else f"{'n/a':>10}"))
    model.to(torch.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=["auto", "loop", "vmap", "replicate"])
    parser.add_argument("--repeats", type=int, default=2, help="time each method this often, keep the best")
    parser.add_argument("--skip-smollm2", action="store_true", help="only the pythia-14m-shaped model")
    args = parser.parse_args()

    print(f"# Jacobian-norm kernel benchmark: torch {torch.__version__}, {platform.machine()}, "
          f"{torch.get_num_threads()} threads")
    # A CPU without native bfloat16 matmuls runs them at well under 1% of float32: probe with a
    # small matrix first so the benchmark does not spend minutes measuring that.
    peak = {torch.float32: matmul_peak_flops(torch.float32), torch.bfloat16: matmul_peak_flops(torch.bfloat16, 256)}
    if peak[torch.bfloat16] > 0.2 * peak[torch.float32]:
        peak[torch.bfloat16] = matmul_peak_flops(torch.bfloat16)
    bfloat16_useful = peak[torch.bfloat16] > 0.2 * peak[torch.float32]
    bfloat16_peak = peak[torch.bfloat16]
    if not bfloat16_useful:
        del peak[torch.bfloat16]  # a 256^2 probe is no peak to compare with
    print("matmul peak: " + ", ".join(f"{str(d).removeprefix('torch.')} {f / 1e9:.1f} GFLOP/s"
                                      for d, f in peak.items())
          + ("" if bfloat16_useful else f", bfloat16 {bfloat16_peak / 1e9:.1f} GFLOP/s (no native bf16 matmul)"))
    bench_model("pythia-14m-shaped GPT-NeoX (random weights)", pythia_14m_shaped(), length=2048, n_targets=16,
                n_windows=args.windows, min_source=384, methods=args.methods, peak=peak, bfloat16=True, repeats=args.repeats)
    if not args.skip_smollm2:
        try:
            model, _ = load_model("smollm2-135m")
        except ModelUnavailableError as error:
            print(f"\n(smollm2-135m skipped: {error})")
            return
        bench_model("smollm2-135m (trained, float32)", model, length=512, n_targets=16,
                    n_windows=1, min_source=96, methods=args.methods, peak=peak, bfloat16=bfloat16_useful, repeats=args.repeats)


if __name__ == "__main__":
    main()
