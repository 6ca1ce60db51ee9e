# Two commands on a fresh machine: ./relay, ./send, ./receive to run; `make test` to test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup setup-dev lock test test-fast lint format bench bench-wan clean

setup:
	$(PYTHON) scripts/bootstrap.py

setup-dev:
	$(PYTHON) scripts/bootstrap.py --dev

# Re-resolve pyproject.toml's dependencies into requirements/runtime.txt and dev.txt
# (pinned, sha256 hashes from the index); commit both. Needs the package index.
lock:
	$(PYTHON) scripts/lock.py

test: setup-dev
	$(BIN)/python -m pytest

test-fast: setup-dev
	$(BIN)/python -m pytest tests/unit tests/inproc

lint: setup-dev
	$(BIN)/python -m ruff check src tests bench ferry_testing scripts
	$(BIN)/python -m ruff format --check src tests bench ferry_testing scripts
	$(BIN)/python -m mypy  # src, tests, bench and ferry_testing: pyproject.toml [tool.mypy]

format: setup-dev
	$(BIN)/python -m ruff format src tests bench ferry_testing scripts
	$(BIN)/python -m ruff check --fix src tests bench ferry_testing scripts

bench: setup-dev
	$(BIN)/python -m bench.run

# Needs root (network namespaces + TUN): the delay-line WAN benchmark, bench/wan.py.
bench-wan: setup-dev
	$(BIN)/python -m bench.wan $(BENCH_WAN_ARGS)

clean:
	rm -rf $(VENV) .venv.lock .pytest_cache .mypy_cache .ruff_cache .hypothesis
