"""What a run measures: the :class:`RunConfig` and the paper's two published runs.

A configuration names the model, the corpus, the window length, the number of
windows, the target positions, the distance grid, the left source buffer, the
shuffle, the dtype and the seed. :meth:`RunConfig.resolved` fills the defaults
(the paper's Pythia settings scaled to ``L``) and checks them; two configurations
that resolve to the same values measure the same numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from green_profiles.text.windows import SHUFFLE_MODES

# The paper's distance grid (Pythia up to 1536; Qwen adds 2048).
PAPER_DISTANCES = (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768,
                   1024, 1280, 1536, 2048)
# The Qwen run's own grid in the authors' run script: no 1280 (PROTOCOL.md: "...,1024,1536,2048"). The Pythia
# run's grid is PAPER_DISTANCES as its buffer cuts it (up to 1536).
QWEN_DISTANCES = tuple(r for r in PAPER_DISTANCES if r != 1280)
SELECTIONS = ("pred", "true")
SAMPLERS = ("uniform", "authors")
Selection = Literal["pred", "true"]


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers.

    Defaults left as ``None`` scale the paper's Pythia settings (``L = 2048``,
    targets ``1920..2047`` stride 8, buffer 384) to ``seq_len``: targets in the
    last sixteenth of the window, 16 of them, and a buffer of ``3 L / 16``.
    ``L = 2048`` reproduces the Pythia run exactly; :data:`PRESETS` holds both
    of the paper's runs.

    Attributes:
        model: a name understood by :func:`green_profiles.models.loading.load_model`
            (``"smollm2-135m"``, ``"pythia-70m"``, ``"smollm2-135m@random"``, a hub id, a directory).
        corpus: a name understood by :func:`green_profiles.text.load_corpus`.
        seq_len: ``L``, tokens the model reads per window (windows hold ``L + 1``).
        n_windows: number of windows sampled.
        target_min, target_max, target_stride: target positions ``j`` (inclusive range).
        source_min_index: the left buffer: every source ``j - r`` is at least this index.
        distances: the grid of ``r`` (tokens); ``0`` is always included, and
            distances that would put a source inside the buffer for any target are dropped.
        shuffle: ``"none"``, ``"window"`` or ``"corpus"`` (see :mod:`green_profiles.text.windows`).
        sampler: how windows are drawn: ``"uniform"`` (ours: uniform over all valid
            starts, no position twice) or ``"authors"`` (the rule of the paper's scripts,
            :func:`~green_profiles.text.windows.sample_windows_as_authors`: documents of at
            least 2,000 characters, with repeats and overlaps).
        dtype: ``"auto"`` (float32 on a CPU, the checkpoint's dtype on a GPU), ``"checkpoint"``
            (the checkpoint's dtype everywhere, as the paper ran them), ``"float32"``,
            ``"bfloat16"`` or ``"float16"``.
        seed: seeds window sampling, shuffling and ``@random`` initialization.
        revision: hub revision of the model (e.g. a Pythia ``"step3000"``).
        split: corpus split, for hub corpora.
        per_layer: also store, for every decoder block ``l``, the norms of the gradient with
            respect to the hidden state entering it (``x_0``: the embeddings), from the same
            backward pass (:func:`~green_profiles.kernel.jacobian.logit_gradient_norms`). It changes the
            run's key only when true: runs without it keep the keys they always had.
        full_rows: also store every target's whole row ``G(j, s)`` over all sources ``s``
            (``true_full``/``pred_full [n, T, L]``, NaN left of the buffer, zero right of the
            target), for showing the decay on the text itself (:mod:`green_profiles.report.shading`).
            In the key only when true, like ``per_layer``.
    """

    model: str = "smollm2-135m"
    corpus: str = "gutenberg"
    seq_len: int = 512
    n_windows: int = 32
    target_min: int | None = None
    target_max: int | None = None
    target_stride: int | None = None
    source_min_index: int | None = None
    distances: tuple[int, ...] | None = None
    shuffle: str = "none"
    sampler: str = "uniform"
    dtype: str = "auto"
    seed: int = 0
    revision: str | None = None
    split: str = "test"
    per_layer: bool = False
    full_rows: bool = False

    def resolved(self) -> RunConfig:
        """The configuration with every default filled in and checked.

        Raises:
            ValueError: sizes that cannot work (targets outside the window, a
                buffer right of the first target, no distance left but 0, ...).
        """
        length = int(self.seq_len)
        if length < 2:
            raise ValueError(f"seq_len must be at least 2, got {length}")
        if self.n_windows < 1:
            raise ValueError(f"n_windows must be positive, got {self.n_windows}")
        if self.shuffle not in SHUFFLE_MODES:
            raise ValueError(f"unknown shuffle {self.shuffle!r}: use one of {', '.join(SHUFFLE_MODES)}")
        if not isinstance(self.per_layer, bool):
            raise ValueError(f"per_layer must be True or False, got {self.per_layer!r}")
        if not isinstance(self.full_rows, bool):
            raise ValueError(f"full_rows must be True or False, got {self.full_rows!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}: use one of {', '.join(SAMPLERS)}")
        target_min = length - max(1, length // 16) if self.target_min is None else int(self.target_min)
        target_max = length - 1 if self.target_max is None else int(self.target_max)
        stride = max(1, (target_max - target_min + 1) // 16) if self.target_stride is None else int(self.target_stride)
        buffer = 3 * length // 16 if self.source_min_index is None else int(self.source_min_index)
        if not 0 <= target_min <= target_max < length:
            raise ValueError(f"targets must satisfy 0 <= target_min <= target_max < seq_len = {length}; "
                             f"got {target_min}..{target_max}")
        if stride < 1:
            raise ValueError(f"target_stride must be positive, got {stride}")
        if not 0 <= buffer <= target_min:
            raise ValueError(f"source_min_index must lie in [0, target_min = {target_min}], got {buffer}")
        # The last target actually used, so that equivalent ranges share one cache key.
        target_max = target_min + (target_max - target_min) // stride * stride
        grid = PAPER_DISTANCES if self.distances is None else self.distances
        if any(int(r) < 0 for r in grid):
            raise ValueError(f"distances must be non-negative, got {tuple(grid)}")
        # A source j - r must stay >= the buffer for the first (smallest) target.
        distances = tuple(sorted({0, *(int(r) for r in grid if int(r) <= target_min - buffer)}))
        if len(distances) < 2:
            raise ValueError(f"no distance r >= 1 fits between the buffer ({buffer}) and the first target "
                             f"({target_min}); lower source_min_index or raise target_min")
        return dataclasses.replace(
            self, seq_len=length, target_min=target_min, target_max=target_max, target_stride=stride,
            source_min_index=buffer, distances=distances,
        )

    @property
    def targets(self) -> np.ndarray:
        """Target positions ``[T]`` (of the resolved configuration)."""
        config = self.resolved()
        return np.arange(config.target_min, config.target_max + 1, config.target_stride, dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (``distances`` as a list)."""
        record = dataclasses.asdict(self)
        if record["distances"] is not None:
            record["distances"] = list(record["distances"])
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> RunConfig:
        """The inverse of :meth:`to_dict`; unknown keys raise."""
        record = dict(record)
        if record.get("distances") is not None:
            record["distances"] = tuple(int(r) for r in record["distances"])
        return cls(**record)


PRESETS: dict[str, RunConfig] = {
    # The paper's two published runs (PROTOCOL.md): 1024 windows x 16 targets = 16,384 rows each, on the
    # authors' Gutenberg document file with their window rule and seed.
    "pythia": RunConfig(model="pythia-14m", corpus="paper-gutenberg", seq_len=2048, n_windows=1024,
                        target_min=1920, target_max=2047, target_stride=8, source_min_index=384, seed=1234,
                        sampler="authors", dtype="checkpoint"),
    "qwen": RunConfig(model="qwen2.5-0.5b", corpus="paper-gutenberg", seq_len=4096, n_windows=1024,
                      target_min=3584, target_max=4095, target_stride=32, source_min_index=1536, seed=1234,
                      sampler="authors", dtype="checkpoint", distances=QWEN_DISTANCES),
}


def published_run(model: str) -> RunConfig:
    """The paper's published run whose settings apply to ``model``, with ``model`` in it.

    The paper measured its Qwen2.5 model at the Qwen run's settings (``L = 4096``) and
    every Pythia size at the Pythia run's (``L = 2048``); any other model gets the
    Pythia settings. An ``@random`` suffix or a hub revision does not change the family.
    """
    family = "qwen" if "qwen" in model.lower() else "pythia"
    return dataclasses.replace(PRESETS[family], model=model)


def config_arguments(config: RunConfig) -> list[str]:
    """The ``run`` options that give ``config`` back through the CLI's ``config_from_args`` (unset fields left out)."""
    arguments = []
    for field in dataclasses.fields(RunConfig):
        value = getattr(config, field.name)
        if value is None or (field.name in ("per_layer", "full_rows") and not value):
            continue
        if field.name in ("per_layer", "full_rows"):  # flags
            arguments.append(f"--{field.name.replace('_', '-')}")
            continue
        text = ",".join(str(int(r)) for r in value) if field.name == "distances" else str(value)
        arguments.append(f"--{field.name.replace('_', '-')}={text}")  # one word: a value may start with "-"
    return arguments
