# Two commands for a fresh clone: `make run` and `make test`. Everything else is here for convenience.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Reinstall whenever pyproject.toml (or the Python client's) changes.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml clients/python/pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install run test check lint pytest pytest-system-pg openapi bench clean

$(STAMP): pyproject.toml clients/python/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet -e clients/python
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

## make run: install, migrate and serve on http://127.0.0.1:5000 (embedded PostgreSQL in ./.catalog)
run: install
	$(BIN)/catalog serve

## make test: install, lint, type-check and run every test (embedded PostgreSQL unless
## CATALOG_TEST_DATABASE_URL points at another server)
test: install check pytest

check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest -q

## the same suite against the system PostgreSQL (what CI runs second)
pytest-system-pg: install
	CATALOG_TEST_DATABASE_URL=$${CATALOG_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres} $(BIN)/pytest -q

## regenerate the committed OpenAPI document after changing the API
openapi: install
	$(BIN)/python -m catalog.api.openapi_dump > openapi/openapi.json

bench: install
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .catalog .pytest_cache .mypy_cache .ruff_cache
