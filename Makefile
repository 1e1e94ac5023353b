# Two commands matter (see README): `make run` and `make test`. Everything else is a building block.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

INTEROP := tests/interop

# The newest supported Django on the newest Python (tox.ini has the whole matrix): a venv of its own.
NEWEST_PYTHON ?= $(lastword $(sort $(wildcard $(HOME)/.pyenv/versions/3.13.*/bin/python)))
NEWEST_VENV := .venv-django61
NEWEST_DJANGO := Django>=6.1,<6.2
CHROMIUM := /usr/bin/chromium
HAPROXY := /usr/sbin/haproxy
REDIS_SERVER := /usr/bin/redis-server

.PHONY: run test test-newest test-minimal bench bench-quick bench-cluster cluster lint typecheck migrations-check check-deploy dist clean chromium haproxy gettext screenshots messages bench-node

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the package metadata changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

# The openid-client relying party of tests/interop, reinstalled when its lockfile changes. Without
# npm the interop tests say why they skip (and fail in CI, where everything must be installed).
$(INTEROP)/node_modules/.installed: $(INTEROP)/package.json $(INTEROP)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(INTEROP) --no-audit --no-fund --loglevel=error && touch $@; \
	else \
		echo "npm not found: install Node.js 20+ to run tests/interop"; \
	fi

# Debian's Chromium for tests/e2e (Playwright drives it; no browser is downloaded).
chromium:
	@test -x $(CHROMIUM) || { \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		else \
			echo "$(CHROMIUM) not found: run 'sudo apt-get install -y chromium' for tests/e2e"; \
		fi; }

# Debian's HAProxy and Redis for tests/test_scaleout.py and `make cluster`: the load balancer in front
# of two app servers and their shared cache (tests/scaleout/cluster.py starts both on loopback; no
# service is enabled).
haproxy:
	@test -x $(HAPROXY) -a -x $(REDIS_SERVER) || { \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy redis-server; \
		else \
			echo "$(HAPROXY) or $(REDIS_SERVER) not found: run 'sudo apt-get install -y haproxy redis-server' for tests/test_scaleout.py"; \
		fi; }

# GNU gettext for `make messages` and tests/test_i18n.py (which re-extracts the strings to check
# the shipped catalogues); installing the app needs none (the compiled .mo files are committed).
gettext:
	@command -v xgettext >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gettext; \
		else \
			echo "xgettext not found: run 'sudo apt-get install -y gettext' for tests/test_i18n.py"; \
		fi; }

## Run the example IdP on SQLite with demo data at http://$(HOST):$(PORT)
# The issuer follows the address it serves on, unless OIDC_ISSUER is set in the environment.
run: export OIDC_ISSUER ?= http://$(HOST):$(PORT)
run: install
	$(BIN)/python manage.py migrate --noinput -v 0
	$(BIN)/python manage.py oidc_demo
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

## Two app servers of the example IdP behind HAProxy on loopback, over one database and one Redis
# DB (docs/operations.md, "Running several app servers"); Ctrl-C stops everything.
# CLUSTER_ARGS passes options, e.g. CLUSTER_ARGS="--servers 3 --workers 1 --redis-url redis://127.0.0.1:6379/3".
cluster: install haproxy
	$(BIN)/python -m tests.scaleout.cluster $(CLUSTER_ARGS)

## Run the whole test suite (DATABASE_URL selects the database; SQLite by default)
# Also installs what the interop and browser tests need: openid-client (npm) and Chromium (apt).
test: install $(INTEROP)/node_modules/.installed chromium gettext haproxy
	$(BIN)/python -m pytest

