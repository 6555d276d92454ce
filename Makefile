# Two commands for a fresh clone: `make run` and `make test`. Everything else is here for convenience.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two stamps, each named after the files it installs from, so an edit reinstalls: `make run` installs the
# runtime dependencies only; `make test` adds the dev extras and the Python client to the same venv
# (never recreating it), and a later `make run` leaves them in place.
RUN_STAMP := $(VENV)/.runtime-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DEV_STAMP := $(VENV)/.dev-$(shell cat pyproject.toml clients/python/pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install install-dev run test check lint pytest pytest-system-pg openapi ui bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@rm -f $(VENV)/.runtime-*
	@touch $@

$(DEV_STAMP): pyproject.toml clients/python/pyproject.toml $(RUN_STAMP)
	$(BIN)/pip install --quiet -e '.[dev]' -e clients/python
	@rm -f $(VENV)/.dev-*
	@touch $@

install: $(RUN_STAMP)

install-dev: $(DEV_STAMP)

## make run: install the runtime dependencies, migrate and serve on http://127.0.0.1:5000
## (embedded PostgreSQL in ./.catalog)
run: install
	$(BIN)/catalog serve

## make test: install the dev extras too, lint, type-check and run every test (embedded PostgreSQL
## unless CATALOG_TEST_DATABASE_URL points at another server)
test: install-dev check pytest

check: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pytest: install-dev
	$(BIN)/pytest -q

## the same suite against the system PostgreSQL (what CI runs second)
pytest-system-pg: install-dev
	CATALOG_TEST_DATABASE_URL=$${CATALOG_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres} $(BIN)/pytest -q

## regenerate the committed OpenAPI document after changing the API
openapi: install
	$(BIN)/python -m catalog.api.openapi_dump > openapi/openapi.json

## rebuild the committed web UI (catalog/web/static) from ui/ after changing it (needs Node 20+ and npm;
## `make run` does not: the build is committed)
ui:
	cd ui && npm ci --no-audit --no-fund && npm run build

bench: install-dev
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .catalog .pytest_cache .mypy_cache .ruff_cache
