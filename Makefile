# Two commands on a fresh machine: ./relay, ./send, ./receive to run; `make test` to test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup setup-dev lock test test-slow test-fast test-web web web-vectors lint format bench bench-wan clean

setup:
	$(PYTHON) scripts/bootstrap.py

setup-dev:
	$(PYTHON) scripts/bootstrap.py --dev

# Re-resolve pyproject.toml's dependencies into requirements/runtime.txt and dev.txt with
# uv (pinned in dev.txt): one universal resolution for every platform and CPython 3.11+,
# environment markers where they differ, the sha256 of every wheel of each pinned release;
# dev.txt keeps runtime.txt's pins. Pins already in the files stay (with their hashes) unless
# pyproject.toml no longer admits them; `make lock UPGRADE=1` takes the newest releases and
# fetches every hash anew. Needs the package index; commit both files.
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 \
	--generate-hashes --only-binary :all: --no-config --quiet \
	--custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)

lock: setup-dev
	$(UV_COMPILE) -o requirements/runtime.txt
	$(UV_COMPILE) --extra dev -c requirements/runtime.txt -o requirements/dev.txt

# The whole suite but the tests marked slow, in pytest-xdist workers (each test has its own
# ports and tmp_path). Most of a test's time is spent waiting on its processes and sockets,
# not computing (2 cores ran ~45 % busy with one worker per core), so `make test` runs three
# workers per core, at most 12. `make test-slow` runs the slow ones (gigabyte files, soaks,
# the browser, the cluster) one worker per core; CI runs both (.ci/run). CONTRIBUTING.md:
# which tests when.
PYTEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(12, 3 * (os.cpu_count() or 1)))")

# Bytecode first: the tests start ./relay, ./send and ./receive hundreds of times, and where
# PYTHONDONTWRITEBYTECODE is set (as on our CI machine) each start would compile every ferry
# module again (~0.1 CPU-s a process, a third of the suite's CPU on 2 cores).
test: setup-dev
	$(BIN)/python -m compileall -q src > /dev/null
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not slow"

test-slow: setup-dev
	$(BIN)/python -m pytest -n auto -m slow

test-fast: setup-dev
	$(BIN)/python -m pytest tests/unit tests/inproc

# The browser core (web/src/core) under Node's test runner: web/'s pinned packages from
# web/package-lock.json, then every test in web/test/ (the shared vectors among them).
# `make test` runs the same through tests/unit/test_web_core.py.
test-web:
	cd web && npm ci --ignore-scripts --no-audit --no-fund && node --test test/

# Rebuild the web app the relay serves (src/ferry/webapp: index.html, app.js, app.css) from
# web/src with the pinned esbuild; commit the result (tests/unit/test_webapp_bundle.py fails
# when it differs from a fresh build). scripts/webapp_sha256.py prints its SHA-256, which
# docs/SECURITY.md quotes (a test checks it).
web:
	cd web && npm ci --ignore-scripts --no-audit --no-fund && node build.mjs ../src/ferry/webapp
	$(PYTHON) scripts/webapp_sha256.py

# Regenerate web/test/vectors.json and web/src/core/wordlist.js from the Python modules
# (after a change that alters bytes on the wire); commit both.
web-vectors: setup-dev
	$(BIN)/python scripts/web_vectors.py

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