## The whole suite on the newest Django (6.1) and Python (3.13), deprecation warnings as errors
# NEWEST_PYTHON=/path/to/python3.13 if it is not under ~/.pyenv. Django's warnings for the next-but-one
# release (PendingDeprecationWarning) fail only when our code raises them (pyproject.toml).
$(NEWEST_VENV)/.installed: pyproject.toml
	@test -n "$(NEWEST_PYTHON)" || { echo "Python 3.13 not found: set NEWEST_PYTHON=/path/to/python3.13"; exit 1; }
	$(NEWEST_PYTHON) -m venv $(NEWEST_VENV)
	$(NEWEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(NEWEST_VENV)/bin/python -m pip install --quiet -e ".[test]" "$(NEWEST_DJANGO)"
	touch $@

test-newest: $(NEWEST_VENV)/.installed $(INTEROP)/node_modules/.installed chromium haproxy
	$(NEWEST_VENV)/bin/python -c 'import django, sys; print("Django", django.get_version(), "on Python", sys.version.split()[0])'
	$(NEWEST_VENV)/bin/python -m pytest -W error::DeprecationWarning

## The reusable app alone, as README.md installs it into a site (tests/settings_minimal.py, SQLite)
test-minimal: install
	$(BIN)/python -m pytest -c tests/minimal/pytest.ini tests/minimal

## Re-extract the hosted pages' strings into oidc_provider_ext/locale/*/django.po and compile the
# .mo files (committed, so installing needs no gettext). Needs GNU gettext: apt-get install gettext.
# The admin, models and checks are left out: they speak to operators, in English.
LANGUAGES := de fr es nl pt ar
messages: install gettext
	cd oidc_provider_ext && DJANGO_SETTINGS_MODULE=idp_project.settings PYTHONPATH=.. ../$(BIN)/python -m django \
		makemessages $(addprefix -l ,$(LANGUAGES)) --no-location --no-wrap --no-obsolete \
		--ignore='models/*' --ignore='migrations/*' --ignore=admin.py --ignore='templates/admin/*' --ignore='management/*' --ignore=checks.py
	cd oidc_provider_ext && DJANGO_SETTINGS_MODULE=idp_project.settings PYTHONPATH=.. ../$(BIN)/python -m django compilemessages

## Retake docs/screenshots/*.png (shown in README.md) with the browser tests
screenshots: install chromium
	UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/e2e -q

## Benchmark against stock DOT and node-oidc-provider, SQLite and PostgreSQL (docs/performance.md)
# BENCH_ARGS passes options, e.g. BENCH_ARGS="--databases sqlite" or "--prefill 1000000".
bench: install bench-node
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

bench-quick: install bench-node
	$(BIN)/python benchmarks/run.py --quick $(BENCH_ARGS)

## The same, plus the example IdP as two app servers behind HAProxy with Redis (benchmarks/cluster.py)
# The cluster gets a redis-server of its own; BENCH_REDIS_URL names one to share instead.
bench-cluster: install haproxy bench-node
	$(BIN)/python benchmarks/run.py --cluster $(BENCH_ARGS)

# node-oidc-provider, the pinned second baseline (benchmarks/node_op/package-lock.json), reinstalled
# when its lockfile changes. Without npm the benchmark says so and runs without it.
NODE_OP := benchmarks/node_op
$(NODE_OP)/node_modules/.installed: $(NODE_OP)/package.json $(NODE_OP)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(NODE_OP) --no-audit --no-fund --loglevel=error && touch $@; \
	else \
		echo "npm not found: install Node.js 20+ for the node-oidc-provider baseline"; \
	fi

bench-node: $(NODE_OP)/node_modules/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Type-check the app (mypy with django-stubs; configuration in pyproject.toml)
typecheck: install
	$(BIN)/mypy

migrations-check: install
	$(BIN)/python manage.py makemigrations --check --dry-run

## `manage.py check --deploy` under idp_project.settings_production, with example environment values
# (fresh random secrets, an https issuer): fails on any warning, Django's or ours.
check-deploy: install
	DJANGO_SETTINGS_MODULE=idp_project.settings_production \
	DJANGO_SECRET_KEY="$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
	OIDC_SECRET_KEYS="$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
	OIDC_ISSUER=https://id.example.com REDIS_URL=redis://127.0.0.1:6379/0 \
	$(BIN)/python manage.py check --deploy --fail-level WARNING

## Build the wheel and sdist a site installs from (dist/oidc_provider_ext-*.whl), until it is on PyPI
# Install it with `pip install dist/oidc_provider_ext-*.whl` (tests/test_packaging.py checks its contents).
DIST ?= dist
dist: | $(BIN)/python
	rm -rf $(DIST) build
	$(BIN)/python -m pip wheel --no-deps --quiet -w $(DIST) .

clean:
	rm -rf $(VENV) $(NEWEST_VENV) db.sqlite3 db.sqlite3-* db.sqlite3.demo-credentials.json staticfiles dist build .pytest_cache .ruff_cache
