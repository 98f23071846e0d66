# agencybilling — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell scripts/find-python)
VENV := .venv
BIN := $(VENV)/bin
WITH_SERVICES := $(BIN)/python scripts/services.py run --

.PHONY: help install demo test test-fast test-chaos test-cluster lint lock bench bench-quick clean

help:
	@echo "make demo   - set everything up and run the product (web + worker + beat) on http://demo.localhost:8000/"
	@echo "make test   - set everything up and run linters, type checks and the whole test suite"
	@echo "make lint   - ruff, import-linter contracts, architecture checks, mypy and makemigrations --check only"
	@echo "make test-cluster - several hosts in network namespaces (PgBouncer, 3 worker hosts, one killed), 100 agencies: docs/operations.md"
	@echo "make test-chaos - the reliability tests R1-R7 at full size (2,000 clients, >= 20 worker kills): docs/reliability.md"
	@echo "make lock   - resolve requirements.in / requirements-dev.in into their locks (LOCK_ARGS=--upgrade: newest)"
	@echo "make bench  - performance benchmarks P1-P8 (<= 15 min): table + bench/results/*.json"
	@echo "make bench-quick - the same at small sizes (<= 2 min, CI): regression floors"

$(BIN)/activate:
	@test -n "$(PYTHON)" || { echo "error: Python 3.12 is required (set PYTHON=/path/to/python3.12)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Production's packages and the development, test and benchmark tools (requirements-dev.lock holds both; the
# Docker image installs requirements.lock, production's share, only).
$(VENV)/.installed: requirements-dev.lock | $(BIN)/activate
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	@touch $@

install: $(VENV)/.installed

demo: install
	scripts/system-packages demo
	$(WITH_SERVICES) $(BIN)/python scripts/demo.py

test: install
	scripts/system-packages test
	$(WITH_SERVICES) scripts/test-suite $(PYTEST_ARGS)

test-fast: install
	scripts/system-packages test
	$(WITH_SERVICES) $(BIN)/pytest -q -x -n "$${PYTEST_WORKERS:-auto}" -m "not slow and not browser" $(PYTEST_ARGS)

# Several hosts on this machine (network namespaces; root), 100 agencies, a worker host lost mid-day
# (tests/cluster); `make test` runs the same test with 10 agencies and 2 worker hosts.
test-cluster: install
	scripts/system-packages test
	CLUSTER_SIZE=full $(WITH_SERVICES) $(BIN)/pytest -s -n 0 tests/cluster $(PYTEST_ARGS)

# Reliability at full size (docs/reliability.md); `make test` runs the same tests at CI size.
test-chaos: install
	scripts/system-packages test
	CHAOS_SIZE=full $(WITH_SERVICES) $(BIN)/pytest -s tests/reliability $(PYTEST_ARGS)
	$(BIN)/python scripts/reliability_table.py

# The checks of `make test` without the tests (mypy reads the settings and makemigrations --check the database).
lint: install
	LINT_ONLY=1 $(WITH_SERVICES) scripts/test-suite

# Benchmarks (docs/performance.md). BENCH_ARGS="--only P1 --profile" to run one row under the profiler;
# BENCH_ARGS="--scaling" for the Billing Overview at 1k, 2.5k, 5k and 10k clients.
bench: install
	scripts/system-packages bench
	$(WITH_SERVICES) $(BIN)/python -m bench.run $(BENCH_ARGS)

bench-quick: install
	scripts/system-packages bench
	$(WITH_SERVICES) $(BIN)/python -m bench.run --quick $(BENCH_ARGS)

lock: | $(BIN)/activate
	$(BIN)/python scripts/lock $(LOCK_ARGS)

clean:
	rm -rf $(VENV) .local .mypy_cache .ruff_cache
