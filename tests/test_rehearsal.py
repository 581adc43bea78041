"""The rehearsal cache: the paper's hub path (five checkpoints, WikiText-103, the authors' Gutenberg
source) run offline from a local Hugging Face cache in the hub's and datasets' own layouts.

huggingface_hub and datasets read HF_HOME and HF_HUB_OFFLINE when they are imported, so the loaders
are exercised in a subprocess started with the cache's environment: what a user (or CI) does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import green_profiles
from rehearsal import (
    DEFAULT_LAYERS,
    MANIFEST,
    PUBLISHED_CONFIGS,
    build_rehearsal_cache,
    main,
    published_config,
    rehearsal_environment,
)

PYTHIA_14M = "EleutherAI/pythia-14m-deduped"
QWEN = "Qwen/Qwen2.5-0.5B"
# The module's cache: Pythia-14m exact (6 layers) and Qwen2.5-0.5B cut to one layer, to stay quick.
MODELS = ("pythia-14m", "qwen2.5-0.5b")
LAYERS = {QWEN: 1}

# Published sizes: (total parameters, non-embedding parameters). Pythia: the EleutherAI/pythia README's
# table lists the non-embedding counts (1,189,888 / 18,915,328 / 85,056,000 / 302,311,424); the totals add
# the untied input and output embeddings, 2 x 50,304 x d. Qwen2.5-0.5B: its model card gives 0.49B and
# 0.36B; the exact counts follow from the config by hand (tied head counted once; q/k/v with biases;
# 2 key/value heads of 64 dimensions): 151,936 x 896 + 24 x 14,912,384 + 896.
PUBLISHED_SIZES = {
    PYTHIA_14M: (14_067_712, 1_189_888),
    "EleutherAI/pythia-70m-deduped": (70_426_624, 18_915_328),
    "EleutherAI/pythia-160m-deduped": (162_322_944, 85_056_000),
    "EleutherAI/pythia-410m-deduped": (405_334_016, 302_311_424),
    QWEN: (494_032_768, 357_898_112),
}


@pytest.fixture(scope="module")
def data_dir(session_data_dir: Path) -> Path:
    """Where the stand-in text's offline corpora are prepared: the session's own data directory."""
    return session_data_dir


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, dict]:
    home = tmp_path_factory.mktemp("rehearsal") / "hf-home"
    return home, build_rehearsal_cache(home, models=MODELS, layers=LAYERS, data_dir=data_dir)


def run_offline(home: Path, script: str, *args: str) -> dict:
    """Run ``script`` in a fresh interpreter with the cache's environment; it prints one JSON object."""
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    environment.update(rehearsal_environment(home))
    source = str(Path(green_profiles.__file__).resolve().parents[1])  # this checkout's package
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [source, environment.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", script, *args], env=environment, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


LOADERS = r"""
import json, sys
import torch
from green_profiles.text import load_corpus
from green_profiles.models.loading import load_model, model_location

out = {}
location = model_location("pythia-14m")
out["pythia"] = {"commit": location.commit, "cached": location.cached, "repo": location.repo_id}
model, tokenizer = load_model("pythia-14m")
ids = tokenizer("Call me Ishmael. Some years ago - never mind how long", add_special_tokens=False)["input_ids"]
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits
out["pythia"].update(layers=model.config.num_hidden_layers, logits=list(logits.shape),
                     finite=bool(torch.isfinite(logits).all()), dtype=str(model.dtype), max_id=max(ids))
location = model_location("qwen2.5-0.5b@random")
model, tokenizer = load_model("qwen2.5-0.5b@random", seed=3)
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits
out["qwen"] = {"commit": location.commit, "layers": model.config.num_hidden_layers, "logits": list(logits.shape),
               "type": type(model).__name__}
articles = load_corpus("wikitext-103", split="test")
out["wikitext"] = [{"title": d.title, "text": d.text} for d in articles]
books = load_corpus("paper-gutenberg", data_dir=sys.argv[1])
out["paper"] = [{"title": d.title, "source": d.source, "n_chars": len(d.text)} for d in books]
with open(f"{sys.argv[1]}/corpora/paper-gutenberg.manifest.json") as handle:
    out["paper_manifest"] = json.load(handle)
print(json.dumps(out))
"""

ERRORS = r"""
import json, sys
from green_profiles.text import load_corpus
from green_profiles.models.loading import load_model

out = {}
for key, call in (("model", lambda: load_model("pythia-14m")),
                  ("wikitext", lambda: load_corpus("wikitext-103", split="test")),
                  ("paper", lambda: load_corpus("paper-gutenberg", data_dir=sys.argv[1]))):
    try:
        call()
        out[key] = None
    except Exception as error:
        out[key] = [type(error).__name__, str(error)]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def offline(rehearsal: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> dict:
    home, _ = rehearsal
    return run_offline(home, LOADERS, str(tmp_path_factory.mktemp("paper-data")))


def snapshot(home: Path, manifest: dict, repo_id: str) -> Path:
    folder = "models--" + repo_id.replace("/", "--")
    return home / "hub" / folder / "snapshots" / manifest["models"][repo_id]["commit"]


def test_published_parameter_counts_of_the_uncut_architectures():
    for repo_id, (total, non_embedding) in PUBLISHED_SIZES.items():
        config = published_config(repo_id)
        with torch.device("meta"):  # shapes only, no memory
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_config(config)
        counted = sum(p.numel() for p in model.parameters())  # a tied head is one parameter
        embeddings = config.vocab_size * config.hidden_size * (1 if config.tie_word_embeddings else 2)
        assert (counted, counted - embeddings) == (total, non_embedding), repo_id
    assert (round(PUBLISHED_SIZES[QWEN][0] / 1e9, 2), round(PUBLISHED_SIZES[QWEN][1] / 1e9, 2)) == (0.49, 0.36)


def test_built_configs_are_the_published_ones_except_the_recorded_cut(rehearsal):
    from safetensors import safe_open
    from transformers import AutoConfig

    home, manifest = rehearsal
    assert set(manifest["models"]) == {PYTHIA_14M, QWEN}
    for repo_id, record in manifest["models"].items():
        published = PUBLISHED_CONFIGS[repo_id]
        layers = published["num_hidden_layers"]
        kept = LAYERS.get(repo_id, DEFAULT_LAYERS.get(repo_id, layers))
        assert (record["num_hidden_layers"], record["published_num_hidden_layers"], record["cut"]) == (
            kept, layers, kept != layers)
        written = json.loads((snapshot(home, manifest, repo_id) / "config.json").read_text())
        note = written.pop("green_profiles_rehearsal")
        assert written == {**published, "num_hidden_layers": kept}
        assert (note["published_num_hidden_layers"], note["num_hidden_layers"]) == (layers, kept)
        # transformers reads the hub's legacy keys into its own fields.
        config = AutoConfig.from_pretrained(snapshot(home, manifest, repo_id))
        assert str(config.dtype).removeprefix("torch.") == published["torch_dtype"]
        theta = published.get("rope_theta", published.get("rotary_emb_base"))
        assert config.rope_parameters["rope_theta"] == theta
        assert config.rope_parameters.get("partial_rotary_factor", 1.0) == published.get("rotary_pct", 1.0)
        with safe_open(snapshot(home, manifest, repo_id) / "model.safetensors", framework="pt") as weights:
            dtypes = {weights.get_slice(name).get_dtype() for name in weights.keys()}
            layers = {int(name.split(".")[2]) for name in weights.keys() if ".layers." in name}
        assert dtypes == {"F16" if published["torch_dtype"] == "float16" else "BF16"}
        assert layers == set(range(kept))
    assert DEFAULT_LAYERS == {"EleutherAI/pythia-160m-deduped": 2, "EleutherAI/pythia-410m-deduped": 2, QWEN: 1}


def test_cache_has_the_hub_layout(rehearsal):
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    home, manifest = rehearsal
    scanned = scan_cache_dir(home / "hub")
    assert not scanned.warnings
    repos = {(repo.repo_id, repo.repo_type): repo for repo in scanned.repos}
    expected = {(PYTHIA_14M, "model"), (QWEN, "model"), ("Salesforce/wikitext", "dataset"),
                ("sedthh/gutenberg_english", "dataset")}
    assert set(repos) == expected
    for (repo_id, repo_type), repo in repos.items():
        commit = (manifest["models"] if repo_type == "model" else manifest["datasets"])[repo_id]["commit"]
        assert [revision.commit_hash for revision in repo.revisions] == [commit] and "main" in repo.refs
    found = try_to_load_from_cache(PYTHIA_14M, "model.safetensors", cache_dir=home / "hub")
    assert found is not None and Path(found).parent.name == manifest["models"][PYTHIA_14M]["commit"]
    assert (home / manifest["datasets"]["Salesforce/wikitext"]["prepared"] / "dataset_info.json").is_file()
    assert manifest["environment"]["HF_HOME"] == str(home) and manifest["environment"]["HF_HUB_OFFLINE"] == "1"


def test_rebuilding_is_idempotent_and_a_real_home_is_refused(rehearsal, data_dir, tmp_path, capsys):
    home, manifest = rehearsal
    weights = snapshot(home, manifest, PYTHIA_14M) / "model.safetensors"
    before = os.stat(weights.resolve()).st_mtime_ns
    main([str(home), "--models", *MODELS, "--layers", f"{QWEN}=1", "--data-dir", str(data_dir)])
    printed = capsys.readouterr().out
    assert f"kept   {PYTHIA_14M}" in printed and "export HF_HOME=" in printed and "HF_HUB_OFFLINE=1" in printed
    assert json.loads((home / MANIFEST).read_text()) == manifest
    assert os.stat(weights.resolve()).st_mtime_ns == before
    foreign = tmp_path / "real-hf-home"
    (foreign / "hub").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="never into a real"):
        build_rehearsal_cache(foreign, models=[], data_dir=data_dir)
    with pytest.raises(ValueError, match="between 1 and 6 layers"):
        build_rehearsal_cache(tmp_path / "new", layers={"pythia-14m": 7})


def test_hub_models_load_offline_at_the_snapshot_commit(rehearsal, offline):
    _, manifest = rehearsal
    pythia = offline["pythia"]
    assert pythia["commit"] == manifest["models"][PYTHIA_14M]["commit"] and pythia["cached"]
    assert pythia["layers"] == 6 and pythia["dtype"] == "torch.float32"  # fp16 checkpoint, float32 on a CPU
    assert pythia["finite"] and pythia["logits"][0] == 1 and pythia["logits"][2] == 50304
    assert pythia["max_id"] < 4096  # the stand-in tokenizer's ids, far below the vocabulary
    qwen = offline["qwen"]
    assert qwen == {"commit": manifest["models"][QWEN]["commit"], "layers": 1, "type": "Qwen2ForCausalLM",
                    "logits": [1, pythia["logits"][1], 151936]}


def test_wikitext_loads_from_the_datasets_cache_split_at_titles(rehearsal, offline):
    _, manifest = rehearsal
    articles = offline["wikitext"]
    expected = manifest["datasets"]["Salesforce/wikitext"]["splits"]["test"]["documents"]
    # WikiText's tokenization spaces out the titles' punctuation ("Animalia ( book )").
    assert ["".join(a["title"].split()) for a in articles] == ["".join(t.split()) for t in expected]
    assert not any("@-@" in a["text"] or "@,@" in a["text"] or " = " + a["title"] + " = " in a["text"]
                   for a in articles)
    assert any(" = = Section 1 = = " in a["text"] for a in articles)  # sections stay inside their article
    assert any("-" in a["text"] for a in articles)
    # Long enough for the paper's windows: 4,097 stand-in tokens is roughly 16,000 characters.
    assert sum(len(a["text"]) > 20_000 for a in articles) >= 8


def test_paper_gutenberg_builds_from_the_cached_source(rehearsal, offline):
    _, manifest = rehearsal
    books = offline["paper"]
    source = manifest["datasets"]["sedthh/gutenberg_english"]["splits"]["train"]
    assert len(books) == len(source["documents"]) and source["rows"] == 2 * len(books)  # short rows dropped
    assert all(book["n_chars"] >= 2000 and book["source"] == "sedthh/gutenberg_english" for book in books)
    # Stream order: each book is the row after its short opening paragraph.
    assert [book["title"] for book in books] == [f"sedthh/gutenberg_english#{2 * i + 1}" for i in range(len(books))]


def test_paper_gutenberg_manifest_names_the_source(rehearsal, offline):
    home, _ = rehearsal
    manifest = offline["paper_manifest"]
    assert (manifest["source_dataset"], manifest["split"], manifest["text_column"]) == (
        "sedthh/gutenberg_english", "train", "TEXT")
    assert manifest["read_from"] == f"the local Hugging Face datasets cache ({home / 'datasets'})"
    assert manifest["documents"] == len(offline["paper"]) and manifest["examples_scanned"] == 2 * len(offline["paper"])


def test_an_empty_cache_fails_naming_the_offline_mode(tmp_path):
    home = tmp_path / "empty-home"
    home.mkdir()
    errors = run_offline(home, ERRORS, str(tmp_path / "data"))
    offline = "the hub client is in offline mode (HF_HUB_OFFLINE is set)"
    assert errors["model"][0] == "ModelUnavailableError" and offline in errors["model"][1]
    assert errors["wikitext"][0] == "CorpusUnavailableError" and offline in errors["wikitext"][1]
    kind, message = errors["paper"]
    assert kind == "CorpusUnavailableError" and offline in message
    assert "none of the authors' sources" in message and str(home / "datasets") in message
