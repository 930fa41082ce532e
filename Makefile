# Outrider — the two commands a newcomer needs are `make run` and `make test`.
# Both create and use ./.venv on their own; nothing is installed by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-fast deps venv lint bench demo manifests e2e-kind clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

venv: $(STAMP)

## run: the control plane on the embedded SQLite file ./outrider.db (prints a token on first start)
run: $(STAMP)
	$(BIN)/outrider control-plane --host $(HOST) --port $(PORT)

## deps: system components the tests use (PostgreSQL, Prometheus, Chromium) from Debian's packages
deps:
	bash scripts/deps.sh

## test: the whole suite, after deps and lint
test: $(STAMP) deps lint
	$(BIN)/python -m pytest

## test-fast: the suite without installing system packages (tests whose component is missing skip loudly)
test-fast: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check outrider tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

## demo: the whole system on this machine, no cluster (control plane, operator on KMock, demo agents); Ctrl-C stops
demo: $(STAMP)
	$(BIN)/python -m outrider.demo --host $(HOST) --port $(PORT)

bench: $(STAMP)
	$(BIN)/python -m bench

## manifests: refresh the chart's copies (CRDs, alert rules, dashboard) and manifests/install.yaml
manifests: $(STAMP)
	$(BIN)/python scripts/render_manifests.py

## e2e-kind: the whole system on a kind cluster (skipped where docker or kind is missing)
e2e-kind: $(STAMP)
	bash scripts/e2e-kind.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
