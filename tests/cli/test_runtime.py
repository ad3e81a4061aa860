"""cli.runtime: the runtime `scalesweep serve` assembles (here with auth on and no runner),
and the local Ray it starts: quiet, nothing written outside its own folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
from factories import SMALL_SPEC as SPEC
from starlette.exceptions import StarletteDeprecationWarning

from cli.runtime import build_runtime
from service.auth import TokenService
from service.config import Settings
from service.storage import make_store
from service.storage.tokens import TokenStore

ROOT = Path(__file__).resolve().parents[2]

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient


def test_serve_with_auth_on_verifies_tokens_from_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/serve.db"
    settings = Settings(_env_file=None, database_url=url, auth="on")  # type: ignore[call-arg]
    rt = build_runtime(settings, runner=False)
    assert rt.app is not None and rt.runner is None and rt.executor is None
    try:
        assert "no active token" in capsys.readouterr().err
        store = make_store(url)
        try:
            token = TokenService(TokenStore.of(store)).create("ci", "write", team="a").token
        finally:
            store.close()
        with TestClient(rt.app) as c:
            assert c.get("/v1/sweeps").status_code == 401
            h = {"Authorization": f"Bearer {token}"}
            assert c.post("/v1/sweeps", json=SPEC, headers=h).status_code == 201
            assert len(c.get("/v1/sweeps", headers=h).json()["items"]) == 1
    finally:
        rt.close()


LOCAL_RAY = """
import ray
from cli.runtime import build_executor
from service.config import Settings

settings = Settings(_env_file=None, database_url="sqlite://")
executor, status = build_executor(settings, num_cpus=1)
try:
    assert status is not None and status()["nodes"] == 1
    print("task:", ray.get(ray.remote(lambda: 41 + 1).remote()))  # a worker authenticates too
finally:
    executor.close()
"""


@pytest.mark.ray
def test_a_local_ray_starts_quietly_and_writes_nothing_outside_its_folder(tmp_path: Path) -> None:
    """The local Ray scalesweep starts (``serve``, ``demo``, ``reproduce``): no token file
    under HOME, no files left in the temporary folder, no notice about token authentication."""
    home = tmp_path / "home"
    home.mkdir()
    tmp = Path(tempfile.mkdtemp(prefix="ss-t-"))  # short: Ray's socket paths are limited
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SCALESWEEP_"))}
    env.update(HOME=str(home), TMPDIR=str(tmp))
    try:
        done = subprocess.run(
            [sys.executable, "-c", LOCAL_RAY], capture_output=True, text=True, env=env,
            cwd=ROOT, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "task: 42" in done.stdout
        assert "Token authentication" not in done.stderr, done.stderr
        assert "Started a local Ray" not in done.stderr, done.stderr
        assert [p.relative_to(home) for p in home.rglob("*")] == []
        assert [p.relative_to(tmp) for p in tmp.rglob("*")] == []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
