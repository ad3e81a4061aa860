"""The team deployment on a real Ray cluster with token authentication.

Started the way a team starts one (docker-compose.yml does the same in containers): a head
node (``ray start --head --block``) and a second node joining it (``ray start --address
... --block``), both with ``RAY_AUTH_MODE=token`` and one shared ``RAY_AUTH_TOKEN``; then
``scalesweep serve`` with ``RAY_ADDRESS`` and the same token. ``/healthz`` must report both
nodes, a sweep must finish on the cluster, and a driver without the token must be refused.
Every process is stopped by its pid (never ``ray stop``, which would stop other Rays too).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.runtime import free_port
from service.client import Client

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_env")]

BIN = Path(sys.executable).parent
SPEC: dict[str, Any] = {
    "name": "on a two-node cluster",
    "model": "diagonal",
    "grid": {"d": [20], "n": [30, 60], "weight_decay": [0.05], "seed": [0, 1, 2]},
    "training": {"optimizer": "convex"},
}


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.25)


class Processes:
    """Background processes in their own sessions, stopped by pid (SIGTERM, then SIGKILL)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def running(self, name: str, marker: str) -> bool:
        """``marker`` is in the process's log; fails at once if the process has exited."""
        proc = dict(self.started)[name]
        assert proc.poll() is None or marker in self.log(name), f"{name}:\n{self.log(name)}"
        return marker in self.log(name)

    def stop_all(self) -> None:
        for _, proc in reversed(self.started):  # serve first, the head last
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Processes, dict[str, str], int]]:
    """A two-node Ray cluster with token authentication: (processes, env with token, port)."""
    token = secrets.token_hex(32)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    env.pop("RAY_ADDRESS", None)
    port = free_port()
    # its own temp dir (short: Ray's socket paths must fit in 107 bytes): nothing of this
    # cluster (sessions, ray_current_cluster) is left where another `ray.init` would find it
    ray_tmp = Path(tempfile.mkdtemp(prefix="ss-ray-"))
    common = ["--num-cpus=1", "--disable-usage-stats", f"--temp-dir={ray_tmp}", "--block"]
    procs = Processes(tmp_path)
    try:
        procs.start(
            "head",
            [str(BIN / "ray"), "start", "--head", f"--port={port}", "--include-dashboard=false",
             *common],
            env,
        )  # fmt: skip
        wait_until(lambda: procs.running("head", "Ray runtime started"), 90, "the Ray head")
        procs.start(
            "worker", [str(BIN / "ray"), "start", f"--address=127.0.0.1:{port}", *common], env
        )
        wait_until(lambda: procs.running("worker", "Ray runtime started"), 90, "the 2nd node")
        yield procs, env, port
    finally:
        procs.stop_all()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_a_sweep_runs_on_a_two_node_cluster_with_token_auth(
    cluster: tuple[Processes, dict[str, str], int], tmp_path: Path
) -> None:
    procs, env, ray_port = cluster
    api_port = free_port()
    serve_env = {
        **env,
        "RAY_ADDRESS": f"127.0.0.1:{ray_port}",
        "SCALESWEEP_DATABASE_URL": f"sqlite:///{tmp_path / 'cluster.db'}",
        "SCALESWEEP_AUTH": "off",
        "OPENBLAS_NUM_THREADS": "1",
    }
    serve = procs.start(
        "serve", [str(BIN / "scalesweep"), "serve", "--port", str(api_port)], serve_env
    )
    base = f"http://127.0.0.1:{api_port}"

    def ray_ready() -> bool:
        assert serve.poll() is None, procs.log("serve")
        try:
            ray = httpx.get(f"{base}/healthz", timeout=5).json().get("ray", {})
        except httpx.HTTPError:
            return False
        return bool(ray.get("ok")) and ray["info"]["nodes"] == 2

    wait_until(ray_ready, 120, "scalesweep serve to see both Ray nodes")
    health = httpx.get(f"{base}/healthz", timeout=5).json()
    assert health["status"] == "ok" and health["ray"]["info"]["cpus"] == 2.0
    with Client(base) as client:
        sid = client.submit(SPEC).id
        final = client.wait_for(sid, timeout_s=180)
        runs = list(client.list_runs(sid))
    assert final.status == "succeeded" and final.counts["succeeded"] == 6
    assert all(r.attempts == 1 and r.metrics is not None for r in runs)

    # the cluster really requires the token: a driver without it is refused
    no_token = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}
    refused = subprocess.run(
        [sys.executable, "-c", f"import ray; ray.init(address='127.0.0.1:{ray_port}')"],
        env={**no_token, "HOME": str(tmp_path)},  # and no ~/.ray/auth_token either
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0
    assert "token" in (refused.stdout + refused.stderr).lower()
