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

.PHONY: help setup demo test test-fast lint format bench clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv with torch (pinned, first), the project and dev tools

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: setup ## Simulate 30 days, train on the stable first 2 weeks, show the champion
	MLOPS_HOME=$(DEMO_HOME) $(BIN)/mlops simulate --days 30 --rows-per-day 5000
	MLOPS_HOME=$(DEMO_HOME) $(BIN)/mlops train --end 2026-01-15
	MLOPS_HOME=$(DEMO_HOME) $(BIN)/mlops status

test: setup ## Run the whole test suite
	$(BIN)/pytest

test-fast: setup ## Run the unit tests only
	$(BIN)/pytest tests/unit

lint: setup ## ruff (lint + format check) and mypy on mlops/
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup ## Run the benchmarks in bench/ (JSON + markdown in bench/results/)
	$(BIN)/python -m bench.training

clean: ## Remove local state (the venv stays)
	rm -rf $(DEMO_HOME) .pytest_cache .ruff_cache .mypy_cache
