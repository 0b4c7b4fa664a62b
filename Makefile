# make up    set up and run riskrank on the embedded default: SQLite files in the data
#            directory (RISKRANK_DATA_DIR, default ~/.local/share/riskrank), from any
#            directory; beyond this machine: make up UP_ARGS="--host 0.0.0.0 --port 8000"
# make test  set up and run the checks and the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: up test lint docs services clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml clients/riskrank-client/pyproject.toml clients/pytest-riskrank/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]" -e clients/riskrank-client -e clients/pytest-riskrank
	touch $@

up: $(VENV)/.installed
	$(BIN)/riskrank up $(UP_ARGS)

services:
	@scripts/services.sh

lint: $(VENV)/.installed-dev docs
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --strict clients/riskrank-client/src
	$(BIN)/mypy --strict clients/pytest-riskrank/src

# The documentation site, built strictly (a broken link or nav entry fails)
# into a temporary directory, never into the repository.
docs: $(VENV)/.installed-dev
	@site=$$(mktemp -d) && NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict \
		--site-dir "$$site"; status=$$?; rm -rf "$$site"; exit $$status

# Two processes (this machine's cores); each has its own databases and Redis
# database, and a test file stays in one process (module fixtures). The
# plugin's tests run pytest sessions in subprocesses: two processes take
# them from 134 s to 93 s; the client's wait on servers of their own, which
# two processes would start twice for a few seconds' gain.
test: $(VENV)/.installed-dev services lint
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=20
	cd clients/riskrank-client && ../../$(BIN)/python -m pytest
	cd clients/pytest-riskrank && ../../$(BIN)/python -m pytest -n 2

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
