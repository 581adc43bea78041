"""Training the families of small GPT-NeoX models (:mod:`green_profiles.models.families`) on Gutenberg text.

``make models`` (``green-profiles train --settings default``) trains every size
of the family named by the settings, one after another:

- the family's BPE tokenizer is learnt from the training documents only
  (:func:`~green_profiles.models.tokenizer.train_tokenizer`), once;
- the training documents, each ended by ``<|endoftext|>``, are concatenated and cut into
  sequences of ``context + 1`` tokens; every epoch visits them in a seeded permutation,
  so the batch of any step is a function of the step alone (the data position is the step);
- AdamW with linear warm-up and cosine decay to a tenth of the peak rate, float32;
- checkpoints at step 0 and at halvings of the final step (log-spaced), each with the
  mean training loss since the previous one and the loss on fixed held-out and training
  sequences (the memorization gap), written atomically with config, weights, tokenizer
  and a record (settings, budget, device, data checksums, versions);
- a resume state (weights, optimizer, RNG, step) written atomically about once a minute,
  at each checkpoint and on Ctrl-C between two steps: an interrupted run continues where
  it stopped and ends with the weights an uninterrupted one would have (on the same
  machine and versions). A Ctrl-C inside a step or a checkpoint keeps the last state
  written (the weights in memory may be half-updated).

The budget is in tokens per size and grows by the family's ``gpu_scale`` on a GPU
(:meth:`~green_profiles.models.families.FamilySpec.budget_tokens`); the record states it.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from green_profiles.models.families import (
    CHECKPOINT_RECORD,
    FAMILIES,
    TRAINING_RECORD,
    FamilySpec,
    ModelSize,
    family_directory,
    read_training_record,
    step_directory,
    stored_steps,
)
from green_profiles.files.locations import default_data_dir, file_sha256
from green_profiles.files.storage import atomic_directory, atomic_write, exclusive_lock, remove_staging
from green_profiles.kernel.precision import resolve_device
from green_profiles.models.tokenizer import train_tokenizer
from green_profiles.text import corpus_checksum, load_corpus

RESUME = "resume"
TOKENIZER = "tokenizer"
# Seconds between resume states; a Ctrl-C also writes one.
SAVE_SECONDS = 60.0
# Bump when the training code changes what a family's weights would be: trained sizes of an older
# version are trained again.
TRAINING_VERSION = 1


@dataclass(frozen=True)
class TrainingData:
    """A family's tokenized text: ``train`` sequences ``[n, context + 1]`` (int64 token ids), the fixed
    evaluation sequences ``heldout_eval`` and ``train_eval`` ``[eval_blocks, context + 1]``, and the
    corpus checksums of both sides of the split."""

    train: torch.Tensor
    heldout_eval: torch.Tensor
    train_eval: torch.Tensor
    train_sha256: str
    heldout_sha256: str
    train_tokens: int
    heldout_tokens: int


def token_sequences(documents: Sequence[Any], tokenizer: Any, length: int) -> torch.Tensor:
    """The documents' tokens, each document ended by the tokenizer's ``eos``, concatenated and cut into
    ``[n, length]`` int64 sequences (the remainder dropped)."""
    ids: list[int] = []
    for document in documents:
        ids.extend(tokenizer(document.text, add_special_tokens=False)["input_ids"])
        ids.append(int(tokenizer.eos_token_id))
    n = len(ids) // length
    if n == 0:
        raise ValueError(f"{len(ids)} tokens make no sequence of {length}")
    return torch.tensor(ids[: n * length], dtype=torch.int64).view(n, length)


def evenly_spaced(sequences: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` sequences spread evenly over all of them (all when there are fewer)."""
    if len(sequences) <= count:
        return sequences
    return sequences[np.linspace(0, len(sequences) - 1, count).round().astype(np.int64)]


def prepare_data(family: FamilySpec, tokenizer: Any, data_dir: Path | None = None) -> TrainingData:
    """Tokenize both sides of the family's split (the training side for training, both for evaluation)."""
    train_documents = load_corpus(family.corpus, data_dir)
    heldout_documents = load_corpus(family.heldout_corpus, data_dir)
    train = token_sequences(train_documents, tokenizer, family.context + 1)
    heldout = token_sequences(heldout_documents, tokenizer, family.context + 1)
    return TrainingData(train=train, heldout_eval=evenly_spaced(heldout, family.eval_blocks),
                        train_eval=evenly_spaced(train, family.eval_blocks),
                        train_sha256=corpus_checksum(train_documents),
                        heldout_sha256=corpus_checksum(heldout_documents),
                        train_tokens=train.numel(), heldout_tokens=heldout.numel())


