# The one interface. Every target sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,aws,dev]'
	touch $@

demo: $(STAMP)  ## the whole pipeline locally, offline: simulator -> capture -> lake -> DuckDB
	$(BIN)/tradelake demo

test: $(STAMP)  ## unit and integration tests
	$(BIN)/pytest

lint: $(STAMP)  ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) lake .pytest_cache .mypy_cache .ruff_cache
