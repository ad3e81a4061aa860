# The two commands of the README: `make demo` (main job) and `make test` (lint, types, tests).
# Each first builds the local virtual environment .venv (torch's CPU build first, in its own step,
# so pip never pulls a multi-GB CUDA build; bring your own CUDA torch on GPU machines).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.*

.PHONY: venv demo test lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/scalesweep demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The tests use small matrices: one BLAS thread per process is faster than several on 2 cores.
test: lint
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) bench/bench_training.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