def batch_indices(step: int, batch_size: int, n_sequences: int, seed: int) -> np.ndarray:
    """The training sequences of step ``step`` (0-based): positions ``step * batch_size ...`` of the
    endless order in which epoch ``e`` is the permutation of ``default_rng([seed, e])``."""
    start = step * batch_size
    out = np.empty(batch_size, dtype=np.int64)
    for i, position in enumerate(range(start, start + batch_size)):
        epoch, index = divmod(position, n_sequences)
        out[i] = _epoch_order(seed, epoch, n_sequences)[index]
    return out


def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def learning_rate(step: int, total_steps: int, family: FamilySpec) -> float:
    """Linear warm-up over ``warmup_fraction`` of the steps, then cosine decay to a tenth of the peak."""
    warmup = max(1, round(family.warmup_fraction * total_steps))
    if step < warmup:
        return family.learning_rate * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return family.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def build_model(family: FamilySpec, size: ModelSize, tokenizer: Any) -> torch.nn.Module:
    """A freshly initialized GPT-NeoX of ``size`` under the family's seed (float32)."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(
        vocab_size=len(tokenizer), hidden_size=size.hidden, num_hidden_layers=size.layers,
        num_attention_heads=size.heads, intermediate_size=4 * size.hidden,
        max_position_embeddings=family.context, rotary_pct=0.25, use_parallel_residual=True,
        tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(family.seed)
        return GPTNeoXForCausalLM(config)


@torch.no_grad()
def mean_loss(model: torch.nn.Module, sequences: torch.Tensor, *, batch_size: int = 8) -> float:
    """Mean next-token cross-entropy in nats per token over ``[n, context + 1]`` sequences (each predicts
    its last ``context`` tokens from the ones before)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start:start + batch_size].to(device)
        logits = model(input_ids=chunk[:, :-1], use_cache=False).logits.float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1),
                                                 reduction="sum")
        total += float(loss)
        count += chunk[:, 1:].numel()
    model.train(was_training)
    return total / count


def family_tokenizer(family: FamilySpec, data_dir: Path | None = None) -> Any:
    """The family's tokenizer: learnt from the training documents the first time (under the family's lock,
    written atomically to ``<family>/tokenizer/``), read back afterwards."""
    from transformers import AutoTokenizer

    directory = family_directory(family.name, data_dir) / TOKENIZER
    if not (directory / "tokenizer.json").is_file():
        tokenizer = train_tokenizer(load_corpus(family.corpus, data_dir), family.vocab_size)
        remove_staging(directory.parent, TOKENIZER)
        with atomic_directory(directory, replace=True) as staging:
            tokenizer.save_pretrained(staging)
    return AutoTokenizer.from_pretrained(directory)


def versions() -> dict[str, str]:
    """Versions of what produced the weights."""
    return {"python": platform.python_version(), "torch": torch.__version__,
            **{name: importlib.metadata.version(name) for name in ("transformers", "tokenizers", "numpy")},
            "training_version": str(TRAINING_VERSION)}


def train_family(family: FamilySpec, *, data_dir: Path | None = None, device: str | torch.device = "auto",
                 sizes: Sequence[str] | None = None, progress: bool = True,
                 stop_after_steps: int | None = None) -> dict[str, dict[str, Any]]:
    """Train every size of ``family`` (or ``sizes``) that is not trained yet; return each size's record.

    Holds the family's lock, so two processes never train the same family at once. A size
    whose finished record matches the recipe (:meth:`FamilySpec.fingerprint`), the
    :data:`TRAINING_VERSION` and the data is skipped; one with a resume state of the same
    recipe continues from it; anything else starts afresh.

    Args:
        stop_after_steps: stop (with a resume state written, as after Ctrl-C) once this many
            steps have been taken in this call; for tests of resuming.
    """
    target = resolve_device(device)
    root = family_directory(family.name, data_dir)
    records: dict[str, dict[str, Any]] = {}
    with exclusive_lock(root.parent / f".{family.name}.lock"):
        remove_staging(root)
        tokenizer = family_tokenizer(family, data_dir)
        data = prepare_data(family, tokenizer, data_dir)
        for size in family.sizes:
            if sizes is not None and size.name not in sizes:
                continue
            records[size.name] = _train_size(family, size, tokenizer, data, root / size.name, target, progress,
                                             stop_after_steps)
    return records


