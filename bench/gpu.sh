#!/usr/bin/env bash
# The prepared script for a GPU machine (make bench-gpu): the CUDA tests, then the GPU
# figures of bench_scale, each printed as soon as it is measured; about 3 minutes in all.
#
# It runs where the project's .venv has a CUDA build of torch, or on a bare GPU machine as
# ../shared/GPU.md describes one (python3 with torch, numpy, scipy, pytest; no pydantic,
# SQLAlchemy, psycopg, FastAPI or Ray, and no network): the missing pure-Python packages come
# from bench/gpu-wheels (made here by `make gpu-wheels`, carried to the GPU machine with the
# working tree) and are installed into a folder of their own on PYTHONPATH. Ray's own GPU
# test needs Ray and is left out there.
set -u
cd "$(dirname "$0")/.."
root=$PWD
py=${PYTHON:-python3}
if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  py=.venv/bin/python
  tests="tests/workers tests/ray"
else
  tests="tests/workers"
  if ! "$py" -c "import pydantic, pydantic_settings, sqlalchemy, alembic, psycopg, yaml" 2>/dev/null; then
    if ! ls bench/gpu-wheels/*.whl >/dev/null 2>&1; then
      echo "bench/gpu.sh: $py lacks pydantic/SQLAlchemy/psycopg and bench/gpu-wheels is empty (make gpu-wheels)" >&2
      exit 1
    fi
    site=${TMPDIR:-/tmp}/scalesweep-site
    "$py" -m pip install -q --no-index --no-deps --target "$site" bench/gpu-wheels/*.whl || exit 1
    export PYTHONPATH="$site:${PYTHONPATH:-}"
  fi
fi
export PYTHONPATH="$root:${PYTHONPATH:-}"
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
echo "== CUDA tests (pytest -m gpu)"
start=$(date +%s)
timeout 90 "$py" -m pytest -q -p no:randomly -p no:cacheprovider -m gpu $tests
echo "== GPU figures (bench_scale --gpu-only), after $(( $(date +%s) - start )) s"
timeout 150 "$py" bench/bench_scale.py --gpu-only --quick
echo "== done after $(( $(date +%s) - start )) s"
