"""A local Hugging Face cache that stands in for the paper's downloads.

The ``paper`` settings read five checkpoints and two corpora from the Hugging Face
hub, which CI (and every machine of this project) cannot reach. :func:`build_rehearsal_cache`
writes, under one directory ``HOME``, what those downloads would have left in a
Hugging Face home, in the libraries' own layouts, so that the hub path of
:mod:`green_profiles.models.loading` and :mod:`green_profiles.text` runs end to end with
``HF_HOME=HOME HF_HUB_OFFLINE=1``:

``HOME/hub`` (``HF_HUB_CACHE``)
    ``models--EleutherAI--pythia-14m-deduped`` ... ``models--Qwen--Qwen2.5-0.5B``: each
    with ``refs/main``, ``snapshots/<commit>/`` (``config.json``, ``model.safetensors``,
    ``tokenizer.json``, ``tokenizer_config.json``) as symbolic links into ``blobs/``,
    as huggingface_hub lays out a download. The weights are random (the
    architecture's own initializer under a seed), stored in the checkpoint's dtype
    (float16 Pythia, bfloat16 Qwen); the architecture is the published one
    (:data:`PUBLISHED_CONFIGS`) except for the number of layers where it is cut
    (:data:`DEFAULT_LAYERS`, recorded in the snapshot's ``config.json`` and in the
    manifest). The tokenizer is a stand-in: a byte-level BPE of
    :data:`STAND_IN_VOCAB_SIZE` tokens trained on the stand-in text, shared by all five
    (ids stay far below every model's vocabulary); the real tokenizers' special-token
    conventions are not reproduced.

    ``datasets--Salesforce--wikitext`` and ``datasets--sedthh--gutenberg_english``: the
    corpora as parquet repositories (a dataset card with its ``configs`` and the
    parquet files), as the hub serves them.
``HOME/datasets`` (``HF_DATASETS_CACHE``)
    ``Salesforce___wikitext/wikitext-103-raw-v1/0.0.0/<commit>/`` and
    ``sedthh___gutenberg_english/default/0.0.0/<commit>/``: the Arrow files and
    ``dataset_info.json`` that datasets' own parquet builder prepares from those
    parquet files. This is what ``datasets.load_dataset`` reads in offline mode: with
    ``HF_HUB_OFFLINE`` set it never looks at the hub cache of a dataset repository,
    only at the prepared copy (its ``CachedDatasetModuleFactory``, the ``cache`` builder).
``HOME/rehearsal.json``
    the manifest: what was built from what, the commits, the layer cuts.

The stand-in text is real text available offline, from the project's prepared offline
corpora: WikiText-103's stand-in is the 2016 Wikipedia sample (``wikipedia``) written
in WikiText's raw line format (``" = Title = "`` headings, ``" = = Section k = = "``
headings every few paragraphs, space-separated punctuation, ``" @-@ "``, ``" @,@ "``,
``" @.@ "``), its articles dealt in turn to the splits ``test``, ``validation`` and
``train``; the section headings are inserted here (the prepared sample keeps only
prose), one every :data:`PARAGRAPHS_PER_SECTION` paragraphs. The Gutenberg stand-in has the columns of
``sedthh/gutenberg_english`` (``TEXT``, ``SOURCE``, ``METADATA``): each book of the
``gutenberg`` corpus whole, each preceded by a short row (an opening paragraph of under
2,000 characters) so that the authors' 2,000-character rule has something to drop.
None of this is the paper's data or the paper's models: it rehearses the code path,
not the measurement.

Building is idempotent and safe to interrupt: each repository and each prepared
dataset appears in one rename (:func:`green_profiles.files.storage.atomic_directory`), the
manifest is written last, one builder at a time holds ``HOME/.rehearsal.lock``, and a
part whose recipe (configuration, seed, text) is unchanged is kept as it is. Commits
are the SHA-1 of the repository's file listing (path and blob id), so identical
contents give identical commits.

Command line::

    python tools/rehearsal.py HOME [--layers REPO=N ...] [--models REPO ...] [--seed N]

prints the environment to use the cache with (:func:`rehearsal_environment`), e.g.
``green-profiles run --preset pythia --n-windows 2`` then runs the paper's Pythia path.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from green_profiles.text.documents import Document, corpus_checksum
from green_profiles.text.hub_corpora import WIKITEXT_103
from green_profiles.text.paper import PAPER_SOURCES, PAPER_SPLIT
from green_profiles.files.locations import default_data_dir, file_sha256
from green_profiles.files.storage import STAGING_PREFIX, atomic_directory, atomic_write, exclusive_lock, remove_staging
from green_profiles.models.published import PUBLISHED_CONFIGS, published_config
from green_profiles.models.tokenizer import END_OF_TEXT, train_bpe

__all__ = [
    "DEFAULT_LAYERS", "MANIFEST", "PUBLISHED_CONFIGS", "REHEARSAL_VERSION", "STAND_IN_VOCAB_SIZE",
    "build_rehearsal_cache", "main", "published_config", "rehearsal_environment",
]  # fmt: skip

# Bump when what is built changes: parts recorded with an older version are rebuilt.
REHEARSAL_VERSION = 1
MANIFEST = "rehearsal.json"
# The builder's name written into every stand-in file: the one it had inside the package. It is part of the
# files, so of the snapshots' commits and of every rehearsal run's key; renaming it would measure them all anew.
BUILDER = "green_profiles.rehearsal"
STAND_IN_VOCAB_SIZE = 4096

# Layers kept by default. The paper measures one vector-Jacobian product per (window, target)
# at L = 2048 (Pythia) and L = 4096 (Qwen); on a 2-core CPU a rehearsal can afford that only
# for a few layers of the wide models. Pythia-14m and -70m (6 layers, d <= 512) stay exact:
# they are the paper's headline model and the cheapest real architecture. Pythia-160m
# (12 x 768) and -410m (24 x 1024) keep 2 layers: enough to exercise everything between two
# blocks (residual stream, norms, rotary) while the embedding and the head, which do not get
# cheaper, stay full size. Qwen2.5-0.5B (24 x 896, run at L = 4096) keeps 1: a block there costs
# about 0.4 TFLOP per rehearsed window, and its 9 runs were half of the rehearsal's kernel time with
# 2 blocks; one block still exercises rotary, grouped-query attention and the Qwen2 norms.
DEFAULT_LAYERS: dict[str, int] = {
    "EleutherAI/pythia-160m-deduped": 2,
    "EleutherAI/pythia-410m-deduped": 2,
    "Qwen/Qwen2.5-0.5B": 1,
}

# The corpora, as the loaders ask for them.
WIKITEXT_REPO, WIKITEXT_CONFIG = WIKITEXT_103
WIKITEXT_SPLITS = ("test", "validation", "train")  # article i goes to WIKITEXT_SPLITS[i % 3]
GUTENBERG_REPO = PAPER_SOURCES[0]
GUTENBERG_CONFIG = "default"  # what datasets names the single configuration of a parquet repository
PARAGRAPHS_PER_SECTION = 4
SHORT_ROW_CHARACTERS = (200, 2000)  # an opening paragraph in [200, 2000) characters precedes each book
PARQUET_VERSION = "0.0.0"  # the version datasets gives a parquet repository's configurations

# Gutenberg ebook numbers and authors of the books the offline `gutenberg` corpus holds (by the
# corpus' `source` names), for the stand-in's METADATA column.
_BOOKS: dict[str, tuple[str, int]] = {
    "Sense and Sensibility": ("Austen, Jane", 161),
    "Pride and Prejudice": ("Austen, Jane", 1342),
    "Mansfield Park": ("Austen, Jane", 141),
    "Emma": ("Austen, Jane", 158),
    "Northanger Abbey": ("Austen, Jane", 121),
    "Persuasion": ("Austen, Jane", 105),
    "Moby Dick; or The Whale": ("Melville, Herman", 2701),
    "Botchan (Master Darling)": ("Natsume, Sōseki", 8868),
}


def rehearsal_environment(home: Path) -> dict[str, str]:
    """The environment variables that make huggingface_hub, transformers and datasets read the
    cache under ``home`` and nothing else. The two cache variables are set besides ``HF_HOME``
    because, where a user has them set already, they would take precedence over it."""
    home = Path(home).resolve()
    return {"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_DATASETS_CACHE": str(home / "datasets"),
            "HF_HUB_OFFLINE": "1"}


def build_rehearsal_cache(
    home: Path,
    *,
    models: Iterable[str] | None = None,
    layers: Mapping[str, int] | None = None,
    seed: int = 0,
    data_dir: Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Write (or bring up to date) the rehearsal cache under ``home``; return its manifest.

    Args:
        home: the directory to use as ``HF_HOME``: created if missing; an existing one must be
            empty or a rehearsal cache (it is never mixed with a real Hugging Face home).
        models: the checkpoints to build, as repository ids or the names of
            :data:`green_profiles.models.loading.NAMED_MODELS` (default: all five). Models of an earlier
            build that are not asked for are removed.
        layers: number of transformer layers (blocks) to keep per model, by repository id or
            name, overriding :data:`DEFAULT_LAYERS`; a model's published count means no cut.
        seed: the weight initializer's seed (``torch.manual_seed``), the same for every model.
        data_dir: where the offline corpora the stand-in text comes from are prepared
            (default :func:`green_profiles.files.locations.default_data_dir`; prepared on first use).
        progress: print a line per part built or kept.

    Returns:
        the manifest (also in ``home/rehearsal.json``): ``models`` (repo -> commit, layers,
        published layers, dtype, recipe), ``datasets`` (repo -> config, commit, splits with
        rows and document titles, prepared directory), ``tokenizer``, ``text`` and
        ``environment`` (:func:`rehearsal_environment`).

    Raises:
        FileExistsError: ``home`` holds something that is not a rehearsal cache.
        ValueError: an unknown model or a layer count outside 1 .. the published count.
    """
    home = Path(home).resolve()
    wanted = _requested_layers(models, layers)
    data_dir = Path(data_dir or default_data_dir()).resolve()
    say = print if progress else (lambda *_: None)
    home.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(home / ".rehearsal.lock"):
        previous = _read_manifest(home)
        if not (home / MANIFEST).is_file():  # claim the directory before writing into it
            atomic_write(home / MANIFEST, json.dumps({"rehearsal_version": REHEARSAL_VERSION}) + "\n")
        for directory in (home, home / "hub", home / "datasets"):  # what an interrupted build left
            remove_staging(directory)
        text = _StandInText.load(data_dir)
        tokenizer_recipe = {"kind": "byte-level BPE (tokenizers)", "vocab_size": STAND_IN_VOCAB_SIZE,
                            "special_tokens": [END_OF_TEXT], "text": text.checksums}
        with tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}files.", dir=home) as scratch:
            built_models = _build_models(home, Path(scratch), wanted, seed, text, tokenizer_recipe,
                                         previous.get("models", {}), say)
            built_datasets = _build_datasets(home, Path(scratch), text, previous.get("datasets", {}), say)
        manifest = {
            "rehearsal_version": REHEARSAL_VERSION,
            "seed": seed,
            "text": {"data_dir": str(data_dir), **text.description()},
            "tokenizer": tokenizer_recipe,
            "models": built_models,
            "datasets": built_datasets,
            "environment": rehearsal_environment(home),
        }
        atomic_write(home / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def _build_models(home: Path, scratch: Path, wanted: Mapping[str, int], seed: int, text: _StandInText,
                  tokenizer_recipe: Mapping[str, Any], previous: Mapping[str, Any],
                  say: Callable[[str], None]) -> dict[str, Any]:
    """Each wanted model's repository in the hub cache (kept where its recipe is unchanged); the
    models of ``previous`` that are not wanted are removed. Returns the manifest's ``models``."""
    hub_cache = home / "hub"
    records: dict[str, Any] = {}
    tokenizer = None  # trained once, only when some model is (re)built
    for repo_id, kept in wanted.items():
        published = PUBLISHED_CONFIGS[repo_id]
        layers = f"{kept} of {published['num_hidden_layers']} layers"
        config = {**published, "num_hidden_layers": kept, "green_profiles_rehearsal": _model_note(repo_id, kept, seed)}
        recipe = {"rehearsal_version": REHEARSAL_VERSION, "config": config, "seed": seed, "tokenizer": tokenizer_recipe}
        old = previous.get(repo_id)
        if _is_current(old, recipe) and _hub_repo_is_at(hub_cache, repo_id, "model", old["commit"]):
            records[repo_id] = old
            say(f"kept   {repo_id} ({layers})")
            continue
        if tokenizer is None:
            tokenizer = _train_tokenizer(text.training_texts())
        files = scratch / _safe_name(repo_id)
        _write_model_files(files, config, seed, tokenizer)
        commit = _publish_hub_repo(hub_cache, repo_id, "model", files)
        records[repo_id] = {"commit": commit, "num_hidden_layers": kept,
                            "published_num_hidden_layers": published["num_hidden_layers"],
                            "cut": kept != published["num_hidden_layers"], "dtype": published["torch_dtype"],
                            "recipe": recipe}
        say(f"built  {repo_id} ({layers}) at {commit}")
    for stale in set(previous) - set(wanted):
        shutil.rmtree(hub_cache / _repo_folder(stale, "model"), ignore_errors=True)
        say(f"removed {stale}")
    return records


def _build_datasets(home: Path, scratch: Path, text: _StandInText, previous: Mapping[str, Any],
                    say: Callable[[str], None]) -> dict[str, Any]:
    """The two stand-in corpora, in the hub cache and prepared in the datasets cache (kept where
    their recipe is unchanged). Returns the manifest's ``datasets``."""
    records: dict[str, Any] = {}
    for repo_id, config_name, source, splits in (
        (WIKITEXT_REPO, WIKITEXT_CONFIG, "wikipedia", lambda: _wikitext_splits(text.articles)),
        (GUTENBERG_REPO, GUTENBERG_CONFIG, "gutenberg", lambda: _gutenberg_splits(text.books)),
    ):
        recipe = {"rehearsal_version": REHEARSAL_VERSION, "config": config_name,
                  "text": {source: text.checksums[source]}}
        old = previous.get(repo_id)
        if (_is_current(old, recipe) and _hub_repo_is_at(home / "hub", repo_id, "dataset", old["commit"])
                and (home / old["prepared"]).is_dir()):
            records[repo_id] = old
            say(f"kept   {repo_id} ({config_name})")
            continue
        record = _build_dataset(home, scratch / _safe_name(repo_id), repo_id, config_name, splits())
        records[repo_id] = {**record, "recipe": recipe}
        say(f"built  {repo_id} ({config_name}) at {record['commit']}")
    return records


# --- the request --------------------------------------------------------------------------------------


def _requested_layers(models: Iterable[str] | None, layers: Mapping[str, int] | None) -> dict[str, int]:
    """Repository -> layers to keep, for the models asked for, in PUBLISHED_CONFIGS' order."""
    chosen = set(PUBLISHED_CONFIGS) if models is None else {_repo_id(name) for name in models}
    cuts = dict(DEFAULT_LAYERS)
    for name, count in (layers or {}).items():
        cuts[_repo_id(name)] = count
    wanted = {}
    for repo_id in PUBLISHED_CONFIGS:
        if repo_id not in chosen:
            continue
        published = PUBLISHED_CONFIGS[repo_id]["num_hidden_layers"]
        count = cuts.get(repo_id, published)
        if not isinstance(count, int) or not 1 <= count <= published:
            raise ValueError(f"{repo_id}: keep between 1 and {published} layers, not {count!r}")
        wanted[repo_id] = count
    return wanted


def _repo_id(name: str) -> str:
    """A repository id of PUBLISHED_CONFIGS, from itself or from a NAMED_MODELS name."""
    if name in PUBLISHED_CONFIGS:
        return name
    from green_profiles.models.loading import NAMED_MODELS

    spec = NAMED_MODELS.get(name)
    if spec is not None and spec.source in PUBLISHED_CONFIGS:
        return spec.source
    known = ", ".join(list(PUBLISHED_CONFIGS) + [n for n, s in NAMED_MODELS.items() if s.source in PUBLISHED_CONFIGS])
    raise ValueError(f"unknown model {name!r} for the rehearsal cache: use one of {known}")


def _model_note(repo_id: str, kept: int, seed: int) -> dict[str, Any]:
    """What the snapshot's config.json says about itself (transformers keeps unknown keys as attributes)."""
    return {
        "stand_in_for": repo_id,
        "weights": f"random: the architecture's own initializer under torch.manual_seed({seed})",
        "published_num_hidden_layers": PUBLISHED_CONFIGS[repo_id]["num_hidden_layers"],
        "num_hidden_layers": kept,
        "tokenizer": f"stand-in byte-level BPE, {STAND_IN_VOCAB_SIZE} tokens",
        "built_by": BUILDER,
    }


def _is_current(old: Mapping[str, Any] | None, recipe: Mapping[str, Any]) -> bool:
    return old is not None and old.get("recipe") == json.loads(json.dumps(recipe))


def _read_manifest(home: Path) -> dict[str, Any]:
    """The previous manifest; an empty dict for an empty directory; refuse a directory that is not ours."""
    path = home / MANIFEST
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            return {}  # unreadable: everything is rebuilt
    foreign = [p.name for p in home.iterdir() if not p.name.startswith((".rehearsal", STAGING_PREFIX))]
    if foreign:
        raise FileExistsError(
            f"{home} is not empty ({', '.join(sorted(foreign)[:5])}) and holds no {MANIFEST}: the rehearsal "
            "cache is built only into a new or empty directory (or one it built), never into a real "
            "Hugging Face home, whose downloads its stand-ins would replace"
        )
    return {}


def _safe_name(repo_id: str) -> str:
    return repo_id.replace("/", "--")


# --- the stand-in text ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Book:
    title: str
    chapters: list[Document]

    @property
    def text(self) -> str:
        return "\n\n".join(f"{chapter.title}\n\n{chapter.text}" for chapter in self.chapters)


@dataclass(frozen=True)
class _StandInText:
    """The offline corpora the stand-ins are made of: whole books and Wikipedia articles."""

    books: list[_Book]
    articles: list[Document]
    checksums: dict[str, str]

    @classmethod
    def load(cls, data_dir: Path) -> _StandInText:
        from green_profiles.text import load_corpus

        chapters = load_corpus("gutenberg", data_dir)
        articles = load_corpus("wikipedia", data_dir)
        books: dict[str, list[Document]] = {}
        for chapter in chapters:  # grouped by book, in the corpus' order
            books.setdefault(chapter.source, []).append(chapter)
        return cls(books=[_Book(title, parts) for title, parts in books.items()], articles=articles,
                   checksums={"gutenberg": corpus_checksum(chapters), "wikipedia": corpus_checksum(articles)})

    def training_texts(self) -> list[str]:
        return [book.text for book in self.books] + [article.text for article in self.articles]

    def description(self) -> dict[str, Any]:
        return {"corpus_checksums": self.checksums, "books": [book.title for book in self.books],
                "articles": len(self.articles)}


# --- models ----------------------------------------------------------------------------------------------


def _train_tokenizer(texts: Sequence[str]) -> Any:
    """A byte-level BPE of STAND_IN_VOCAB_SIZE tokens trained on ``texts`` (deterministic), as a
    transformers fast tokenizer whose ``save_pretrained`` writes tokenizer.json and tokenizer_config.json."""
    from transformers import PreTrainedTokenizerFast

    backend = train_bpe(texts, STAND_IN_VOCAB_SIZE)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT)


