# The commands people and CI use. `make run` and `make test` do all the setup themselves.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Some machines' pip config lists local package folders that do not exist: hide those warnings.
QUIET_PIP := { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: setup run test test-fast lint typecheck bench clean lock docs

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --require-hashes -r requirements.lock 2>&1 | $(QUIET_PIP)
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e . 2>&1 | $(QUIET_PIP)
	touch $(STAMP)

setup: $(STAMP)

## The nightly linkage on the built-in demo agencies (generates them if absent).
run: setup
	$(BIN)/linkage run

## The whole test suite (what CI runs).
test: setup
	$(BIN)/pytest

test-fast: setup
	$(BIN)/pytest -m "not slow"

lint: setup
	$(BIN)/ruff check linkage flows schemas tests bench
	$(BIN)/ruff format --check linkage flows schemas tests bench

typecheck: setup
	$(BIN)/mypy linkage flows schemas

bench: setup
	$(BIN)/python bench/run_demo.py

## Re-resolve the lock file after changing dependencies in pyproject.toml.
lock:
	$(PYTHON) -m pip install -q uv && $(PYTHON) -m uv pip compile pyproject.toml --extra dev -p 3.11 --generate-hashes -o requirements.lock

clean:
	rm -rf out/ data/demo/ .pytest_cache

## Regenerate the generated docs (a test fails when they drift from the code).
docs: setup
	$(BIN)/python -c "from schemas.canonical import render_markdown as r; open('docs/canonical-record.md', 'w').write(r())"
	$(BIN)/python -c "from schemas.dictionary import render_data_dictionary as r; open('docs/data-dictionary.md', 'w').write(r())"
