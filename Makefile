# Two commands on a fresh machine:
#   make repro   create .venv, install, run the whole pipeline (dvc repro)
#   make test    create .venv, install with the dev extras, run the test suite
VENV ?= .venv
PYTHON ?= python3
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE := 1
export DVC_NO_ANALYTICS := 1

.PHONY: install repro test test-slow test-all lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/aiprod-recipes setup-dvc
	touch $@

install: $(VENV)/.installed

repro: install
	$(BIN)/dvc repro

test: install
	$(BIN)/pytest -q -n 2

test-slow: install
	$(BIN)/pytest -q -n 2 -m slow

test-all: install
	$(BIN)/pytest -q -n 2 -m ''

lint: install
	$(BIN)/ruff check .

bench: install
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV)
