"""What more than one test file needs, other than fixtures (those live in ``conftest.py``).

No test file imports another test file: the shared constants, models, reference functions and
assertions are here, and the session store of tiny runs that ``conftest.py``'s ``tiny_store`` fixture
hands out (:class:`TinyStore`).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import green_profiles.kernel.jacobian as jacobian
from green_profiles.analysis.profiles import ProfileRun, load_run, run_profile
from green_profiles.runs.configuration import RunConfig

# --- the tiny random models (conftest's tiny_model and tiny_llama) -----------------------------------

VOCAB = 97
CONTEXT = 96

# --- the kernel against plain autograd (test_jacobian.py, test_half_precision.py, test_per_layer.py) ----

TARGETS = torch.tensor([20, 31, 40, 47, 47])  # in a 48-token window; a repeated target with another token


def plain_loop_norms(model: nn.Module, ids: torch.Tensor, targets: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The definition, written the obvious way: full forward, one autograd.grad per target."""
    embeds = model.get_input_embeddings()(ids[None]).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds).logits[0]
    rows = []
    for j, v in zip(targets.tolist(), tokens.tolist()):
        (grad,) = torch.autograd.grad(logits[j, v], embeds, retain_graph=True)
        rows.append(grad[0].norm(dim=-1))
    return torch.stack(rows)


def assert_same_norms(got: torch.Tensor, want: torch.Tensor, min_source: int = 0) -> None:
    """Kernel rows against a reference written another way: the NaN buffer and the zero pattern (causality)
    exactly, the values to a relative 1e-5 (tests/README.md)."""
    assert got.dtype == torch.float32
    assert torch.isnan(got[..., :min_source]).all()
    got, want = got[..., min_source:], want[..., min_source:]
    assert torch.equal(got == 0, want == 0), "zero pattern (causality) differs"
    nonzero = want != 0
    relative = ((got - want).abs()[nonzero] / want[nonzero]).max().item()
    assert relative <= 1e-5, f"max relative error {relative:.2e}"


class PowerLawMixer(nn.Module):
    """h[j] = sum_{s <= j} (j - s + 1)^(-p) * M e[s]."""

    def __init__(self, dim: int, exponent: float) -> None:
        super().__init__()
        self.mix = nn.Linear(dim, dim, bias=False)
        self.exponent = exponent

    def weights(self, n: int) -> torch.Tensor:
        distance = torch.arange(n)[:, None] - torch.arange(n)[None, :]
        return torch.where(distance >= 0, (distance.clamp(min=0) + 1.0) ** -self.exponent, 0.0)

    def forward(self, inputs_embeds: torch.Tensor, use_cache: bool = False) -> tuple[torch.Tensor]:
        return (torch.einsum("js,bsd->bjd", self.weights(inputs_embeds.shape[1]), self.mix(inputs_embeds)),)


class LinearLM(nn.Module):
    """A linear causal model whose Jacobian is known in closed form: embedding, :class:`PowerLawMixer`, head."""

    def __init__(self, vocab: int = 50, dim: int = 16, exponent: float = 0.8) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.base_model = PowerLawMixer(dim, exponent)
        self.head = nn.Linear(dim, vocab, bias=True)

    def get_input_embeddings(self) -> nn.Module:
        return self.embed

    def get_output_embeddings(self) -> nn.Module:
        return self.head


# --- a tiny model directory and corpus for runs through the store (conftest's tiny_setup) -------------

TINY_CONTEXT = 64
WORDS = ("the sea whale ship captain deck storm wind sail night day sun moon star island harbour rope "
         "mast crew voyage water wave boat anchor coast rock cloud rain bird fish man woman letter house").split()


def tiny_config(tiny_setup: tuple[Path, Path], **changes: Any) -> RunConfig:
    """A small run of the tiny model on the tiny corpus (5 windows x 3 targets); ``changes`` override fields."""
    model_dir, corpus = tiny_setup
    config = RunConfig(model=str(model_dir), corpus=str(corpus), seq_len=48, n_windows=5, target_min=36,
                       target_max=47, target_stride=4, source_min_index=8, distances=(0, 1, 2, 4, 8, 16, 28, 32))
    return dataclasses.replace(config, **changes)


# The runs of the session store, by name: tiny_config's changes. Each is measured once per session, the
# first time a test asks for it.
TINY_RUNS: Mapping[str, Mapping[str, Any]] = {
    "plain": {},
    "seed 1": {"seed": 1},
    "per_layer": {"per_layer": True},
    "full_rows": {"full_rows": True},
    "shuffled": {"shuffle": "window"},
}


