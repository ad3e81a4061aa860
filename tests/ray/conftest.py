"""Real-Ray tests: few and fast; never under xdist (Ray testing tips).

Stand-in tasks live in ``_tasks.py`` next to this file; ``ray_env`` puts this directory (and
``tests/``, for ``factories``) on the PYTHONPATH that Ray's worker processes inherit, so they
can unpickle them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.fixture(scope="module")
def ray_env() -> Iterator[None]:
    """PYTHONPATH with the repository, tests/ (factories) and this directory, for Ray workers
    and subprocesses."""
    old = os.environ.get("PYTHONPATH")
    paths = [str(ROOT), str(ROOT / "tests"), str(HERE), old]
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    yield
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="module")
def ray_local(ray_env: None) -> Iterator[None]:
    """One local Ray with two CPUs for the whole module."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("Ray tests do not run under xdist")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
