"""Losing a worker node mid-sweep: its runs are retried elsewhere, each result stored once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _tasks import LOG_ENV, sleepy
from factories import BatchOf

from service.config import Settings
from service.orchestration.runner import Runner
from service.spec import Grid, SweepSpec, TrainingSpec
from service.storage import make_store, upgrade_head
from workers.executor import RayExecutor

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def exec_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The file where the stand-in task notes each start (workers inherit the variable)."""
    path = tmp_path_factory.mktemp("nodeloss") / "exec.log"
    path.touch()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(LOG_ENV, str(path))
        yield path


@pytest.fixture(scope="module")
def cluster(ray_env: None, exec_log: Path) -> Iterator[Any]:
    """A head without CPUs (the driver's node) and one worker node with two CPUs."""
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    c.add_node(num_cpus=2)
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


def _wait(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("batching", ["off", "on"])
def test_a_lost_node_is_survived_with_one_result_per_run(
    cluster: Any, exec_log: Path, tmp_path: Path, batching: str
) -> None:
    """batching on: the six runs go in two tasks of three; a task lost with its node comes
    back as its runs."""
    exec_log.write_text("")
    url = f"sqlite:///{tmp_path}/loss.db"
    upgrade_head(url)
    store = make_store(url)
    spec = SweepSpec(
        model="diagonal",
        grid=Grid(d=[3], n=[4], weight_decay=[0.1], seed=list(range(6))),
        training=TrainingSpec(timeout_s=2.0),  # the stand-in task sleeps this long
    )
    sid = store.create_sweep(spec, max_runs=100).id
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        lease_s=3.0,
        runner_poll_s=0.05,
        max_inflight_runs=6,
        pack_below_s=1e-6,
        batching=batching,
        batch_max_runs=3,
    )
    executor = RayExecutor(None)  # already connected to the cluster
    runner = Runner(store, executor, BatchOf(sleepy), settings=settings, check_every_s=0.2)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run_forever, args=(stop,))
    thread.start()
    try:
        victim = cluster.list_all_nodes()[1]
        _wait(lambda: len(exec_log.read_text().split()) >= 4, 30, "two tasks executing")
        cluster.remove_node(victim)
        cluster.add_node(num_cpus=2)
        _wait(lambda: store.get_sweep(sid).status == "succeeded", 60, "the sweep")
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()

    rec = store.get_sweep(sid)
    assert rec.counts["succeeded"] == 6 == rec.n_runs
    runs = store.list_runs(sid, limit=100).items
    retried = [r for r in runs if r.attempts >= 2]
    assert retried, "no run was retried after the node loss"
    assert runner.stats.lost >= len(retried) and runner.stats.recorded == 6
    if batching == "on":  # both batches were on the lost node: all six came back as runs
        assert len(retried) == 6 and runner.stats.tasks_submitted < runner.stats.claimed
    assert all(r.status == "succeeded" and r.metrics is not None for r in runs)
    started = [int(line.split()[0]) for line in exec_log.read_text().splitlines()]
    twice = {s for s in started if started.count(s) >= 2}
    assert twice <= {r.config.seed for r in retried}  # only a retried run ran again
    if batching == "off":  # one run per task: a retried run was running when the node died
        assert {r.config.seed for r in retried} <= twice
