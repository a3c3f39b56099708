# The README's commands. Each target sets up what it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# `make run PORT=9090 HOST=0.0.0.0 ARGS='--worldcompute local'`: HOST and PORT count only
# when given on the make command line (a shell's own HOST or PORT is not a request to
# bind there); ARGS are passed to `compute-worker serve` as they are.
HOST_FLAG = $(if $(filter command line,$(origin HOST)),--host '$(HOST)')
PORT_FLAG = $(if $(filter command line,$(origin PORT)),--port '$(PORT)')

.PHONY: run test lint bench clean settings-doc

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/compute-worker serve --dev $(HOST_FLAG) $(PORT_FLAG) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

# rewrite README.md's Configuration table from the settings definition (src/app/settings.py)
settings-doc: $(STAMP)
	$(BIN)/python -m app.settings_doc --write README.md

bench: $(STAMP)
	$(BIN)/python bench/world_events.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
