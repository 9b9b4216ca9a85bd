# LogFlow developer commands. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
STAMP  := $(VENV)/.installed

.PHONY: run install test test-embedded test-distributed lint typecheck stack-up stack-down bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start embedded LogFlow with demo logs on http://localhost:8000
run: $(STAMP)
	LOGFLOW_INGEST_OPEN=$${LOGFLOW_INGEST_OPEN:-true} $(BIN)/logflow serve --port $(PORT) --demo

## Lint, type-check, then every test: embedded and distributed (starts the real services itself)
test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	scripts/test.sh

test-embedded: $(STAMP)
	$(BIN)/pytest -m "not distributed" -q

test-distributed: $(STAMP)
	scripts/stack.sh up
	eval "$$(scripts/stack.sh env)" && LOGFLOW_REQUIRE_DISTRIBUTED=1 $(BIN)/pytest -m distributed -q

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

stack-up:
	scripts/stack.sh up

stack-down:
	scripts/stack.sh down

bench: $(STAMP)
	$(BIN)/logflow bench

clean:
	rm -rf $(VENV) logflow-data .pytest_cache .mypy_cache .ruff_cache