def _write_model_files(files: Path, config: Mapping[str, Any], seed: int, tokenizer: Any) -> None:
    """config.json (the published facts, the cut and a note), model.safetensors (random weights in
    the checkpoint dtype) and the tokenizer files, into ``files``."""
    import torch
    from transformers import AutoModelForCausalLM

    repo_id = config["green_profiles_rehearsal"]["stand_in_for"]
    architecture = published_config(repo_id, num_hidden_layers=config["num_hidden_layers"])
    # fork_rng: the caller's global RNG stream is not advanced by the initializer.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(architecture, dtype=torch.float32)
    model = model.to(getattr(torch, config["torch_dtype"]))
    saved = files.parent / f"{files.name}.saved"
    with _quiet_transformers():
        model.save_pretrained(saved)  # safetensors; a tied head (Qwen) is stored once, as transformers does
    del model
    files.mkdir(parents=True)
    os.replace(saved / "model.safetensors", files / "model.safetensors")
    shutil.rmtree(saved)
    # The hub's own config.json, not transformers' re-serialization of it (which renames
    # torch_dtype and folds the rotary settings into rope_parameters): the loaders meet the
    # file the hub serves.
    (files / "config.json").write_text(json.dumps(dict(config), indent=2, ensure_ascii=False) + "\n")
    tokenizer.save_pretrained(files)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No progress bar from transformers for the block (a build prints one line per part instead)."""
    from transformers.utils import logging

    shown = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            logging.enable_progress_bar()


# --- the hub cache layout ------------------------------------------------------------------------------


def _repo_folder(repo_id: str, repo_type: str) -> str:
    from huggingface_hub.file_download import repo_folder_name

    return repo_folder_name(repo_id=repo_id, repo_type=repo_type)


def _blob_id(path: Path) -> str:
    """The name huggingface_hub gives a file's blob: the SHA-256 of a Git LFS file (binary formats,
    anything over 10 MB), else the Git blob SHA-1 of a regular file."""
    from huggingface_hub.utils.sha import git_hash

    if path.suffix in (".safetensors", ".parquet", ".bin") or path.stat().st_size > 10 * 2**20:
        return file_sha256(path)
    return git_hash(path.read_bytes())


def _publish_hub_repo(hub_cache: Path, repo_id: str, repo_type: str, files: Path) -> str:
    """Move the files under ``files`` into the hub cache as the ``main`` revision of ``repo_id``.

    The repository folder (``models--org--name`` or ``datasets--org--name``) is filled in a
    staging directory and renamed into place: ``blobs/<id>``, ``snapshots/<commit>/<path>`` as
    relative symbolic links to the blobs, ``refs/main`` holding the commit.

    Returns:
        the commit: SHA-1 of the sorted listing of (path, blob id).
    """
    listing = sorted(path for path in files.rglob("*") if path.is_file())
    entries = [(path.relative_to(files).as_posix(), _blob_id(path), path) for path in listing]
    commit = hashlib.sha1("".join(f"{name}\0{blob}\n" for name, blob, _ in entries).encode()).hexdigest()
    with atomic_directory(hub_cache / _repo_folder(repo_id, repo_type), replace=True) as staging:
        blobs = staging / "blobs"
        blobs.mkdir()
        snapshot = staging / "snapshots" / commit
        for name, blob, path in entries:
            shutil.move(path, blobs / blob)  # a rename: the scratch directory is on the same file system
            link = snapshot / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blobs / blob, link.parent))
        (staging / "refs").mkdir()
        (staging / "refs" / "main").write_text(commit)
    return commit


def _hub_repo_is_at(hub_cache: Path, repo_id: str, repo_type: str, commit: str) -> bool:
    folder = hub_cache / _repo_folder(repo_id, repo_type)
    try:
        return (folder / "refs" / "main").read_text().strip() == commit and (folder / "snapshots" / commit).is_dir()
    except OSError:
        return False


# --- corpora -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Split:
    """One split of a stand-in dataset: its columns (name -> values, in row order) and the documents'
    titles (what a loader should find in it)."""

    columns: dict[str, list[str]]
    titles: list[str]


_WIKITEXT_TOKEN = re.compile(r"(?<=\d)([.,])(?=\d)|(?<=\w)(-)(?=\w)|([.,;:!?()\[\]\"])")


def _wikitext_tokens(text: str) -> str:
    """Text in WikiText's tokenization: punctuation set apart by spaces, a hyphen inside a word
    as " @-@ ", a comma or point inside a number as " @,@ " / " @.@ ", "'s" split off."""

    def token(match: re.Match[str]) -> str:
        inner = match.group(1) or match.group(2)
        return f" @{inner}@ " if inner else f" {match.group(3)} "

    text = re.sub(r"(?<=\w)'s\b", " 's", _WIKITEXT_TOKEN.sub(token, text))
    return " ".join(text.split())


def _wikitext_lines(article: Document) -> list[str]:
    """An article as rows of WikiText's raw dataset: blank rows around headings, one row per paragraph."""
    rows = ["", f" = {_wikitext_tokens(article.title)} = \n", ""]
    paragraphs = [p for p in article.text.split("\n\n") if p.strip()]
    lead = PARAGRAPHS_PER_SECTION // 2
    rows += [f" {_wikitext_tokens(p)} \n" for p in paragraphs[:lead]]
    for number, start in enumerate(range(lead, len(paragraphs), PARAGRAPHS_PER_SECTION), start=1):
        rows += ["", f" = = Section {number} = = \n", ""]
        rows += [f" {_wikitext_tokens(p)} \n" for p in paragraphs[start : start + PARAGRAPHS_PER_SECTION]]
    return rows


