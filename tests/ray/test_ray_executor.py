"""RayExecutor on a real local Ray (two CPUs), with the Runner and a SQLite store."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from _tasks import boom, sleepy_batch

from service.config import Settings
from service.errors import TaskCancelled, TaskRaised, WorkerLost
from service.orchestration.runner import Runner
from service.results import RunResult
from service.spec import Grid, RunConfig, SweepSpec, TrainingSpec
from service.storage import make_store, upgrade_head
from workers.executor import RayExecutor

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]


def settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {"lease_s": 10.0, "runner_poll_s": 0.05, "max_inflight_runs": 4}
    return Settings(_env_file=None, **(base | kw))  # type: ignore[call-arg]


def test_a_small_sweep_runs_on_ray_and_is_stored(tmp_path: Path) -> None:
    from workers.tasks import run_batch

    url = f"sqlite:///{tmp_path}/ray.db"
    upgrade_head(url)
    store = make_store(url)
    spec = SweepSpec(
        model="diagonal",
        grid=Grid(d=[20], n=[30], weight_decay=[0.05], seed=list(range(6))),
        training=TrainingSpec(optimizer="convex"),
    )
    sid = store.create_sweep(spec, max_runs=100).id
    executor = RayExecutor(None)  # Ray is up already: no second init
    runner = Runner(store, executor, run_batch, settings=settings(pack_below_s=0.5))
    stats = runner.run_until_idle(timeout_s=60)

    rec = store.get_sweep(sid)
    assert rec.status == "succeeded" and rec.n_runs == 6
    assert rec.counts["succeeded"] + rec.counts["failed"] == 6 and rec.counts["running"] == 0
    runs = store.list_runs(sid, limit=100).items
    assert all(r.metrics is not None and r.metrics.excess_risk >= 0 for r in runs)
    assert all(r.attempts == 1 for r in runs)
    assert stats.recorded == 6 and stats.lost == 0
    assert stats.tasks_submitted < 6  # packed: convex d=20 runs are tiny
    executor.close()
    assert __import__("ray").is_initialized()  # it did not start Ray, so it left it up


def cfg(seed: int = 0, sleep_s: float | None = None, device: str = "cpu") -> RunConfig:
    training = TrainingSpec(timeout_s=sleep_s, device=device)  # type: ignore[arg-type]
    return RunConfig(model="diagonal", d=3, n=4, weight_decay=0.1, seed=seed, training=training)


def drain(executor: RayExecutor, timeout_s: float = 60.0) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while executor.inflight() and time.monotonic() < deadline:
        out += executor.completed(1.0)
    assert not executor.inflight(), (out, executor._tasks)
    return out


def test_errors_cancellation_and_resources() -> None:
    ex = RayExecutor(None, skip_init=True)
    ex.submit(boom, [(1, cfg(1)), (2, cfg(2))])
    ex.submit(sleepy_batch, [(3, cfg(3, sleep_s=600))])  # only a cancel ends it in time
    ex.submit(sleepy_batch, [(4, cfg(4))])
    ex.submit(sleepy_batch, [(5, cfg(5, device="cuda"))])
    early = ex.completed(0.5)  # whatever state task 3 is in now (queued, starting, running)
    ex.cancel([3])  # the executor repeats the cancel until the task is gone
    out = dict(early + drain(ex))
    assert sorted(out) == [1, 2, 3, 4, 5]
    assert isinstance(out[1], TaskRaised) and "ValueError: bad batch" in str(out[1])
    assert isinstance(out[3], TaskCancelled)
    assert out[4].status == "succeeded" and out[4].config_hash == cfg(4).config_hash()
    assert out[5].status == "failed" and "no GPU" in out[5].error

    assert ex.status() == {"nodes": 1, "cpus": 2.0, "gpus": 0.0, "tasks_in_flight": 0}
    assert ex._resources([cfg(device="auto")]) == {"num_cpus": 1, "num_gpus": 0}
    ex._gpus, ex._gpus_checked = 1.0, time.monotonic()  # as if a GPU node had joined
    assert ex._resources([cfg(device="auto")]) == {"num_cpus": 1, "num_gpus": 1}
    assert ex._resources([cfg(device="cpu")]) == {"num_cpus": 1, "num_gpus": 0}
    small = RayExecutor(None, skip_init=True, gpus_per_task=0.25)
    small._gpus, small._gpus_checked = 1.0, time.monotonic()
    assert small._resources([cfg(device="auto")]) == {"num_cpus": 1, "num_gpus": 0.25}
    tight = RayExecutor(None, skip_init=True, gpus_per_task=0.25, gpu_memory_mb=64)
    tight._gpus, tight._gpus_checked = 1.0, time.monotonic()  # a batch over its share: whole GPU
    assert tight._resources([cfg(device="auto")]) == {"num_cpus": 1, "num_gpus": 1}


@pytest.mark.gpu
def test_auto_device_runs_take_a_gpu_when_the_cluster_has_one(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA")
    from workers.tasks import run_batch

    ex = RayExecutor(None, skip_init=True)
    assert ex._resources([cfg(device="auto")]) == {"num_cpus": 1, "num_gpus": 1}
    url = f"sqlite:///{tmp_path}/gpu.db"
    upgrade_head(url)
    store = make_store(url)
    spec = SweepSpec(
        model="quadratic",
        grid=Grid(d=[20], alpha=[2.0], weight_decay=[0.01], seed=[0, 1]),
        training=TrainingSpec(optimizer="lbfgs", device="auto"),
    )
    sid = store.create_sweep(spec, max_runs=10).id
    Runner(store, ex, run_batch, settings=settings()).run_until_idle(timeout_s=120)
    runs = store.list_runs(sid, limit=10).items
    assert all(r.status in ("succeeded", "failed") and r.attempts == 1 for r in runs)
    assert all(r.metrics is None or r.metrics.device.startswith("cuda") for r in runs)


def test_an_exception_of_a_cancelled_task_counts_as_its_cancellation() -> None:
    from workers.executor import as_cancelled

    # Ray's interrupt can surface as another exception when it lands early in the worker
    raised = TaskRaised("task raised TypeError: 'Handlers' object is not callable")
    got = as_cancelled(raised)
    assert isinstance(got, TaskCancelled) and "'Handlers' object" in str(got)
    lost = WorkerLost("WorkerCrashedError: gone")
    assert as_cancelled(lost) is lost  # a lost worker is retried as before
    done = RunResult(config_hash="h", status="succeeded")
    assert as_cancelled(done) is done  # a task that finished first keeps its results
