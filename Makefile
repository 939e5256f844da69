# The two commands of the README: `make run` and `make test`. Both install what they need first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: run test install lint browser

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

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
