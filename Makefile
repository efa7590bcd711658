# Two commands on a fresh machine:
#   make repro   create .venv, install, run the whole pipeline (dvc repro)
#   make test    create .venv, install with the dev extras, run the test suite
# `make help` lists every target.
VENV ?= .venv
PYTHON ?= python3
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE := 1
export DVC_NO_ANALYTICS := 1

.PHONY: help install repro exp test test-slow test-all lint bench clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-10s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/aiprod-recipes setup-dvc
	touch $@

install: $(VENV)/.installed ## create .venv and install the package with the dev extras

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
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean: ## remove .venv
	rm -rf $(VENV)

# >>> stage targets: rendered by `aiprod-recipes render` from the stage registry <<<
STAGES := base ingest caption embed latents reference split train evaluate
.PHONY: $(STAGES)

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
