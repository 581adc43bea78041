"""The families of small GPT-NeoX models trained here: what each is, and where its checkpoints are.

A family (:class:`FamilySpec`) is a recipe: a BPE tokenizer trained on the training side of
a corpus split (:mod:`green_profiles.text.splits`), several model sizes
(:class:`ModelSize`) trained with the same data order, schedule and token budget, and
checkpoints at log-spaced steps (step 0, the initialization, included). Training is
:mod:`green_profiles.models.training`; this module only describes and finds what it wrote::

    <data>/models/<family>/tokenizer/                 the family's tokenizer
    <data>/models/<family>/<size>/step-<N>/           a checkpoint: config, weights, tokenizer, checkpoint.json
    <data>/models/<family>/<size>/training.json       the size's record: settings, budget, curve, versions
    <data>/models/<family>/<size>/resume/             optimizer, RNG and data position while training runs

A model is named ``<family>-<size>`` (e.g. ``gutenberg-neox-d128``): the final checkpoint;
``revision="step<N>"`` picks another one (the scheme of Pythia's checkpoints).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from green_profiles.files.locations import default_data_dir

CHECKPOINT_RECORD = "checkpoint.json"
TRAINING_RECORD = "training.json"
STEP_PREFIX = "step-"
_REVISION = re.compile(r"^step(\d+)$")


@dataclass(frozen=True)
class ModelSize:
    """One GPT-NeoX shape of a family: ``hidden`` width (d_model), ``layers`` and attention ``heads``."""

    name: str
    hidden: int
    layers: int
    heads: int


@dataclass(frozen=True)
class FamilySpec:
    """A training recipe shared by every size of a family.

    Attributes:
        name: the family's name, the prefix of its model names.
        corpus: the training side of this split corpus is all the models read.
        heldout_corpus: the held-out side, for evaluation and measurement.
        vocab_size: BPE vocabulary of the family's tokenizer (special token included).
        context: tokens per training sequence; at least the measurement window ``L``.
        batch_size: sequences per step.
        tokens_cpu: the training budget per size on a CPU, in tokens (steps = budget / (batch x context)).
        gpu_scale: the budget is this many times larger on a GPU.
        learning_rate: peak AdamW learning rate (linear warm-up, cosine decay to a tenth).
        warmup_fraction: share of the steps spent warming up.
        weight_decay: AdamW's.
        n_checkpoints: checkpoints kept: step 0 and halvings of the final step.
        eval_blocks: sequences of ``context`` tokens on which held-out and training loss are evaluated.
        seed: seeds the initialization and the data order.
        sizes: the model shapes, smallest first.
    """

    name: str
    corpus: str
    heldout_corpus: str
    vocab_size: int
    context: int
    batch_size: int
    tokens_cpu: int
    gpu_scale: int
    learning_rate: float
    warmup_fraction: float
    weight_decay: float
    n_checkpoints: int
    eval_blocks: int
    seed: int
    sizes: tuple[ModelSize, ...]

    def size(self, name: str) -> ModelSize:
        """The size called ``name``.

        Raises:
            ValueError: no such size (the message lists the family's sizes).
        """
        for size in self.sizes:
            if size.name == name:
                return size
        raise ValueError(f"family {self.name!r} has no size {name!r}; its sizes are "
                         f"{', '.join(s.name for s in self.sizes)} (models {', '.join(self.model_names())})")

    def model_names(self) -> list[str]:
        """``<family>-<size>`` for every size."""
        return [f"{self.name}-{size.name}" for size in self.sizes]

    def budget_tokens(self, device: torch.device) -> int:
        """Training tokens per size on ``device``: :attr:`tokens_cpu`, times :attr:`gpu_scale` on a GPU."""
        return self.tokens_cpu * (self.gpu_scale if device.type == "cuda" else 1)

    def total_steps(self, device: torch.device) -> int:
        """Optimizer steps per size on ``device``."""
        return max(1, self.budget_tokens(device) // (self.batch_size * self.context))

    def checkpoint_steps(self, total_steps: int) -> list[int]:
        """Step 0 and ``total_steps`` halved ``n_checkpoints - 2`` times: log-spaced, increasing, unique."""
        halvings = {max(1, round(total_steps / 2**k)) for k in range(self.n_checkpoints - 1)}
        return [0, *sorted(halvings)]

    def fingerprint(self) -> str:
        """16 hex digits of the recipe (the device's budget is recorded apart, not hashed)."""
        record = dataclasses.asdict(self)
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


_DEFAULT_SIZES = (ModelSize("d64", 64, 2, 2), ModelSize("d128", 128, 3, 4), ModelSize("d192", 192, 4, 4))

FAMILIES: dict[str, FamilySpec] = {
    # The offline default: three sizes (0.6M, 1.6M and 3.4M parameters with the 4,096-token vocabulary) on the
    # Gutenberg training chapters, 768 steps of 8 x 512 tokens each (about 2.8 epochs); `make models` prints the time.
    "gutenberg-neox": FamilySpec(
        name="gutenberg-neox", corpus="gutenberg-train", heldout_corpus="gutenberg-heldout", vocab_size=4096,
        context=512, batch_size=8, tokens_cpu=3_145_728, gpu_scale=32, learning_rate=3e-3, warmup_fraction=0.05,
        weight_decay=0.1, n_checkpoints=8, eval_blocks=48, seed=0, sizes=_DEFAULT_SIZES),
    # Tiny, for the smoke book and the rehearsal (make test): seconds, says nothing about the science.
    "smoke-neox": FamilySpec(
        name="smoke-neox", corpus="gutenberg-train", heldout_corpus="gutenberg-heldout", vocab_size=512,
        context=128, batch_size=4, tokens_cpu=20_480, gpu_scale=1, learning_rate=3e-3, warmup_fraction=0.1,
        weight_decay=0.1, n_checkpoints=4, eval_blocks=4, seed=0,
        sizes=(ModelSize("d16", 16, 1, 2), ModelSize("d32", 32, 2, 2))),
}


class FamilyNotTrainedError(RuntimeError):
    """A known family (or size) whose checkpoints are not on disk yet: ``make models`` trains them."""


def family_of(name: str) -> tuple[FamilySpec, str] | None:
    """``(family, size name)`` when ``name`` is ``<family>-<size>`` of a known family, else ``None``
    (the size is not checked here: :meth:`FamilySpec.size` says which exist)."""
    for family in sorted(FAMILIES, key=len, reverse=True):  # longest first: no family is cut short
        if name.startswith(family + "-") and len(name) > len(family) + 1:
            return FAMILIES[family], name[len(family) + 1:]
    return None


def family_directory(family: str, data_dir: Path | None = None) -> Path:
    """``<data>/models/<family>``."""
    return (data_dir or default_data_dir()) / "models" / family


def step_directory(size_directory: Path, step: int) -> Path:
    """``<size directory>/step-<N>``."""
    return size_directory / f"{STEP_PREFIX}{step}"


def stored_steps(size_directory: Path) -> list[int]:
    """The steps with a complete checkpoint (its record written last, inside an atomic directory), sorted."""
    if not size_directory.is_dir():
        return []
    steps = []
    for path in size_directory.iterdir():
        if path.name.startswith(STEP_PREFIX) and (path / CHECKPOINT_RECORD).is_file():
            suffix = path.name[len(STEP_PREFIX):]
            if suffix.isdigit():
                steps.append(int(suffix))
    return sorted(steps)


def read_training_record(size_directory: Path) -> dict[str, Any] | None:
    """A size's ``training.json`` (``None`` when missing or unreadable)."""
    try:
        return json.loads((size_directory / TRAINING_RECORD).read_text())
    except (OSError, ValueError):
        return None


def parse_revision(revision: str | None) -> int | None:
    """``"step1200"`` -> 1200; ``None`` (the final checkpoint) stays ``None``.

    Raises:
        ValueError: anything but ``step<N>``.
    """
    if revision is None:
        return None
    match = _REVISION.match(revision)
    if match is None:
        raise ValueError(f"a trained model's revision is 'step<N>' (e.g. 'step64'), got {revision!r}")
    return int(match.group(1))


def checkpoint_directory(name: str, revision: str | None = None, data_dir: Path | None = None) -> Path:
    """The directory of a trained model's checkpoint: the final one, or ``revision="step<N>"``.

    Raises:
        ValueError: an unknown size, a malformed revision, or a step without a checkpoint (the
            message lists the stored steps).
        FamilyNotTrainedError: the family or size has not been trained (yet): run ``make models``.
    """
    found = family_of(name)
    if found is None:
        raise ValueError(f"{name!r} is not a trained family's model; families: {', '.join(FAMILIES)}")
    family, size_name = found
    family.size(size_name)
    size_directory = family_directory(family.name, data_dir) / size_name
    steps = stored_steps(size_directory)
    record = read_training_record(size_directory)
    step = parse_revision(revision)
    if step is None:
        if record is None or not record.get("complete"):
            raise FamilyNotTrainedError(
                f"{name} is not trained yet (no finished training in {size_directory}); run `make models` "
                f"(`make models SETTINGS=smoke` for the tiny family), or `green-profiles train "
                f"--family {family.name}`")
        step = int(record["final_step"])
    if step not in steps:
        if not steps:
            raise FamilyNotTrainedError(f"{name} has no checkpoint in {size_directory}; run `make models`")
        raise ValueError(f"{name} has no checkpoint at step {step}; stored steps: "
                         f"{', '.join(f'step{s}' for s in steps)}")
    return step_directory(size_directory, step)


def checkpoint_record(directory: Path) -> dict[str, Any]:
    """A checkpoint's ``checkpoint.json``."""
    return json.loads((Path(directory) / CHECKPOINT_RECORD).read_text())


def planned_steps(family: FamilySpec, size: str, device: torch.device,
                  data_dir: Path | None = None) -> list[int]:
    """The checkpoint steps of a size: those its finished training recorded, else those training it on
    ``device`` would write (a plan is made before anything is trained)."""
    record = read_training_record(family_directory(family.name, data_dir) / size)
    if record is not None and record.get("complete"):
        return [int(step) for step in record["checkpoint_steps"]]
    return family.checkpoint_steps(family.total_steps(device))
