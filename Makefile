# Tipbox: every target is documented with '##'; `make` alone lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# axe-core (accessibility tests) and typage (age interop tests): npm installs the versions pinned in its lock file.
NODE_STAMP := tests/node/node_modules/.installed
# Where `make keys` writes the newsroom identity (secret: keep it on the air-gapped machine).
IDENTITY ?= $(HOME)/tipbox-newsroom-identity.age
RECIPIENT ?= keys/newsroom.pub
PYTEST_ARGS ?=
TRANSLATIONS := app/translations
ENV_FILE ?= /etc/tipbox/tipbox.env
NAME ?= admin

.PHONY: help install run test fuzz lint format bench words keys airgap-kit translations language catalogues deploy status backup restore-key restore uninstall rehearse clean

help: ## List every target
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e . --group dev
	@touch $@

install: $(STAMP) ## Create .venv and install Tipbox with its development tools

$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund
	@touch $@

run: $(STAMP) catalogues ## Start the source portal (:8080) and the journalist app (:8081) locally (PORT=…; dev key, data/)
	$(BIN)/python -m app.server.dev

lint: $(STAMP) ## ruff (lint and format check) and mypy --strict on app/
	$(BIN)/ruff check app tests bench deploy
	$(BIN)/ruff format --check app tests bench deploy
	$(BIN)/mypy --strict app

format: $(STAMP) ## Reformat the code with ruff
	$(BIN)/ruff format app tests bench deploy
	$(BIN)/ruff check --fix app tests bench deploy

test: lint catalogues $(NODE_STAMP) ## Lint, then run the whole test suite (real age, tor, gunicorn, Chromium, axe-core)
	$(BIN)/pytest -n auto --dist loadgroup $(PYTEST_ARGS)

fuzz: $(STAMP) ## Run only the property tests (parsers, bundle and container readers), long (HYPOTHESIS_PROFILE=fuzz)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -m property -n auto $(PYTEST_ARGS)

translations: $(STAMP) ## Extract the source portal's strings, update every catalogue, compile them
	$(BIN)/pybabel -q extract -F babel.cfg -o $(TRANSLATIONS)/messages.pot --add-location=file --sort-by-file --no-wrap --project=Tipbox --version=0.1.0 --copyright-holder="Tipbox contributors" --msgid-bugs-address="" .
	$(BIN)/pybabel update -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) --no-wrap --ignore-obsolete
	$(BIN)/pybabel compile -d $(TRANSLATIONS) --statistics

language: $(STAMP) ## Add a language: make language LANG=xx, translate its .po, then make translations
	@[[ "$(LANG)" =~ ^[a-z]{2,3}(_[A-Z]{2})?$$ ]] || { echo "usage: make language LANG=xx (a language code such as fr or pt_BR)"; exit 1; }
	@test ! -e $(TRANSLATIONS)/$(LANG) || { echo "$(TRANSLATIONS)/$(LANG) already exists"; exit 1; }
	$(BIN)/pybabel init -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) -l $(LANG) --no-wrap

catalogues: $(STAMP) ## Compile the translation catalogues (the app refuses to start without them)
	$(BIN)/pybabel -q compile -d $(TRANSLATIONS)

bench: $(STAMP) ## Measure speed and memory; writes docs/performance.md
	$(BIN)/python -m bench

words: $(STAMP) ## Rebuild app/words/en.txt and es.txt (wordfreq, Debian wamerican/wbritish/wspanish, blocklists)
	$(BIN)/python -m app.words.build

keys: $(STAMP) ## Create the newsroom identity (on the air-gapped machine) and keys/newsroom.pub
	$(BIN)/tipbox keygen --identity "$(IDENTITY)" --recipient "$(RECIPIENT)"

airgap-kit: $(STAMP) ## Build dist/airgap-kit/: offline install kit (wheels + install.sh) for the air-gapped machine
	$(BIN)/python deploy/airgap_kit.py --out dist/airgap-kit

deploy: ## Install or update Tipbox on this Debian 12 server (root; KEYS=dir, default keys/; WHEELS=dir: offline, wheels only, no apt-get if all is installed)
	bash deploy/install.sh

status: ## Check tor, both onion services and both apps on this server (root)
	bash deploy/status.sh

backup: ## Write an encrypted backup: database, onion keys, config (root; OUT=file)
	bash deploy/backup.sh

restore-key: ## Make this new server's one-time restore key; prints the recipient to re-encrypt a backup to (root)
	bash deploy/restore.sh key

restore: ## Restore a backup re-encrypted to the restore key (root; BACKUP=file; FORCE=1 replaces data)
	bash deploy/restore.sh

uninstall: ## Remove Tipbox; keeps data and onion keys unless PURGE=1 (root)
	bash deploy/uninstall.sh

rehearse: ## Rehearse deploy, status, backup/restore, uninstall, upgrade, key rotation, digest, retention in a Debian 12 VM (qemu, no network; root)
	bash deploy/rehearse.sh

user: ## Add a journalist admin account (NAME=admin; on a deployed server: sudo make user NAME=…)
	@if [ -f "$(ENV_FILE)" ]; then \
		if [ "$$(id -u)" = 0 ]; then as_tipbox="runuser -u tipbox --"; else as_tipbox="sudo -u tipbox"; fi; \
		$$as_tipbox bash -c 'set -a && . "$$0" && exec /usr/local/bin/tipbox user add --admin "$$1"' "$(ENV_FILE)" "$(NAME)"; \
	else \
		$(MAKE) --no-print-directory install && $(BIN)/tipbox user add --admin "$(NAME)"; \
	fi

clean: ## Remove the venv, caches and dist/ (keeps data/ and keys/)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info dist