def _wikitext_splits(articles: Sequence[Document]) -> dict[str, _Split]:
    """The Wikipedia articles dealt in turn to test, validation and train, in WikiText's line format."""
    splits = {name: _Split({"text": []}, []) for name in WIKITEXT_SPLITS}
    for index, article in enumerate(articles):
        split = splits[WIKITEXT_SPLITS[index % len(WIKITEXT_SPLITS)]]
        split.columns["text"].extend(_wikitext_lines(article))
        split.titles.append(article.title)
    return splits


def _gutenberg_splits(books: Sequence[_Book]) -> dict[str, _Split]:
    """The books as sedthh/gutenberg_english rows (TEXT, SOURCE, METADATA), each whole book preceded
    by a short row: its first paragraph of 200 to 1,999 characters."""
    columns: dict[str, list[str]] = {"TEXT": [], "SOURCE": [], "METADATA": []}
    titles = []
    for book in books:
        author, ebook = _BOOKS.get(book.title, (None, None))
        paragraphs = (p for chapter in book.chapters for p in chapter.text.split("\n\n"))
        opening = next((p for p in paragraphs if SHORT_ROW_CHARACTERS[0] <= len(p) < SHORT_ROW_CHARACTERS[1]), None)
        rows = ([(opening, f"{book.title} (opening paragraph)")] if opening else []) + [(book.text, book.title)]
        for text, title in rows:
            metadata = {"title": title, "authors": author, "language": "en", "text_id": ebook,
                        "stand_in": BUILDER}
            columns["TEXT"].append(text)
            columns["SOURCE"].append("gutenberg")
            columns["METADATA"].append(json.dumps(metadata, ensure_ascii=False))
        titles.append(book.title)
    return {PAPER_SPLIT: _Split(columns, titles)}