def _is_current(record: dict[str, Any] | None, family: FamilySpec, data: TrainingData) -> bool:
    return (record is not None and record.get("complete") is True and record.get("fingerprint") == family.fingerprint()
            and record.get("versions", {}).get("training_version") == str(TRAINING_VERSION)
            and record.get("data", {}).get("train_sha256") == data.train_sha256
            and record.get("data", {}).get("heldout_sha256") == data.heldout_sha256)


def _train_size(family: FamilySpec, size: ModelSize, tokenizer: Any, data: TrainingData, directory: Path,
                device: torch.device, progress: bool, stop_after_steps: int | None) -> dict[str, Any]:
    from tqdm.auto import tqdm

    record = read_training_record(directory)
    if _is_current(record, family, data):
        return record
    directory.mkdir(parents=True, exist_ok=True)
    remove_staging(directory)
    model = build_model(family, size, tokenizer).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=family.learning_rate, betas=(0.9, 0.95),
                                  weight_decay=family.weight_decay)
    state = _load_resume(directory / RESUME, family, data, model, optimizer)
    if state is None:
        _clear_size(directory)
        total = family.total_steps(device)
        state = {"step": 0, "total_steps": total, "loss_sum": 0.0, "loss_count": 0, "curve": [],
                 "wall_seconds": 0.0, "device": str(device), "fingerprint": family.fingerprint(),
                 "train_sha256": data.train_sha256, "training_version": TRAINING_VERSION}
    total = int(state["total_steps"])
    checkpoints = family.checkpoint_steps(total)
    base = {
        "family": family.name, "size": asdict(size), "model": f"{family.name}-{size.name}",
        "fingerprint": family.fingerprint(), "spec": asdict(family),
        "budget": {"device": device.type, "tokens_per_step": family.batch_size * family.context,
                   "total_steps": total, "tokens": total * family.batch_size * family.context,
                   "rule": f"{family.tokens_cpu} tokens on a CPU, x{family.gpu_scale} on a GPU"},
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": {"train_sha256": data.train_sha256, "heldout_sha256": data.heldout_sha256,
                 "train_tokens": data.train_tokens, "heldout_tokens": data.heldout_tokens,
                 "train_corpus": family.corpus, "heldout_corpus": family.heldout_corpus,
                 "eval_tokens": int(data.heldout_eval[:, 1:].numel())},
        "tokenizer_sha256": _tokenizer_checksum(tokenizer),
        "versions": versions(), "checkpoint_steps": checkpoints,
    }
    model.train()
    started, last_save = time.monotonic(), time.monotonic()
    wall_before = float(state["wall_seconds"])
    taken = 0
    # False only between whole steps: a Ctrl-C inside a step or a checkpoint leaves the weights or the state
    # half-updated, so then the last resume state written stands instead of the one in memory.
    consistent = True
    bar = tqdm(total=total, initial=int(state["step"]), desc=f"{family.name}-{size.name}", unit="step",
               disable=not progress, file=sys.stderr)
    try:
        while True:
            step = int(state["step"])
            if step in checkpoints and step not in [point["step"] for point in state["curve"]]:
                consistent = False
                state["wall_seconds"] = wall_before + time.monotonic() - started
                _checkpoint(model, tokenizer, data, directory, step, state, base)
                _save_resume(directory / RESUME, model, optimizer, state)
                last_save = time.monotonic()
                consistent = True
            if step >= total:
                break
            if stop_after_steps is not None and taken >= stop_after_steps:
                raise KeyboardInterrupt
            consistent = False
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total, family)
            batch = data.train[batch_indices(step, family.batch_size, len(data.train), family.seed)].to(device)
            loss = _next_token_loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            state["loss_sum"] += loss.item()
            state["loss_count"] += 1
            state["step"] = step + 1
            consistent = True
            taken += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if time.monotonic() - last_save > SAVE_SECONDS:
                state["wall_seconds"] = wall_before + time.monotonic() - started
                _save_resume(directory / RESUME, model, optimizer, state)
                last_save = time.monotonic()
    except KeyboardInterrupt:
        if consistent:
            state["wall_seconds"] = wall_before + time.monotonic() - started
            _save_resume(directory / RESUME, model, optimizer, state)
        bar.close()
        if stop_after_steps is not None:
            return {"complete": False, "step": int(state["step"])}
        raise
    bar.close()
    final = {**base, "complete": True, "final_step": total, "curve": state["curve"],
             "wall_seconds": round(wall_before + time.monotonic() - started, 1)}
    atomic_write(directory / TRAINING_RECORD, json.dumps(final, indent=2) + "\n")
    shutil.rmtree(directory / RESUME, ignore_errors=True)
    return final


