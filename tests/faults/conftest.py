"""Fault-injection tests (notes/faults.md): kill -9 a Ray worker, restart PostgreSQL, SIGTERM
the server, kill the runner lease holder, concurrent clients, a run over its wall-time limit.

Every test checks counts exactly: each run ends with exactly one result, nothing is lost or
duplicated, attempts are recorded. Never under xdist (Ray, subprocesses, signals).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from _faults_util import HERE, ROOT


@pytest.fixture(scope="module")
def faults_env() -> Iterator[None]:
    """PYTHONPATH with the repository, tests/ (factories) and this directory, for Ray workers
    and subprocesses."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("fault-injection tests do not run under xdist")
    with pytest.MonkeyPatch.context() as mp:
        old = os.environ.get("PYTHONPATH")
        paths = [str(ROOT), str(ROOT / "tests"), str(HERE), old]
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, paths)))
        yield
