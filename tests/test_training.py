"""The models trained here: the held-out split, seeded and resumable training, atomic checkpoints, loading
checkpoints by name and step, and the runs the training_dynamics notebook measures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from support import WORDS
from safetensors.torch import load_file

from green_profiles.text import Document, split_documents
from green_profiles.models.families import FAMILIES, FamilySpec, ModelSize, checkpoint_directory, stored_steps
from green_profiles.models.loading import ModelUnavailableError, load_model, model_location
from green_profiles.runs.plans import notebook_runs
from green_profiles.models.training import batch_indices, learning_rate, train_family

FAMILY = "test-neox"


def _corpus(path: Path, n_documents: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    path.write_text("".join(json.dumps({"text": " ".join(rng.choice(WORDS, size=300)), "title": f"doc {seed}-{i}"})
                            + "\n" for i in range(n_documents)))
    return str(path)


@pytest.fixture
def family(tmp_path, monkeypatch) -> FamilySpec:
    """A tiny family (context 32, 8 steps of 2 sequences, checkpoints 0, 2, 4, 8) on two small local corpora."""
    spec = FamilySpec(
        name=FAMILY, corpus=_corpus(tmp_path / "train.jsonl", 6, 0), heldout_corpus=_corpus(tmp_path / "held.jsonl", 2, 1),
        vocab_size=300, context=32, batch_size=2, tokens_cpu=2 * 32 * 8, gpu_scale=1, learning_rate=1e-2,
        warmup_fraction=0.25, weight_decay=0.1, n_checkpoints=4, eval_blocks=3, seed=0,
        sizes=(ModelSize("d8", 8, 1, 2), ModelSize("d16", 16, 1, 2)))
    monkeypatch.setitem(FAMILIES, FAMILY, spec)
    return spec


def _weights(data_dir: Path, size: str, step: int) -> dict[str, torch.Tensor]:
    return load_file(checkpoint_directory(f"{FAMILY}-{size}", f"step{step}", data_dir) / "model.safetensors")


def test_the_heldout_split_is_disjoint_deterministic_and_order_free():
    documents = [Document(f"text {i}", f"Book, Chapter {i}", "Book") for i in range(400)]
    train, heldout = split_documents(documents)
    assert {d.title for d in train}.isdisjoint({d.title for d in heldout})
    assert len(train) + len(heldout) == 400 and 0.08 < len(heldout) / 400 < 0.22
    again = split_documents(list(reversed(documents)))
    assert {d.title for d in again[1]} == {d.title for d in heldout}
    assert split_documents(documents, seed=1)[1] != heldout  # the seed decides
    with pytest.raises(ValueError, match="fraction"):
        split_documents(documents, fraction=1.5)


def test_the_gutenberg_split_corpora_cover_the_corpus_once(session_data_dir):
    from green_profiles.text import load_corpus

    whole = load_corpus("gutenberg", data_dir=session_data_dir)
    train = load_corpus("gutenberg-train", data_dir=session_data_dir)
    heldout = load_corpus("gutenberg-heldout", data_dir=session_data_dir)
    assert len(train) + len(heldout) == len(whole) and len(heldout) >= 20
    assert not {d.title for d in train} & {d.title for d in heldout}


def test_the_data_order_and_schedule_depend_on_the_step_alone():
    first = [batch_indices(step, 3, 10, seed=0) for step in range(8)]
    assert all((a == b).all() for a, b in zip(first, [batch_indices(step, 3, 10, seed=0) for step in range(8)]))
    epoch = np.concatenate(first)[:10]
    assert sorted(epoch) == list(range(10))  # every sequence once per epoch
    assert not (batch_indices(0, 3, 10, seed=1) == first[0]).all()
    spec = FAMILIES["gutenberg-neox"]
    rates = [learning_rate(step, 100, spec) for step in range(100)]
    assert max(rates) == pytest.approx(spec.learning_rate) and rates[-1] == pytest.approx(0.1 * spec.learning_rate, rel=0.01)


def test_training_writes_log_spaced_checkpoints_with_records(family, tmp_path):
    data_dir = tmp_path / "data"
    records = train_family(family, data_dir=data_dir, device="cpu", sizes=["d8"], progress=False)
    record = records["d8"]
    assert record["complete"] and record["checkpoint_steps"] == [0, 2, 4, 8] and record["final_step"] == 8
    size_dir = data_dir / "models" / FAMILY / "d8"
    assert stored_steps(size_dir) == [0, 2, 4, 8] and not (size_dir / "resume").exists()
    curve = record["curve"]
    assert [point["tokens"] for point in curve] == [0, 128, 256, 512]
    assert curve[-1]["heldout_loss"] < curve[0]["heldout_loss"]  # it learns something
    assert record["budget"]["tokens"] == 512 and record["budget"]["device"] == "cpu"
    assert {"train_sha256", "heldout_sha256"} <= set(record["data"]) and "torch" in record["versions"]
    # Training again does nothing: the size is current.
    again = train_family(family, data_dir=data_dir, device="cpu", sizes=["d8"], progress=False)
    assert again["d8"]["wall_seconds"] == record["wall_seconds"]


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(family, tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train_family(family, data_dir=whole, device="cpu", sizes=["d8"], progress=False)
    partial = train_family(family, data_dir=resumed, device="cpu", sizes=["d8"], progress=False, stop_after_steps=3)
    assert partial["d8"] == {"complete": False, "step": 3}
    assert stored_steps(resumed / "models" / FAMILY / "d8") == [0, 2]  # only whole checkpoints
    train_family(family, data_dir=resumed, device="cpu", sizes=["d8"], progress=False)
    for step in (4, 8):
        a, b = _weights(whole, "d8", step), _weights(resumed, "d8", step)
        assert all(torch.equal(a[name], b[name]) for name in a)
    # Seeded: the initialization is the family's, and another seed gives other weights.
    assert all(torch.equal(_weights(whole, "d8", 0)[n], _weights(resumed, "d8", 0)[n]) for n in a)


def test_an_interrupted_checkpoint_leaves_nothing_half_written(family, tmp_path, monkeypatch):
    from transformers import GPTNeoXForCausalLM

    data_dir = tmp_path / "data"
    original = GPTNeoXForCausalLM.save_pretrained
    calls = []

    def failing(self, directory, *args, **kwargs):
        calls.append(directory)
        original(self, directory, *args, **kwargs)
        if len(calls) == 2:  # the second checkpoint (step 2): weights written, the rest not yet
            raise KeyboardInterrupt

    monkeypatch.setattr(GPTNeoXForCausalLM, "save_pretrained", failing)
    with pytest.raises(KeyboardInterrupt):
        train_family(family, data_dir=data_dir, device="cpu", sizes=["d8"], progress=False)
    size_dir = data_dir / "models" / FAMILY / "d8"
    assert stored_steps(size_dir) == [0]
    assert not [p for p in size_dir.iterdir() if p.name.startswith(".staging")]
    monkeypatch.setattr(GPTNeoXForCausalLM, "save_pretrained", original)
    train_family(family, data_dir=data_dir, device="cpu", sizes=["d8"], progress=False)
    assert stored_steps(size_dir) == [0, 2, 4, 8]


def test_checkpoints_load_by_name_and_step_with_their_random_twin(family, tmp_path):
    data_dir = tmp_path / "data"
    with pytest.raises(ModelUnavailableError, match="make models"):
        load_model(f"{FAMILY}-d8", data_dir=data_dir)
    train_family(family, data_dir=data_dir, device="cpu", sizes=["d8"], progress=False)
    model, tokenizer = load_model(f"{FAMILY}-d8", data_dir=data_dir)
    early, _ = load_model(f"{FAMILY}-d8", revision="step2", data_dir=data_dir)
    twin, twin_tokenizer = load_model(f"{FAMILY}-d8@random", data_dir=data_dir)
    assert type(model).__name__ == "GPTNeoXForCausalLM" and len(tokenizer) == 300
    assert twin_tokenizer.get_vocab() == tokenizer.get_vocab() and twin.config.hidden_size == 8
    weight = "gpt_neox.embed_in.weight"
    assert not torch.equal(model.state_dict()[weight], early.state_dict()[weight])
    assert not torch.equal(model.state_dict()[weight], twin.state_dict()[weight])
    assert "step-8" in model_location(f"{FAMILY}-d8", data_dir=data_dir).label
    with pytest.raises(ValueError, match="stored steps: step0, step2, step4, step8"):
        load_model(f"{FAMILY}-d8", revision="step3", data_dir=data_dir)
    with pytest.raises(ValueError, match="its sizes are d8, d16"):
        load_model(f"{FAMILY}-d99", data_dir=data_dir)
    with pytest.raises(ModelUnavailableError, match="not trained yet"):
        load_model(f"{FAMILY}-d16", data_dir=data_dir)


def test_the_training_dynamics_plan_lists_every_checkpoint_and_twin(family, tmp_path, monkeypatch):
    monkeypatch.setenv("GREEN_PROFILES_DATA", str(tmp_path / "data"))
    parameters = {"family": FAMILY, "corpus": "gutenberg-heldout", "seq_len": 32, "n_windows": 2,
                  "pythia_models": ["pythia-70m"], "pythia_steps": [0, 1000], "pythia_corpus": "paper-gutenberg",
                  "published": True, "n_boot": 10}
    runs = notebook_runs("training_dynamics", parameters)
    ours = {role: config for role, config in runs.items() if role[0].startswith(FAMILY)}
    assert sorted(ours) == sorted([(f"{FAMILY}-{size}", checkpoint) for size in ("d8", "d16")
                                   for checkpoint in ("step0", "step2", "step4", "step8", "random init")])
    step = ours[(f"{FAMILY}-d8", "step4")]
    assert (step.revision, step.corpus, step.seq_len) == ("step4", "gutenberg-heldout", 32)  # not published
    assert ours[(f"{FAMILY}-d8", "random init")].model == f"{FAMILY}-d8@random"
    pythia = runs[("pythia-70m", "step1000")]
    assert (pythia.revision, pythia.seq_len, pythia.corpus) == ("step1000", 2048, "paper-gutenberg")
    with pytest.raises(ValueError, match="unknown family"):
        notebook_runs("training_dynamics", parameters | {"family": "nothing"})


def test_emergence_finds_the_checkpoint_from_which_the_power_law_stays():
    import pandas as pd

    from green_profiles.analysis.dynamics import emergence, emergence_text

    nan = float("nan")
    rows = [("m", "random init", nan, "flat", nan, nan, nan), ("m", "step0", 0, "flat", nan, nan, nan),
            ("m", "step10", 10, "power law", 1.5, 1.2, 1.8), ("m", "step20", 20, "undecided", 1.1, 0.8, 1.4),
            ("m", "step40", 40, "power law", 0.9, 0.8, 1.0), ("m", "step80", 80, "power law", 0.85, 0.75, 0.95)]
    table = pd.DataFrame(rows, columns=["model", "checkpoint", "tokens", "verdict_word", "p", "p_low", "p_high"])
    table["step"] = table["tokens"]
    item = emergence(table)["m"]
    assert (item["first_power_step"], item["last_not_power"]) == (40, "undecided")  # step 10 does not last
    assert item["settles"] == "intervals overlap" and item["random_verdict"] == "flat"
    text = emergence_text({"m": item})
    assert "the verdict names the power law from step 40" in text
    assert "gap interval" not in text and "wins" not in text  # the verdict no longer reads the gap's interval
    never = emergence(table.assign(verdict_word="undecided"))["m"]
    assert never["first_power_step"] != never["first_power_step"]  # NaN


def test_the_verdict_path_joins_equal_verdicts_in_order_of_training():
    import pandas as pd

    from green_profiles.analysis.dynamics import verdict_path

    nan = float("nan")
    words = ["flat", "flat", "exponential", "undecided", "power law", "power law"]
    steps = [0, 10, 20, 40, 80, 160]
    rows = [("m", f"step{s}", s, w) for s, w in zip(steps, words)][::-1] + [("m", "random init", nan, "rising")]
    table = pd.DataFrame(rows, columns=["model", "checkpoint", "tokens", "verdict_word"])
    table["step"] = table["tokens"]
    assert verdict_path(table) == {"m": "flat from step 0 through 10, exponential at step 20, undecided at step 40, "
                                        "power law from step 80"}
    two = table[table["checkpoint"].isin(["step0", "step10"])]
    single = verdict_path(two.assign(verdict_word=two["step"].map({0: "flat", 10: "neither"})))
    assert single == {"m": "flat at step 0, neither at step 10"}


def test_the_last_two_checkpoints_are_compared_paired_over_the_same_documents():
    """With the bootstraps in the table (as dynamics_table keeps them), the last checkpoint's p is compared
    with the one before by the paired difference over the same resampled documents, not by overlap."""
    import numpy as np
    import pandas as pd

    from green_profiles.analysis.dynamics import emergence
    from green_profiles.analysis.fits import bootstrap_fits

    rng = np.random.default_rng(0)
    r = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256], dtype=float)
    slopes = np.repeat(0.9 + rng.normal(0.0, 0.3, 16), 4)
    rows = (r + 1.0)[None, :] ** -slopes[:, None] * np.exp(rng.normal(0.0, 0.2, (64, r.size)))
    group = np.repeat(np.arange(16), 4)
    before = bootstrap_fits(r, rows, n_boot=300, seed=0, group=group)
    last = bootstrap_fits(r, rows ** 1.1, n_boot=300, seed=0, group=group)
    table = pd.DataFrame([
        {"model": "m", "checkpoint": f"step{step}", "step": step, "tokens": step, "verdict_word": "power law",
         "p": result.point_estimates["p_power_floor"], "p_low": result.intervals["p_power_floor"][0],
         "p_high": result.intervals["p_power_floor"][1], "bootstrap": result}
        for step, result in ((10, before), (20, last))])
    assert table.loc[1, "p_low"] < table.loc[0, "p_high"]  # the intervals overlap
    assert emergence(table)["m"]["settles"].startswith("steeper by +0.")
    assert "(paired)" in emergence(table)["m"]["settles"]


def test_successive_checkpoints_are_compared_with_holm_over_the_models_checkpoints():
    """dynamics_table's p_vs_previous: each checkpoint against the one before (paired), Holm-adjusted over the
    model's comparisons; the last one is what emergence reports as settles."""
    import numpy as np
    import pandas as pd

    from green_profiles.analysis.dynamics import emergence, successive_comparisons
    from green_profiles.analysis.fits import bootstrap_fits

    rng = np.random.default_rng(1)
    r = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256], dtype=float)
    slopes = np.repeat(0.9 + rng.normal(0.0, 0.3, 16), 4)
    rows = (r + 1.0)[None, :] ** -slopes[:, None] * np.exp(rng.normal(0.0, 0.2, (64, r.size)))
    group = np.repeat(np.arange(16), 4)
    results = {step: bootstrap_fits(r, rows ** power, n_boot=200, seed=0, group=group, n_sim=0)
               for step, power in ((10, 1.0), (20, 1.0), (40, 1.3), (80, 1.3))}
    twin = bootstrap_fits(r, rows, n_boot=200, seed=0, group=group, n_sim=0)
    table = pd.DataFrame([
        {"model": "m", "checkpoint": name, "step": step, "tokens": step, "verdict_word": "power law",
         "p": result.point_estimates["p_power_floor"], "p_low": result.intervals["p_power_floor"][0],
         "p_high": result.intervals["p_power_floor"][1], "bootstrap": result}
        for name, step, result in [*((f"step{s}", s, res) for s, res in reversed(results.items())),
                                   ("random init", float("nan"), twin)]])
    compared = successive_comparisons(table)
    by_step = dict(zip(table["checkpoint"], compared.to_dict("records"), strict=True))
    assert by_step["step10"]["p_vs_previous"] == "—" and by_step["random init"]["p_vs_previous"] == "—"
    assert by_step["step20"]["p_vs_previous_pvalue"] == 1.0  # the same rows: no difference at all
    jump = by_step["step40"]
    assert jump["p_vs_previous"].startswith("steeper by +0.") and "over 3 checkpoints" in jump["p_vs_previous"]
    assert jump["p_vs_previous_holm"] == pytest.approx(min(1.0, 3 * jump["p_vs_previous_pvalue"]))
    assert by_step["step80"]["p_vs_previous"].startswith("no difference resolved: +0.00")
    settles = emergence(table.join(compared))["m"]["settles"]
    assert settles == by_step["step80"]["p_vs_previous"]
