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

.PHONY: run test lint bench attack chaos clean settings-doc screenshots interop-setup interop

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# bubblewrap boxes workflow children (README: Threat model): installed from Debian's apt
# when missing and we may (root, or sudo without a password); else a note, and the
# worker says at start-up that it runs children unboxed.
sandbox-setup:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -qq bubblewrap >/dev/null || { apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; }; \
	  elif command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	    sudo -n apt-get install -y -qq bubblewrap >/dev/null; \
	  fi; \
	  command -v bwrap >/dev/null 2>&1 || echo "note: bubblewrap is not installed: workflow children are not sandboxed"; }

run: $(STAMP) sandbox-setup
	$(BIN)/compute-worker serve --dev $(HOST_FLAG) $(PORT_FLAG) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports

# the dashboard tests drive Debian's chromium (installed here when missing)
test: lint sandbox-setup
	interop/scripts/ensure-chromium.sh
	$(BIN)/pytest

# the attack suite, long: hostile workflow code (5 saturation rounds), schemathesis with
# 100 examples per operation, and the sandbox, watchdog and child-key tests it builds on
attack: $(STAMP) sandbox-setup
	COMPUTE_WORKER_ATTACK_ROUNDS=5 COMPUTE_WORKER_FUZZ_EXAMPLES=100 $(BIN)/pytest -q -s \
		tests/integration/test_attack.py tests/integration/test_openapi_fuzz.py \
		tests/integration/test_sandbox.py tests/integration/test_workflow_watchdog.py \
		tests/integration/test_child_credentials.py

# the chaos suite, long: kill -9 cycles on SQLite and PostgreSQL (two workers), and a
# PostgreSQL cluster of its own restarted every 5-40 s; prints the figures
chaos: $(STAMP)
	COMPUTE_WORKER_CHAOS_RUNS=200 COMPUTE_WORKER_CHAOS_CYCLES=10 $(BIN)/pytest -q -s \
		tests/integration/test_chaos.py

# the README's dashboard screenshots (docs/img/), taken by the dashboard's browser test
screenshots: $(STAMP)
	interop/scripts/ensure-chromium.sh
	COMPUTE_WORKER_SCREENSHOTS=1 $(BIN)/pytest tests/integration/test_dashboard.py -q

# rewrite README.md's Configuration table from the settings definition (src/app/settings.py)
settings-doc: $(STAMP)
	$(BIN)/python -m compute_worker.app.settings_doc --write README.md

bench: $(STAMP)
	$(BIN)/python bench/world_events.py
	$(BIN)/python bench/suite.py
	$(BIN)/python bench/wdk.py

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
