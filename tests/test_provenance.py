"""A stored run is served again only when everything that produced its numbers is unchanged.

Each case makes a real change (the text of a file, the weights and the tokenizer
of a model directory, a hub snapshot, the code's results version) and checks that
the run is measured anew, under a new key, with a line saying why; and that the
unchanged inputs still hit the store without running the kernel.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from support import tiny_config
from transformers import AutoModelForCausalLM

import green_profiles.kernel.jacobian as jacobian
import green_profiles.runs.provenance as provenance
from green_profiles.analysis.profiles import run_profile
from green_profiles.runs.provenance import model_fingerprint


@pytest.fixture
def own_copy(tiny_setup, tmp_path) -> tuple[Path, Path]:
    """A private copy of the tiny model directory and a one-document text file, free to change."""
    model_dir, _ = tiny_setup
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    text = tmp_path / "a.txt"
    text.write_text(" ".join(["the sea whale ship captain deck storm wind"] * 20))
    return copy, text


class KernelCalls:
    """Counts the kernel's calls (one per window) while still running it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = jacobian.protocol_gradient_norms

        def counting(*args, **kwargs):
            self.count += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(jacobian, "protocol_gradient_norms", counting)


def measure(model: Path, text: Path, data: Path):
    return run_profile(tiny_config((model, text), n_windows=2), data_dir=data, progress=False)


def test_changed_text_is_measured_anew_and_the_old_text_still_hits(own_copy, tmp_path, monkeypatch, capfd):
    model, text = own_copy
    calls = KernelCalls(monkeypatch)
    first = measure(model, text, tmp_path / "data")
    assert calls.count == 2
    original = text.read_text()
    text.write_text(" ".join(["the moon star island harbour rope mast crew"] * 20))
    capfd.readouterr()
    second = measure(model, text, tmp_path / "data")
    assert calls.count == 4, "the run of the old text was served for the new one"
    assert second.key != first.key
    assert (second.arrays["window_ids"] != first.arrays["window_ids"]).any()
    assert f"measuring anew: since run {first.key}, the text changed" in capfd.readouterr().err
    text.write_text(original)
    assert measure(model, text, tmp_path / "data").key == first.key and calls.count == 4  # served


def test_changed_weights_are_measured_anew(own_copy, tmp_path, monkeypatch, capfd):
    model, text = own_copy
    calls = KernelCalls(monkeypatch)
    first = measure(model, text, tmp_path / "data")
    weights_before, tokenizer_before = model_fingerprint(str(model))
    network = AutoModelForCausalLM.from_pretrained(model)
    with torch.no_grad():
        network.model.layers[0].mlp.down_proj.weight.mul_(1.5)
    network.save_pretrained(model)
    weights_after, tokenizer_after = model_fingerprint(str(model))
    assert weights_after != weights_before and tokenizer_after == tokenizer_before
    capfd.readouterr()
    second = measure(model, text, tmp_path / "data")
    assert calls.count == 4 and second.key != first.key
    assert "the weights changed" in capfd.readouterr().err
    assert (second.arrays["pred_raw"] != first.arrays["pred_raw"]).any()


def test_changed_tokenizer_is_measured_anew(own_copy, tmp_path, monkeypatch, capfd):
    model, text = own_copy
    calls = KernelCalls(monkeypatch)
    first = measure(model, text, tmp_path / "data")
    spec = json.loads((model / "tokenizer.json").read_text())
    vocabulary = spec["model"]["vocab"]
    vocabulary["sea"], vocabulary["whale"] = vocabulary["whale"], vocabulary["sea"]  # same text, other ids
    (model / "tokenizer.json").write_text(json.dumps(spec))
    capfd.readouterr()
    second = measure(model, text, tmp_path / "data")
    assert calls.count == 4 and second.key != first.key
    message = capfd.readouterr().err
    assert "the tokenizer changed" in message and "the weights changed" not in message
    assert (second.arrays["window_ids"] != first.arrays["window_ids"]).any()


def test_a_new_results_version_is_measured_anew(own_copy, tmp_path, monkeypatch, capfd):
    model, text = own_copy
    calls = KernelCalls(monkeypatch)
    first = measure(model, text, tmp_path / "data")
    monkeypatch.setattr(provenance, "RESULTS_VERSION", provenance.RESULTS_VERSION + 1)
    capfd.readouterr()
    second = measure(model, text, tmp_path / "data")
    assert calls.count == 4 and second.key != first.key
    assert "the code's results version changed" in capfd.readouterr().err
    assert second.metadata["provenance"]["results_version"] == provenance.RESULTS_VERSION


def test_runs_record_their_provenance(own_copy, tmp_path):
    model, text = own_copy
    run = measure(model, text, tmp_path / "data")
    recorded = json.loads((run.path / "metadata.json").read_text())["provenance"]
    weights, tokenizer = model_fingerprint(str(model))
    assert recorded["weights"] == weights and recorded["tokenizer"] == tokenizer
    assert recorded["results_version"] == provenance.RESULTS_VERSION
    assert len(recorded["corpus_sha256"]) == 64


def _hub_snapshot(cache: Path, repo: str, commit: str, source: Path) -> None:
    """A model in the Hugging Face cache layout: models--org--name/snapshots/<commit>/, refs/main -> commit."""
    root = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(source, root / "snapshots" / commit)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)


def test_hub_models_are_identified_by_the_commit_their_revision_resolves_to(tiny_setup, tmp_path, monkeypatch):
    import huggingface_hub.constants

    model_dir, _ = tiny_setup
    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    first, second = "a" * 40, "b" * 40
    _hub_snapshot(cache, "someone/tiny", first, model_dir)
    assert model_fingerprint("someone/tiny") == (f"hub:someone/tiny@{first}",) * 2
    _hub_snapshot(cache, "someone/tiny", second, model_dir)  # a new commit on main
    assert model_fingerprint("someone/tiny") == (f"hub:someone/tiny@{second}",) * 2
    assert model_fingerprint("someone/tiny", revision=first)[0] == f"hub:someone/tiny@{first}"
    assert model_fingerprint("someone/tiny@random")[0] == f"hub:someone/tiny@{second}"
