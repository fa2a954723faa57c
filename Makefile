# The one interface. Every target sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# --- The compiled hot path (DEVELOPERS.md): tradelake._hotpath, one C file, two builds, both on
# CPython's limited API (abi3 for 3.11+), so no build is tied to one CPython minor version.
HOTPATH_DIR := layers/core/python/tradelake
HOTPATH_C := $(HOTPATH_DIR)/_hotpath.c
# The host's, for .venv, tests and bench: compiled with the host's cc by the editable install
# (setup.py), in place; rebuilt the same way when the C file changes.
HOTPATH_HOST := $(HOTPATH_DIR)/_hotpath.abi3.so
# The Lambda's (python3.12 on Graviton, Amazon Linux 2023 = glibc 2.34), cross-compiled with zig
# (the `ziglang` wheel of the dev extra). Its tag is the one CPython 3.12 on aarch64 tries first,
# so it never shadows the host's build, and it is the only one the core layer ships. The flags
# repeat what setuptools gives the host's build (-DNDEBUG -fwrapv), so both builds mean the same C.
HOTPATH_LAMBDA := $(HOTPATH_DIR)/_hotpath.cpython-312-aarch64-linux-gnu.so
LAMBDA_TARGET := aarch64-linux-gnu.2.34
HOTPATH_CFLAGS := -DPy_LIMITED_API=0x030B0000 -O2 -DNDEBUG -fwrapv -Wall -Wextra

.PHONY: demo test soak chaos bench lint format clean layer package node_modules system-deps checkov \
	hotpath

# The editable install also compiles the C hot path in place (setup.py, HOTPATH_HOST above).
$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,aws,dev]'
	touch $@

demo: $(STAMP) $(HOTPATH_HOST)  ## the whole pipeline locally, offline: simulator -> capture -> lake -> DuckDB
	$(BIN)/tradelake demo

test: $(STAMP) $(HOTPATH_HOST) package system-deps checkov  ## unit, integration and infra tests (packages the stack first)
	$(BIN)/pytest

# Chromium, for the test that opens `tradelake report` in a browser, jq (Debian's is jq 1.6,
# the engine of Firehose's JQ-1.6 partitioning query: tests/infra/test_jq.py), and qemu with an
# arm64 CPython (Debian's, unpacked in ARM64_ROOT by scripts/arm64_python.sh), to run the Lambda's
# build of the hot path (tests/infra/test_hotpath_build.py). Installed only as root (CI runs as
# root on a fresh Debian machine); otherwise those tests skip and say how.
ARM64_ROOT := /opt/tradelake-arm64
system-deps:  ## Debian packages the tests use (chromium, jq, qemu, an arm64 CPython), when missing and running as root
	@missing=""; for p in chromium jq; do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v qemu-aarch64-static >/dev/null 2>&1 || missing="$$missing qemu-user-static"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	else \
		echo "make system-deps:$$missing missing and only root with apt-get installs it: the" \
			"tests that need it will be SKIPPED (sudo make system-deps)" >&2; \
	fi
	@sh scripts/arm64_python.sh $(ARM64_ROOT)

soak: $(STAMP) $(HOTPATH_HOST)  ## the exactly-once property test with 5,000 examples (make test runs 400)
	TRADELAKE_EXAMPLES=5000 $(BIN)/pytest -p no:logging -o timeout=1800 tests/unit/test_exactly_once.py

chaos: $(STAMP) $(HOTPATH_HOST)  ## the fault-injection suite at scale 4, printing every fault it injected (make test runs scale 1)
	TRADELAKE_CHAOS_SCALE=4 $(BIN)/pytest -p no:logging -o timeout=1800 tests/chaos

# Issue 10's measurements (docs/BENCHMARKS.md, written by bench/run.py): minutes, and the heavy
# parts want a quiet machine. The cryptofeed comparison needs its own venv (bench/cryptofeed-venv.sh);
# the cost model reads the packaged template. The 10 M-trade lake is kept in BENCH_WORK
# (default /tmp/tradelake-bench) and reused.
bench: $(STAMP) $(HOTPATH_HOST) package  ## measure everything of issue 10, write docs/BENCHMARKS.md, print the table
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
		.serverless node_modules layers/deps/python $(CHECKOV_VENV) $(HOTPATH_DIR)/_hotpath.*.so

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

# The layer check runs again on the zips osls wrote, which hold exactly what ships: the core
# layer's directory also holds the host's build of the hot path and its C source, left out.
package: $(NPM_STAMP) $(LAYER_STAMP) $(HOTPATH_LAMBDA) $(STAMP)  ## serverless package, offline, then check the layers and cfn-lint
	$(SLS_ENV) node_modules/.bin/osls package $(PACKAGE_ARGS)
	$(BIN)/python scripts/check_layer.py .serverless/core.zip .serverless/deps.zip
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

$(HOTPATH_HOST): $(HOTPATH_C) | $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# Against the host's CPython headers: the limited API's are the same on every platform, and an
# extension does not link libpython (its Py* symbols are resolved when CPython loads it).
# Stripped (-s): the layer ships it, nobody debugs it there.
$(HOTPATH_LAMBDA): $(HOTPATH_C) | $(STAMP)
	$(BIN)/python -m ziglang cc -target $(LAMBDA_TARGET) -shared -fPIC -g0 -s $(HOTPATH_CFLAGS) \
		-I"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("include"))')" \
		-o $@.tmp $<
	mv $@.tmp $@

hotpath: $(HOTPATH_HOST) $(HOTPATH_LAMBDA)  ## compile the C hot path for this machine (.venv) and for Lambda (aarch64)
