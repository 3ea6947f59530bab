# The two commands of the README: `make run` and `make test`. Each creates .venv as needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint typecheck bench-codecs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

## Run the relay and the demo on the embedded defaults (emulated providers, SQLite, in-process metering).
run: $(VENV)/.installed
	$(BIN)/realtime-relay serve

## Set up and run the whole test suite, with lint and type checks.
test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

bench-codecs: $(VENV)/.installed
	$(BIN)/python -m loadtest.codec_bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
