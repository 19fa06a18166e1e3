# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNS_DIR ?= runs

.PHONY: demo test lint install dev clean studio graph bench autogluon

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The checkout is installed in "strict" editable mode: site-packages gets a tree of links named
# `tandem/` (in build/), which type checkers can read, unlike the default mode's import hook. Edits
# show at once; a module added or removed needs a reinstall, so the stamp's name carries a hash of
# the package's file list (its code, its data and the shipped policy).
PACKAGE_FILES := $(shell find app graph nodes tools benchmarks -name '*.py' -o -name '*.toml' -o -name '*.csv.gz' -o -path 'tools/policies/*.json' 2>/dev/null | sort | cksum | cut -d' ' -f1)
INSTALLED := $(VENV)/.installed-$(PACKAGE_FILES)
STRICT := --config-settings editable_mode=strict

$(INSTALLED): pyproject.toml | $(BIN)/python
	rm -f $(VENV)/.installed-* $(VENV)/.dev-installed-*
	$(BIN)/python -m pip install --quiet $(STRICT) -e .
	touch $@

$(VENV)/.dev-installed-$(PACKAGE_FILES): pyproject.toml $(INSTALLED)
	$(BIN)/python -m pip install --quiet $(STRICT) -e ".[dev]"
	touch $@

install: $(INSTALLED)

dev: $(VENV)/.dev-installed-$(PACKAGE_FILES)

## A real improvement run on the bundled Titanic data with the offline agents.
demo: install
	$(BIN)/tandem run examples/data/titanic.csv --target Survived --runs-dir $(RUNS_DIR)

## The whole test suite, its files spread over every core (installs the dev extras first, and
## Debian's chromium for the report test). Files go to the workers in collection order: xdist's
## default sorts them by number of tests, which puts this suite's few-test, whole-run files (the
## notebooks, the end-to-end rewards) last, where one worker runs them while the other idles.
test: dev
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

## LangGraph Studio's local server (in-memory, fully offline). Its state and the run folders go to
## STUDIO_HOME, outside the source tree, and it does not reload on code changes (a reload kills runs).
## The Studio web page it prints is hosted by LangChain and needs the internet; the API does not.
## The port is the first free one from 2024 (LangGraph's usual port) unless STUDIO_PORT is given.
## Runs may only read CSVs inside STUDIO_DATA (the bundled examples unless given); the guard that
## keeps other web pages out lives in langgraph.json and tandem.studio (docs/security.md).
STUDIO_PORT ?= $(shell $(PYTHON) -c "import socket as s; print(next(p for p in range(2024, 2124) if s.socket().connect_ex(('127.0.0.1', p))))")
STUDIO_HOME ?= $(HOME)/.cache/tandem-studio
STUDIO_DATA ?= $(CURDIR)/examples/data
studio: dev
	mkdir -p "$(STUDIO_HOME)/runs"
	cd "$(STUDIO_HOME)" && exec env LANGGRAPH_CLI_NO_ANALYTICS=1 LANGGRAPH_NO_VERSION_CHECK=true LANGSMITH_TRACING=false \
		TANDEM_RUNS_DIR="$(STUDIO_HOME)/runs" TANDEM_DATA_DIR="$(abspath $(STUDIO_DATA))" \
		"$(abspath $(BIN))/langgraph" dev --config "$(CURDIR)/langgraph.json" \
		--host 127.0.0.1 --port $(STUDIO_PORT) --no-browser --no-reload

## AutoGluon as a benchmark player (`tandem bench --players autogluon`), in its own venv: AutoGluon
## 1.6 pins pandas<2.4 and tandem runs pandas 3. Pinned in requirements-autogluon.txt; tree models
## only (no torch, no weights). Measured: 103 s and 1.1 GB on a 2-core machine. Not part of `make test`.
AUTOGLUON_VENV := .venv-autogluon
autogluon: $(AUTOGLUON_VENV)/.installed
$(AUTOGLUON_VENV)/.installed: requirements-autogluon.txt
	$(PYTHON) -m venv $(AUTOGLUON_VENV)
	$(AUTOGLUON_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AUTOGLUON_VENV)/bin/python -m pip install --quiet -r requirements-autogluon.txt
	touch $@

## The graph as Mermaid (printed) and as a PNG (docs/graph.png).
graph: install
	$(BIN)/tandem graph -o docs/graph.png

lint: dev
	$(BIN)/ruff check .
	$(BIN)/mypy

## Re-measure the published benchmark and regenerate docs/benchmarks.md: the command the page shows
## (21 tasks x 3 seeds x 5 players at 60 s: about 4 hours on 2 CPUs; a stopped bench goes on with
## `tandem bench --resume ID`). Results are appended to benchmarks/results/results.sqlite, never overwritten.
bench: install autogluon
	$(BIN)/python -m pip install --quiet $(STRICT) -e ".[bench,rl]"
	$(BIN)/tandem bench --players tandem,linear,lightgbm,autogluon,flaml --budget 60 --seeds 0,1,2 \
		--results-dir benchmarks/results
	$(BIN)/tandem league --results-dir benchmarks/results --rounds 20
	$(BIN)/python scripts/speed.py all
	$(BIN)/python scripts/benchmarks_doc.py

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache *.egg-info
