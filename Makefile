# The README's commands. Each target sets up what it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean settings-doc

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/compute-worker serve --dev

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
