# Two commands on a fresh machine:
#   make repro   create .venv, install the locked environment, run the pipeline (dvc repro)
#   make test    create .venv, install the locked environment, run the test suite
# The environment is exactly what requirements.lock pins (with hashes); `make lock` updates
# the lock after a change to the dependencies in pyproject.toml. `make help` lists every target.
VENV ?= .venv
PYTHON ?= python3
LOCK := requirements.lock
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE := 1
export DVC_NO_ANALYTICS := 1

# What the lock pins: the package's dependencies with the dev extras (tests, lint, uv), and
# pip and setuptools, which install the package itself (editable, from this checkout,
# without fetching a build environment). One resolution for every platform and Python
# >= requires-python; existing pins are kept unless LOCK_ARGS says otherwise
# (`make lock LOCK_ARGS=--upgrade`, or `LOCK_ARGS='--upgrade-package torch'`).
LOCK_INPUTS := -e .[dev]\npip\nsetuptools>=68\n
LOCK_ARGS ?=

.PHONY: help install lock repro exp test test-slow test-all lint bench clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-10s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

# pip takes every file whose sha256 the lock lists (and refuses any other), from the index
# or from a local wheel copy of the same file; nothing is resolved at install time.
$(VENV)/.installed: $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/aiprod-recipes setup-dvc
	touch $@

install: $(VENV)/.installed ## create .venv with exactly what requirements.lock pins

lock: install ## rewrite requirements.lock from pyproject.toml (LOCK_ARGS=--upgrade), reinstall
	printf -- '$(LOCK_INPUTS)' | $(BIN)/uv pip compile - --quiet --universal \
		--generate-hashes --no-emit-package aiprod-recipes \
		--custom-compile-command 'make lock' $(LOCK_ARGS) -o $(LOCK)
	$(MAKE) install

repro: install ## run the whole pipeline (dvc repro)
	$(BIN)/dvc repro

exp: install ## an experiment: make exp S="lora.rank=32" (several: S="a=1 b=2")
	$(BIN)/dvc exp run $(foreach s,$(S),-S $(s))

test: install ## the fast test suite
	$(BIN)/pytest -q -n 2

test-slow: install ## the slow end-to-end tests
	$(BIN)/pytest -q -n 2 -m slow

test-all: install ## every test
	$(BIN)/pytest -q -n 2 -m ''

lint: install ## ruff
	$(BIN)/ruff check .

bench: install ## every benchmark in bench/ (prints figures)
	for b in bench/bench_*.py bench/plan_presets.py; do $(BIN)/python $$b || exit 1; done

clean: ## remove .venv
	rm -rf $(VENV)

# >>> stage targets: rendered by `aiprod-recipes render` from the stage registry <<<
STAGES := validate base ingest caption embed latents reference split train evaluate
.PHONY: $(STAGES)

validate: install ## stage: check the whole spec and write it resolved (defaults filled in) for DVC
	$(BIN)/dvc repro validate

base: install ## stage: the tiny seeded LTX-2 checkpoint and Gemma folder (tiny recipes only)
	$(BIN)/dvc repro base

ingest: install ## stage: raw clips -> normalised scene clips, manifest, quarantine report
	$(BIN)/dvc repro ingest

caption: install ## stage: one caption per clip: sidecar files, Qwen2.5-Omni or Gemini
	$(BIN)/dvc repro caption

embed: install ## stage: captions -> Gemma text features
	$(BIN)/dvc repro embed

latents: install ## stage: clips -> bucketed video latents and audio latents
	$(BIN)/dvc repro latents

reference: install ## stage: Canny-edge reference latents for IC-LoRA (empty when off)
	$(BIN)/dvc repro reference

split: install ## stage: train/val assignment by content hash
	$(BIN)/dvc repro split

train: install ## stage: flow-matching LoRA or full fine-tune; adapter, DVCLive metrics and plots
	$(BIN)/dvc repro train

evaluate: install ## stage: held-out loss base vs adapter, sample mp4s with sound, report.md
	$(BIN)/dvc repro evaluate

# >>> end of stage targets <<<
