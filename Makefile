# The two commands of the README: `make run` and `make test`. Both install what they need first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: run test install lint browser

# Each step says what it does first: a first install is minutes of downloads that would
# otherwise look like a hang. torch, the largest by far, goes first with its own message.
TORCH_PIN := $(shell awk '/^torch==/ {print $$1}' requirements.txt)

$(STAMP): requirements.txt requirements-dev.txt
	@echo "make install: setting up $(VENV)/ (a first install takes about 5 minutes; later runs skip this)"
	@test -x $(BIN)/python || { echo "  creating the virtual environment $(VENV)/ with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "  upgrading pip"
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "  installing $(TORCH_PIN) (CPU build, about 3 minutes on a first install)"
	@$(BIN)/python -m pip install --quiet "$(TORCH_PIN)"
	@echo "  installing the other packages of requirements-dev.txt (Django, Celery, transformers, the test tools; about 2 minutes)"
	@$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)
	@echo "make install: done"

install: $(STAMP)

# DEBUG stays off (the site's own error pages) unless DEBUG=true is set: DEBUG=true make run
run: install
	$(BIN)/python manage.py runplatform

lint: install
	$(BIN)/ruff check .

# Debian's chromium for the browser tests (tests/e2e); Playwright never downloads a browser.
browser:
	@if [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "make browser: $(CHROMIUM) is missing and there is no apt-get to install Debian's chromium" >&2; exit 1; \
	elif [ "$$(id -u)" -eq 0 ]; then SUDO=; \
	elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	else echo "make browser: $(CHROMIUM) is missing; installing Debian's chromium needs root: run 'apt-get update && apt-get install -y chromium' as root" >&2; exit 1; \
	fi; \
	echo "installing Debian's chromium for the browser tests"; \
	$$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

test: install browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest
