# guard: the two commands of the README, each doing its own set-up.
#   make demo   runs the daemon on the bundled demo stream with the door-lock simulator
#   make test   installs the dev, train and redteam extras and runs ruff, mypy and pytest
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck pytest bench clean setup-runtime setup-dev

$(BIN)/python:
	tools/system-deps.sh runtime
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	tools/system-deps.sh test
	$(BIN)/pip install --quiet -e '.[dev,train,redteam]'
	touch $@ $(VENV)/.runtime

setup-runtime: $(VENV)/.runtime
setup-dev: $(VENV)/.dev

demo: $(VENV)/.runtime
	$(BIN)/guard demo demo/

lint: $(VENV)/.dev
	$(BIN)/ruff check guard tests bench tools
	$(BIN)/ruff format --check guard tests bench tools

typecheck: $(VENV)/.dev
	$(BIN)/mypy

pytest: $(VENV)/.dev
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: $(VENV)/.dev
	$(BIN)/python bench/bench_classifier.py
	$(BIN)/python bench/bench_guard.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
