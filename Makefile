# Tipbox: every target is documented with '##'; `make` alone lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where `make keys` writes the newsroom identity (secret: keep it on the air-gapped machine).
IDENTITY ?= $(HOME)/tipbox-newsroom-identity.age
RECIPIENT ?= keys/newsroom.pub
PYTEST_ARGS ?=

.PHONY: help install run test lint format bench keys airgap-kit clean

help: ## List every target
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e . --group dev
	@touch $@

install: $(STAMP) ## Create .venv and install Tipbox with its development tools

run: $(STAMP) ## Start the source portal on http://127.0.0.1:8080 (PORT=…; dev key, data/)
	$(BIN)/python -m app.dev

lint: $(STAMP) ## ruff (lint and format check) and mypy --strict on app/
	$(BIN)/ruff check app tests bench deploy
	$(BIN)/ruff format --check app tests bench deploy
	$(BIN)/mypy --strict app

format: $(STAMP) ## Reformat the code with ruff
	$(BIN)/ruff format app tests bench deploy
	$(BIN)/ruff check --fix app tests bench deploy

test: lint ## Lint, then run the whole test suite (real age, tor, gunicorn, Chromium)
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP) ## Measure speed and memory; writes docs/performance.md
	$(BIN)/python -m bench

keys: $(STAMP) ## Create the newsroom identity (on the air-gapped machine) and keys/newsroom.pub
	$(BIN)/tipbox keygen --identity "$(IDENTITY)" --recipient "$(RECIPIENT)"

airgap-kit: $(STAMP) ## Build dist/airgap-kit/: offline install kit (wheels + install.sh) for the air-gapped machine
	$(BIN)/python deploy/airgap_kit.py --out dist/airgap-kit

clean: ## Remove the venv, caches and dist/ (keeps data/ and keys/)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info dist
