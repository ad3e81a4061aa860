# The two commands of the README: `make demo` (main job) and `make test` (lint, types, tests).
# Each first builds the local virtual environment .venv from the lock file:
#   1. torch in its own step (the CPU build; bring your own CUDA build on GPU machines: an
#      importable torch is kept), so pip never pulls a multi-GB CUDA build;
#   2. every other package at the version pinned in requirements.lock (server, workers, dev
#      tools), then the project itself without dependencies, then `pip check`.
# pyproject.toml keeps ranges; `make lock` refreshes requirements.lock from them.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.*
PIP_SPEC ?= pip==26.3
LOCK := requirements.lock
LOCK_VENV := .lock-venv
TEST_ENV := OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: venv demo test test-random lint bench bench-gpu gpu-wheels lock clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(PIP_SPEC)"
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip check
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/scalesweep demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The tests use small matrices: one BLAS thread per process is faster than several on 2 cores.
# Fixed order here (CI); `make test-random` shuffles it (pytest-randomly) and says the seed
# to replay the same order with: make test-random SEED=...
test: lint
	$(TEST_ENV) $(VENV)/bin/pytest -q -p no:randomly

test-random: $(STAMP)
	@seed=$${SEED:-$$($(PYTHON) -c 'import random; print(random.randrange(10**6))')}; \
	echo "random order, seed $$seed (replay: make test-random SEED=$$seed)"; \
	$(TEST_ENV) $(VENV)/bin/pytest -q --randomly-seed=$$seed

bench: $(STAMP)
	$(PY) bench/bench_scale.py --quick

# On a machine with CUDA: the GPU tests (marked gpu), then the GPU figures of bench_scale,
# each printed as it comes; with the project's .venv (a CUDA torch) or on a bare GPU machine
# (../shared/GPU.md) with the wheels of `make gpu-wheels` (no network there, no venv built).
bench-gpu:
	bash bench/gpu.sh

# The pure-Python packages a bare GPU machine lacks (../shared/GPU.md: Python 3.12), at the
# lock's versions, for bench/gpu.sh (bench/gpu-wheels is not tracked: carry it along).
GPU_PY ?= 3.12
gpu-wheels:
	rm -rf bench/gpu-wheels
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PY) \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux2014_x86_64 -d bench/gpu-wheels \
	  $$(grep -iE '^(pydantic|pydantic[_-]core|pydantic[_-]settings|python[_-]dotenv|annotated[_-]types|typing[_-]inspection|typing[_-]extensions|sqlalchemy|greenlet|alembic|mako|markupsafe|psycopg|psycopg[_-]binary|pyyaml|pytest[_-]timeout)==' $(LOCK))

# Resolve pyproject's ranges afresh in a throw-away venv (torch first, as above) and pin
# everything that got installed, except torch itself and the project.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q "$(PIP_SPEC)"
	$(LOCK_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(LOCK_VENV)/bin/python -m pip install -q -e ".[dev]"
	{ echo "# Pinned by \`make lock\` (Python 3.11, $$(uname -m)) from pyproject.toml's ranges."; \
	  echo "# torch is installed in its own step first (Makefile: TORCH_SPEC), so it is not here."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable | grep -viE '^torch(==| @)'; \
	} > $(LOCK)
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) $(LOCK_VENV) .mypy_cache .ruff_cache .pytest_cache