def _next_token_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting ``batch[:, 1:]`` from ``batch[:, :-1]`` (``[B, context + 1]``): all
    ``context`` positions count (transformers' ``labels=`` would shift inside the window and drop one)."""
    logits = model(input_ids=batch[:, :-1], use_cache=False).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


def _tokenizer_checksum(tokenizer: Any) -> str:
    import hashlib

    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()


def _clear_size(directory: Path) -> None:
    """Remove a size's checkpoints of another recipe before training it afresh (each one renamed aside first,
    so no half-removed checkpoint is ever visible under its name)."""
    for step in stored_steps(directory):
        path = step_directory(directory, step)
        trash = path.with_name(f".trash-{path.name}")
        path.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
    (directory / TRAINING_RECORD).unlink(missing_ok=True)
    shutil.rmtree(directory / RESUME, ignore_errors=True)


def _checkpoint(model: torch.nn.Module, tokenizer: Any, data: TrainingData, directory: Path, step: int,
                state: dict[str, Any], base: dict[str, Any]) -> None:
    """Evaluate, then write ``step-<N>/`` atomically, its record last; append the point to the curve."""
    point = {
        "step": step,
        "tokens": step * base["budget"]["tokens_per_step"],
        "train_loss": state["loss_sum"] / state["loss_count"] if state["loss_count"] else None,
        "train_eval_loss": mean_loss(model, data.train_eval),
        "heldout_loss": mean_loss(model, data.heldout_eval),
        "wall_seconds": round(float(state["wall_seconds"]), 1),
    }
    point["heldout_perplexity"] = math.exp(point["heldout_loss"])
    target = step_directory(directory, step)
    with atomic_directory(target, replace=True) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        record = {**{k: v for k, v in base.items() if k != "checkpoint_steps"}, **point,
                  "weights_sha256": file_sha256(staging / "model.safetensors")}
        (staging / CHECKPOINT_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    state["curve"].append(point)
    state["loss_sum"], state["loss_count"] = 0.0, 0


def _save_resume(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 state: dict[str, Any]) -> None:
    with atomic_directory(path, replace=True) as staging:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "rng": torch.get_rng_state(), "state": state}, staging / "state.pt")


def _load_resume(path: Path, family: FamilySpec, data: TrainingData, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """Restore a resume state of the same recipe and data into ``model`` and ``optimizer``; ``None`` when
    there is none (or it belongs to another recipe)."""
    if not (path / "state.pt").is_file():
        return None
    saved = torch.load(path / "state.pt", weights_only=False)
    state = saved["state"]
    if (state.get("fingerprint") != family.fingerprint() or state.get("train_sha256") != data.train_sha256
            or state.get("training_version") != TRAINING_VERSION):
        return None
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["rng"])
    return state


def train_and_report(family_name: str, *, data_dir: Path | None = None, device: str = "auto") -> int:
    """Train every size of a family (``green-profiles train``, ``make models``), printing one line per size.

    Returns the exit status: 0 done, 130 interrupted (the resume state is saved).
    """
    family = FAMILIES[family_name]
    started = time.monotonic()
    try:
        records = train_family(family, data_dir=data_dir or default_data_dir(), device=device)
    except KeyboardInterrupt:
        print("interrupted: the resume state is saved; run it again to continue", file=sys.stderr)
        return 130
    for name, record in records.items():
        last = record["curve"][-1]
        print(f"{family.name}-{name}: {record['parameters']:,} parameters, {record['final_step']} steps "
              f"({record['budget']['tokens']:,} tokens), held-out perplexity {last['heldout_perplexity']:.1f}, "
              f"trained in {record['wall_seconds']:.0f} s")
    print(f"{family.name}: done in {time.monotonic() - started:.0f} s")
    return 0

