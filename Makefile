# `make demo` and `make test` each set up (or refresh) the virtualenv .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lmrec-installed
TORCH_VERSION ?= 2.13.0

.PHONY: setup demo test lint typecheck unit clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the CPU build of torch first (a local wheel here): unpinned, pip would take a CUDA build
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -e '.[dev,fast,llm]'
	touch $(STAMP)

# system packages the tests drive for real: PostgreSQL (storage tests) and Chromium (page test)
SYSTEM_STAMP := $(VENV)/.lmrec-system
$(SYSTEM_STAMP):
	@mkdir -p $(VENV)
	bash scripts/system-deps.sh
	touch $(SYSTEM_STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/lmrec demo

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: setup
	$(BIN)/mypy

unit: setup $(SYSTEM_STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache
