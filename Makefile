# Every target creates the virtual environment it needs, so a fresh clone
# works with nothing but Python 3.11+ installed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUNTIME := $(VENV)/.installed-runtime
STAMP_DEV := $(VENV)/.installed-dev
SERVE_ARGS ?=
SOAK_CYCLES ?= 200
SOAK_BACKEND ?= sqlite

.PHONY: serve test lint bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(STAMP_RUNTIME)

serve: $(STAMP_RUNTIME)
	$(BIN)/rewind serve $(SERVE_ARGS)

test: $(STAMP_DEV)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP_DEV)
	$(BIN)/ruff check rewind tests benchmarks
	$(BIN)/ruff format --check rewind tests benchmarks
	$(BIN)/mypy

bench: $(STAMP_DEV)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# SIGKILL a loaded server SOAK_CYCLES times; REWIND_CRASH_SEED=N repeats a run.
# SOAK_BACKEND=postgres soaks a server on a fresh PostgreSQL schema instead of SQLite.
soak: $(STAMP_DEV)
	REWIND_SOAK_CYCLES=$(SOAK_CYCLES) REWIND_SOAK_BACKEND=$(SOAK_BACKEND) \
		$(BIN)/python -m pytest -q -s tests/crash/test_crash_safety.py $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