def _dataset_card(repo_id: str, config_name: str, data_files: Mapping[str, str]) -> str:
    """README.md with the YAML the hub reads a parquet repository's configurations from."""
    from huggingface_hub import DatasetCardData

    data = DatasetCardData(
        language=["en"],
        configs=[{"config_name": config_name,
                  "data_files": [{"split": split, "path": path} for split, path in data_files.items()]}],
    )
    return (f"---\n{data.to_yaml()}\n---\n\n# Stand-in for {repo_id}\n\nWritten by {BUILDER} "
            "from real text available offline (see its manifest); not the dataset it stands in for.\n")


def _build_dataset(home: Path, files: Path, repo_id: str, config_name: str,
                   splits: Mapping[str, _Split]) -> dict[str, Any]:
    """The dataset repository in the hub cache (parquet files and card), then datasets' own parquet
    builder run on those files, its output renamed into the datasets cache as the prepared copy of
    that commit."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = config_name if config_name != GUTENBERG_CONFIG else "data"
    data_files = {}
    for split, content in splits.items():
        relative = f"{directory}/{split}-00000-of-00001.parquet"
        (files / directory).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(content.columns), files / relative)
        data_files[split] = relative
    (files / "README.md").write_text(_dataset_card(repo_id, config_name, {s: f"{directory}/{s}-*" for s in splits}))
    commit = _publish_hub_repo(home / "hub", repo_id, "dataset", files)
    snapshot = home / "hub" / _repo_folder(repo_id, "dataset") / "snapshots" / commit

    from datasets.naming import camelcase_to_snakecase
    from datasets.packaged_modules.parquet.parquet import Parquet
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    namespace, name = repo_id.split("/")
    dataset_name = camelcase_to_snakecase(name)
    folder = f"{namespace}___{dataset_name}"  # datasets' cache folder of a namespaced repository
    prepared = Path(config_name) / PARQUET_VERSION / commit  # datasets' <config>/<version>/<hash>
    with atomic_directory(home / "datasets" / folder, replace=True) as staging:
        # The builder's hash is the commit, as when datasets loads the repository from the hub; its
        # own lock files go to the scratch directory, its output to the staging directory.
        builder = Parquet(cache_dir=str(files.parent / f"{files.name}.builder"), dataset_name=dataset_name,
                          config_name=config_name, config_id=config_name, hash=commit,
                          data_files={split: [str(snapshot / path)] for split, path in data_files.items()})
        quiet = not are_progress_bars_disabled()
        if quiet:
            disable_progress_bars()
        try:
            builder.download_and_prepare(output_dir=str(staging / prepared))
        finally:
            if quiet:
                enable_progress_bars()
    return {
        "config": config_name,
        "commit": commit,
        "splits": {split: {"rows": len(next(iter(content.columns.values()))), "documents": content.titles}
                   for split, content in splits.items()},
        "prepared": (Path("datasets") / folder / prepared).as_posix(),
    }


# --- command line ---------------------------------------------------------------------------------------


def _layer_argument(text: str) -> tuple[str, int]:
    name, separator, count = text.rpartition("=")
    if not separator or not name or not count.isdigit():
        raise argparse.ArgumentTypeError(f"expected REPO=N (e.g. Qwen/Qwen2.5-0.5B=4), not {text!r}")
    return name, int(count)


def main(argv: list[str] | None = None) -> None:
    """``python tools/rehearsal.py HOME ...``: build the cache, print how to use it."""
    parser = argparse.ArgumentParser(
        prog="python tools/rehearsal.py",
        description="Build a local Hugging Face cache that stands in for the paper's hub downloads "
                    "(random-weight checkpoints of the published architectures, stand-in corpora).",
    )
    parser.add_argument("home", type=Path, help="the directory to use as HF_HOME (new, empty, or built before)")
    parser.add_argument("--layers", type=_layer_argument, action="append", default=[], metavar="REPO=N",
                        help="layers to keep for a model (repo id or name such as pythia-410m); default cuts: "
                             + ", ".join(f"{r}={n}" for r, n in DEFAULT_LAYERS.items()))
    parser.add_argument("--models", nargs="+", metavar="REPO", default=None,
                        help="build only these models (default: all five)")
    parser.add_argument("--seed", type=int, default=0, help="the weight initializer's seed (default 0)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the offline corpora are prepared (default: $GREEN_PROFILES_DATA or ./data)")
    args = parser.parse_args(argv)
    try:
        manifest = build_rehearsal_cache(args.home, models=args.models, layers=dict(args.layers), seed=args.seed,
                                         data_dir=args.data_dir, progress=True)
    except (FileExistsError, ValueError) as error:
        parser.error(str(error))
    environment = manifest["environment"]
    print("\nUse the cache with:\n  export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in environment.items()))


if __name__ == "__main__":
    main()
