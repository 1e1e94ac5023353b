# Two commands matter (see README): `make run` and `make test`. Everything else is a building block.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test bench bench-quick lint migrations-check check-deploy clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the package metadata changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

## Run the example IdP on SQLite with demo data at http://$(HOST):$(PORT)
# The issuer follows the address it serves on, unless OIDC_ISSUER is set in the environment.
run: export OIDC_ISSUER ?= http://$(HOST):$(PORT)
run: install
	$(BIN)/python manage.py migrate --noinput -v 0
	$(BIN)/python manage.py oidc_demo
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

## Run the whole test suite (DATABASE_URL selects the database; SQLite by default)
test: install
	$(BIN)/python -m pytest

## Benchmark against stock DOT under gunicorn, SQLite and PostgreSQL (docs/performance.md)
# BENCH_ARGS passes options, e.g. BENCH_ARGS="--databases sqlite" or "--prefill 1000000".
bench: install
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

bench-quick: install
	$(BIN)/python benchmarks/run.py --quick $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

migrations-check: install
	$(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-* staticfiles .pytest_cache .ruff_cache
