# The two commands a newcomer needs: `make run` (the whole service on this machine) and `make test` (the suite).
SHELL := /bin/bash
VENV := .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
BIN := $(VENV)/bin
# Run apt as root directly, or through sudo for a developer account.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test screenshots audit bench system-deps venv clean-local

run: venv var/.env-ready
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python -m mp3converter.broker
	@echo ""
	@echo "mp3converter is starting: web http://127.0.0.1:8000 (API docs at /api/docs/, admin at /admin/),"
	@echo "Flower http://127.0.0.1:5555 (user and password: FLOWER_BASIC_AUTH in .env)."
	@echo "Create the first account:  $(BIN)/python manage.py createsuperuser"
	@echo "  or sign up over the API: curl -X POST http://127.0.0.1:8000/api/auth/register/ -d email=you@example.com -d password=..."
	@echo "Mail is written to var/mail/. Stop with Ctrl-C."
	@echo ""
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile

# A local .env (git-ignored) switches on DEBUG and gives Flower a random password. Never used in production.
var/.env-ready:
	@mkdir -p var
	@if [ ! -f .env ]; then \
	  printf 'DJANGO_DEBUG=true\nFLOWER_BASIC_AUTH=admin:%s\n' "$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(12))')" > .env; \
	  chmod 600 .env; echo "wrote .env for a local run"; fi
	@touch $@

test: venv
	bash tests/services.sh
	$(BIN)/python -m pytest

# docs/screenshots/: each page of tests/browser/screenshots.py (PAGES) on a desktop and a phone, in Debian's Chromium,
# from a live server with real workers. Pages not built yet are skipped.
screenshots: venv
	bash tests/services.sh
	$(BIN)/python -m pytest -m screenshots tests/browser/screenshots.py

# Known vulnerabilities in every pin (runtime and test: tests/requirements.txt includes requirements.txt), from PyPI's
# advisory data; needs pypi.org. --strict fails on a pin it could not look up instead of passing over it.
audit: venv
	$(BIN)/pip-audit --requirement tests/requirements.txt --no-deps --strict --vulnerability-service pypi \
	  --progress-spinner off

# A benchmark, not a test: the engine against the ffmpeg CLI and the classic MoviePy path (see README).
bench: venv
	$(BIN)/python -m conversions.bench

venv: $(VENV)/.installed

# mysqlclient compiles against MariaDB's client library; python3-venv provides `venv` on Debian's own Python.
system-deps:
	@if ! pkg-config --exists libmariadb 2>/dev/null || ! $(PYTHON) -c 'import venv, ensurepip' 2>/dev/null; then \
	  echo "installing build dependencies with apt"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq pkg-config libmariadb-dev gcc python3-dev python3-venv >/dev/null; fi

$(VENV)/.installed: requirements.txt tests/requirements.txt
	@$(MAKE) --no-print-directory system-deps
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	@touch $@

clean-local:
	rm -rf var .env