class TinyStore:
    """One data directory of tiny runs measured once per session, for the tests that only read them.

    :meth:`run` gives a fresh :class:`ProfileRun` read from the store on every call (arrays of its own, so a
    test that changes them changes nothing for the others). Nothing in :attr:`data_dir` may be changed,
    listed or measured into by a test: a test that damages, deletes, lists or adds runs works on its own
    store, made with :meth:`copy` (or measured anew where measuring is what it tests).
    """

    def __init__(self, data_dir: Path, tiny_setup: tuple[Path, Path]) -> None:
        self.data_dir = data_dir
        self._setup = tiny_setup
        self._paths: dict[str, Path] = {}
        self._kernel = jacobian.protocol_gradient_norms  # the real kernel, as it was when the session began

    def config(self, name: str) -> RunConfig:
        return tiny_config(self._setup, **TINY_RUNS[name])

    def path(self, name: str) -> Path:
        """The stored run's directory (measured here the first time it is asked for)."""
        if name not in self._paths:
            # A session run measured with a patched kernel would hand wrong numbers to every later test.
            assert jacobian.protocol_gradient_norms is self._kernel, (
                f"the session's tiny run {name!r} was first asked for with the kernel patched: ask for it "
                "before patching (as a fixture, or at the top of the test)")
            self._paths[name] = run_profile(self.config(name), data_dir=self.data_dir, progress=False).path
        return self._paths[name]

    def run(self, name: str) -> ProfileRun:
        """The run ``name`` of :data:`TINY_RUNS`, read from the store (checksums checked)."""
        return load_run(self.path(name))

    def key(self, name: str) -> str:
        return self.path(name).name

    def copy(self, destination: Path, *names: str) -> Path:
        """A data directory of the caller's own at ``destination`` holding copies of the runs ``names``."""
        runs = Path(destination) / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copytree(self.path(name), runs / self.key(name))
        return Path(destination)


# --- runs ---------------------------------------------------------------------------------------------


def synthetic_run(documents: list[int], targets=(10, 12), distances=(0, 1, 2, 4, 8), seed=0) -> ProfileRun:
    """A run of ``len(documents)`` windows with log-normal norms decaying like (r+1)^-1."""
    rng = np.random.default_rng(seed)
    n, t, r = len(documents), len(targets), np.asarray(distances)
    raw = (r + 1.0) ** -1.0 * rng.lognormal(sigma=0.3, size=(n, t, len(r)))
    arrays = {"distances": r, "targets": np.asarray(targets), "window_ids": np.zeros((n, 20), dtype=np.int64),
              "document": np.asarray(documents), "start": np.zeros(n, dtype=np.int64), "pred_raw": raw,
              "true_raw": raw, "pred_tokens": np.zeros((n, t)), "true_tokens": np.zeros((n, t)),
              "true_log_probs": np.zeros((n, t))}
    config = RunConfig(seq_len=20, target_min=targets[0], target_max=targets[-1], source_min_index=0,
                       distances=tuple(distances))
    return ProfileRun(config=config, key="synthetic", path=None, arrays=arrays, table=None, metadata={})


def synthetic_full_run(documents: list[int], *, seq_len: int = 64, targets=(60, 62), source_min_index: int = 0,
                       exponent: float = 0.8, floor: float = 0.0, sigma: float = 0.2, seed: int = 0,
                       key: str = "synthetic-full") -> ProfileRun:
    """A run with whole rows (``full_rows``) of ``len(documents)`` windows: ``G(j, s) = (floor + (j - s + 1)^-p)``
    times log-normal noise, NaN left of the buffer and zero right of the target, as the store keeps them."""
    rng = np.random.default_rng(seed)
    n, t = len(documents), len(targets)
    j = np.asarray(targets)[None, :, None]
    s = np.arange(seq_len)[None, None, :]
    r = (j - s).astype(float)
    law = np.where(r >= 0, floor + (np.maximum(r, 0) + 1.0) ** -exponent, 0.0)
    full = law * rng.lognormal(sigma=sigma, size=(n, t, seq_len))
    full[..., :source_min_index] = np.nan
    config = RunConfig(seq_len=seq_len, n_windows=n, target_min=targets[0], target_max=targets[-1],
                       target_stride=(targets[1] - targets[0]) if t > 1 else 1, source_min_index=source_min_index,
                       full_rows=True)
    distances = config.resolved().distances
    grid = np.asarray(targets)[:, None] - np.asarray(distances)[None, :]
    raw = np.take_along_axis(full, np.broadcast_to(grid, (n, *grid.shape)), axis=2)
    arrays = {"distances": np.asarray(distances), "targets": np.asarray(targets),
              "window_ids": np.zeros((n, seq_len + 1), dtype=np.int64), "document": np.asarray(documents),
              "start": np.zeros(n, dtype=np.int64), "pred_raw": raw, "true_raw": raw, "pred_full": full,
              "true_full": full, "pred_tokens": np.zeros((n, t)), "true_tokens": np.zeros((n, t)),
              "true_log_probs": np.zeros((n, t))}
    return ProfileRun(config=config, key=key, path=None, arrays=arrays, table=None, metadata={"dtype": "float32"})
