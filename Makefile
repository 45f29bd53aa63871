# One toolchain, same commands locally and in CI.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch first and pinned: an unpinned torch pulls the newest release plus GBs of CUDA wheels.
TORCH_SPEC ?= torch==2.13.0
DEMO_HOME ?= .mlops

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export BENTOML_DO_NOT_TRACK ?= true
export WHYLOGS_NO_ANALYTICS ?= 1
export DO_NOT_TRACK ?= 1
export PYTHONUNBUFFERED ?= 1

.PHONY: help setup setup-browser demo stop test test-fast test-e2e lint format bench bench-gpu bench-loop clean

help: ## Show the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv with torch (pinned, first), the project and dev tools

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: setup ## The whole loop on a local Prefect server, workers and Bento service (~6 min); left running
	MLOPS_HOME=$(DEMO_HOME) $(BIN)/mlops demo

stop: ## Stop what `make demo` left running (pids and logs in .mlops/run/)
	@if [ -x $(BIN)/mlops ]; then MLOPS_HOME=$(DEMO_HOME) $(BIN)/mlops stop; fi

test: setup ## Run the whole test suite
	$(BIN)/pytest

test-fast: setup ## Run the unit tests only
	$(BIN)/pytest tests/unit

test-e2e: setup ## Run the end-to-end tests (real server, workers; the browser test needs setup-browser)
	$(BIN)/pytest tests/e2e

setup-browser: setup ## Install playwright into .venv and Debian's chromium (as root) for the browser test
	$(BIN)/python -m pip install -q playwright
	@test -x /usr/bin/chromium || { test "$$(id -u)" = 0 && apt-get install -y chromium; } \
		|| echo "install Chromium yourself: sudo apt-get install -y chromium"

lint: setup ## ruff (lint + format check) and mypy on mlops/
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup ## Run the benchmarks in bench/ (JSON + markdown in bench/results/), ~20 min
	$(BIN)/python -m bench.training
	$(BIN)/python -m bench.serving
	$(BIN)/python -m bench.monitoring
	$(BIN)/python -m bench.gpu
	$(BIN)/python -m bench.backtest

bench-gpu: setup ## GPU against CPU (training, onnxruntime) and two trainings under the gpu limit
	$(BIN)/python -m bench.gpu
	$(BIN)/python -m bench.gpu_limit

bench-loop: setup ## Judge the retraining loop on six histories (bench/results/loop.md), ~20 min
	$(BIN)/python -m bench.loop $(LOOP_ARGS)

clean: stop ## Stop the demo and remove local state (the venv stays)
	rm -rf $(DEMO_HOME) .pytest_cache .ruff_cache .mypy_cache test-artifacts
