# The README's commands. Each target sets up what it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean interop-setup interop

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/compute-worker serve --dev

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/world_events.py

# Workflow DevKit interop (interop/README.md): pinned npm packages, Node 22 from the npm
# registry when the machine's node is older, Debian's chromium for the web UI check.
NPM_CI := npm ci --ignore-scripts --no-audit --no-fund --prefer-offline

interop-setup:
	cd interop/world-compute && $(NPM_CI) && npm run build
	cd interop/world-testing && $(NPM_CI)
	cd interop/web && $(NPM_CI)
	cd interop/app && $(NPM_CI) && PATH="$$(dirname "$$(../scripts/node-bin.sh)"):$$PATH" npx workflow build
	interop/scripts/ensure-chromium.sh

interop: $(STAMP) interop-setup
	cd interop/world-compute && npm test
	interop/world-testing/queue-check.sh
	interop/run-all.sh

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
	rm -rf interop/*/node_modules interop/world-compute/dist interop/app/.well-known
