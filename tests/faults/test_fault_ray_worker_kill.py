"""kill -9 the Ray worker process running a task: the run is retried and finishes once."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _faults_util import (
    HOLD_ENV,
    LOG_ENV,
    assert_finished_once,
    audit,
    executions,
    sleepy,
    wait_for,
)
from factories import BatchOf

from service.config import Settings
from service.orchestration.runner import Runner
from service.spec import Grid, SweepSpec, TrainingSpec
from service.storage import make_store, upgrade_head

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.ray

N_RUNS = 6
VICTIMS = (0, 1)  # the first two runs claimed; both block until killed


@pytest.fixture(scope="module")
def ray_faults(faults_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One local Ray (two CPUs) whose workers log task starts and hold the victims."""
    d = tmp_path_factory.mktemp("raykill")
    with pytest.MonkeyPatch.context() as mp:  # set before ray.init: the workers inherit them
        mp.setenv(LOG_ENV, str(d / "exec.log"))
        mp.setenv(HOLD_ENV, f"{','.join(map(str, VICTIMS))}:{d / 'released'}")
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield d
        finally:
            ray.shutdown()


def _started(log: Path) -> dict[int, int]:
    """seed -> pid of its first start."""
    out: dict[int, int] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            seed, pid = map(int, line.split())
            out.setdefault(seed, pid)
    return out


def test_a_killed_ray_worker_is_retried_and_each_run_stored_once(
    ray_faults: Path, tmp_path: Path
) -> None:
    from workers.executor import RayExecutor

    log = ray_faults / "exec.log"
    url = f"sqlite:///{tmp_path}/raykill.db"
    upgrade_head(url)
    store = make_store(url)
    spec = SweepSpec(
        model="diagonal",
        grid=Grid(d=[3], n=[4], weight_decay=[0.1], seed=list(range(N_RUNS))),
        training=TrainingSpec(timeout_s=0.3),  # the stand-in task sleeps this long
    )
    sid = store.create_sweep(spec, max_runs=100).id
    # one run per task (SCALESWEEP_BATCHING=off): the two victims must block in two worker
    # processes; batched, both could sit in one task and the second would never start (the
    # loss of a batched task is tests/ray/test_node_loss.py's, batching on and off)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        lease_s=10.0,
        runner_poll_s=0.05,
        max_inflight_runs=2,
        pack_below_s=1e-6,
        batching="off",
    )
    runner = Runner(
        store,
        RayExecutor(None, skip_init=True),
        BatchOf(sleepy),
        settings=settings,
        check_every_s=0.2,
    )
    stop = threading.Event()
    thread = threading.Thread(target=runner.run_forever, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: set(VICTIMS) <= _started(log).keys(), 60, "the victims to start")
        pids = _started(log)
        victim_pids = {pids[s] for s in VICTIMS}
        assert len(victim_pids) == len(VICTIMS)  # two worker processes, one task each
        assert os.getpid() not in victim_pids
        for pid in victim_pids:
            os.kill(pid, signal.SIGKILL)  # the victims are still blocked: they never return
        (ray_faults / "released").touch()  # their retries run normally
        wait_for(lambda: store.get_sweep(sid).status == "succeeded", 90, "the sweep")
    finally:
        (ray_faults / "released").touch()
        stop.set()
        thread.join(60)
    assert not thread.is_alive()

    a = audit(url, sid)
    assert_finished_once(a, N_RUNS)
    by_seed = a.by_seed()
    for seed, r in by_seed.items():
        expected = 2 if seed in VICTIMS else 1  # retried once under a new lease, else never
        assert r.attempts == expected, r
    started = executions(log)
    assert started == {s: (2 if s in VICTIMS else 1) for s in range(N_RUNS)}
    assert runner.stats.lost == len(VICTIMS) and runner.stats.requeued == len(VICTIMS)
    assert runner.stats.recorded == N_RUNS and runner.stats.claimed == N_RUNS + len(VICTIMS)
