# One command each: `make test` and `make book` set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: setup test bench book clean-venv

setup: $(INSTALLED)

# The environment is rebuilt only when the pinned requirements or the package metadata change.
$(INSTALLED): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

test: $(INSTALLED)
	$(PY) -m pytest

bench: $(INSTALLED)
	$(PY) benchmarks/bench_jacobian.py

book: $(INSTALLED)
	@echo "make book: the notebooks and the book arrive with the book issue; nothing to build yet."

clean-venv:
	rm -rf $(VENV)
