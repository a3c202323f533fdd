# `make demo` and `make test` each set up (or refresh) the virtualenv .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lmrec-installed
TORCH_VERSION ?= 2.13.0
# llama-cpp-python builds from source. A native build (-march=native) turns on llama.cpp's
# AMX kernels on Sapphire Rapids, which segfault in VMs (ggml-org/llama.cpp#20824), and pip's
# wheel cache would hand a build made on one CPU to another: build one portable AVX2 wheel
# per version into our own folder and install from there.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
LLAMA_WHEELS ?= $(HOME)/.cache/lmrec/wheels/llama-cpp-python-$(LLAMA_VERSION)-avx2

.PHONY: setup demo test lint typecheck unit clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the CPU build of torch first (a local wheel here): unpinned, pip would take a CUDA build
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE)" $(BIN)/python -m pip wheel --quiet --no-cache-dir --no-deps \
	    -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps \
	  $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
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
