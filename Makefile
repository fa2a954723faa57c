# The one interface. Every target sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test soak chaos bench lint format clean layer package node_modules system-deps checkov

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,aws,dev]'
	touch $@

demo: $(STAMP)  ## the whole pipeline locally, offline: simulator -> capture -> lake -> DuckDB
	$(BIN)/tradelake demo

test: $(STAMP) package system-deps checkov  ## unit, integration and infra tests (packages the stack first)
	$(BIN)/pytest

# Chromium, for the test that opens `tradelake report` in a browser, and jq (Debian's is jq 1.6,
# the engine of Firehose's JQ-1.6 partitioning query: tests/infra/test_jq.py). Installed only as
# root (CI runs as root on a fresh Debian machine); otherwise those tests skip and say how.
system-deps:  ## Debian packages the tests use (chromium, jq), when missing and running as root
	@missing=""; for p in chromium jq; do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	else \
		echo "make system-deps:$$missing missing and only root with apt-get installs it: the" \
			"tests that need it will be SKIPPED (sudo make system-deps)" >&2; \
	fi

soak: $(STAMP)  ## the exactly-once property test with 5,000 examples (make test runs 400)
	TRADELAKE_EXAMPLES=5000 $(BIN)/pytest -p no:logging -o timeout=1800 tests/unit/test_exactly_once.py

chaos: $(STAMP)  ## the fault-injection suite at scale 4, printing every fault it injected (make test runs scale 1)
	TRADELAKE_CHAOS_SCALE=4 $(BIN)/pytest -p no:logging -o timeout=1800 tests/chaos

# Issue 10's measurements (docs/BENCHMARKS.md, written by bench/run.py): minutes, and the heavy
# parts want a quiet machine. The cryptofeed comparison needs its own venv (bench/cryptofeed-venv.sh);
# the cost model reads the packaged template. The 10 M-trade lake is kept in BENCH_WORK
# (default /tmp/tradelake-bench) and reused.
bench: $(STAMP) package  ## measure everything of issue 10, write docs/BENCHMARKS.md, print the table
	bench/cryptofeed-venv.sh
	$(BIN)/python bench/run.py

lint: $(STAMP)  ## ruff check, ruff format --check, mypy (the package, then bench/)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy bench

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) lake lake-demo .pytest_cache .mypy_cache .ruff_cache .hypothesis \
		.serverless node_modules layers/deps/python $(CHECKOV_VENV)

# --- AWS packaging (DEVELOPERS.md): Node CLI, the arm64 deps layer, offline `serverless package`.
NPM_STAMP := node_modules/.tradelake-installed
LAYER_DIR := layers/deps/python
LAYER_STAMP := $(LAYER_DIR)/.installed
TEMPLATE := .serverless/cloudformation-template-update-stack.json
# Offline packaging: the local plugin (.serverless_plugins/offline-package.js) skips the layer
# step's CloudFormation look-up and fails any other AWS call; no telemetry, no update checks.
SLS_ENV := SLS_OFFLINE_PACKAGE=1 SLS_TELEMETRY_DISABLED=1 SLS_TRACKING_DISABLED=1 \
	SLS_NOTIFICATIONS_MODE=off
PACKAGE_ARGS := --stage ci --region eu-west-1 --param="alarmEmail=alarms@example.com"

$(NPM_STAMP): package.json package-lock.json .npmrc
	npm ci --no-audit --no-fund
	touch $@

node_modules: $(NPM_STAMP)  ## the pinned Serverless CLI (osls) and plugins, from the lock file

# Runtime dependencies for python3.12 on arm64 (Graviton), never the host's wheels; then the
# check that every compiled file is aarch64 and cp312/abi3.
$(LAYER_STAMP): layers/deps/requirements.txt scripts/check_layer.py | $(STAMP)
	rm -rf $(LAYER_DIR)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		--platform manylinux2014_aarch64 --implementation cp --python-version 3.12 \
		--only-binary=:all: --no-deps --no-compile \
		--target $(LAYER_DIR) -r layers/deps/requirements.txt
	$(BIN)/python scripts/check_layer.py $(LAYER_DIR)
	touch $@

layer: $(LAYER_STAMP)  ## build layers/deps/python for python3.12 / arm64 and check it

package: $(NPM_STAMP) $(LAYER_STAMP) $(STAMP)  ## serverless package, offline, then cfn-lint
	$(SLS_ENV) node_modules/.bin/osls package $(PACKAGE_ARGS)
	$(BIN)/cfn-lint $(TEMPLATE)

# checkov, run on the packaged template by tests/infra/test_checkov.py, in a venv of its own: its
# exact pins (boto3, pydantic, networkx, ...) would fight cfn-lint's and moto's in .venv. The stamp
# names the version, so a new CHECKOV_VERSION reinstalls; the venv ignores itself for git.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	echo '*' > $(CHECKOV_VENV)/.gitignore
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		checkov==$(CHECKOV_VERSION)
	touch $@

checkov: $(CHECKOV_STAMP)  ## checkov $(CHECKOV_VERSION) in .venv-checkov (make test needs it)
