"""A run over its wall-time limit (training.timeout_s), through the runner: stopped, failed
with the reason, recorded once, not retried; the sweep's other runs are unaffected."""

from __future__ import annotations

import re
from pathlib import Path

from _faults_util import assert_finished_once, audit

from service.config import Settings
from service.orchestration.executor import InlineExecutor
from service.orchestration.runner import Runner
from service.spec import Grid, SweepSpec, TrainingSpec
from service.storage import make_store, upgrade_head

MAX_STEPS = 10_000_000


def test_a_run_over_its_wall_time_is_stopped_and_recorded_failed(tmp_path: Path) -> None:
    from workers.tasks import run_batch

    url = f"sqlite:///{tmp_path}/timeout.db"
    upgrade_head(url)
    store = make_store(url)
    # plain gradient descent, ill-conditioned (tiny weight decay), with a tolerance it cannot
    # reach in ten million steps: only the wall-time limit stops it (with a 30 s limit instead
    # the same run is still going after 78,601 steps; 0.3 s allows about a thousand)
    slow = SweepSpec(
        model="diagonal",
        grid=Grid(d=[200], n=[200], weight_decay=[1e-4], seed=[0, 1]),
        training=TrainingSpec(optimizer="gd", max_steps=MAX_STEPS, tol=1e-15, timeout_s=0.3),
    )
    fast = SweepSpec(  # tiny convex runs, far below the same kind of limit
        model="diagonal",
        grid=Grid(d=[20], n=[30], weight_decay=[0.05], seed=[0, 1]),
        training=TrainingSpec(optimizer="convex", timeout_s=60.0),
    )
    slow_id = store.create_sweep(slow, max_runs=10).id
    fast_id = store.create_sweep(fast, max_runs=10).id
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, lease_s=30.0, runner_poll_s=0.02, max_inflight_runs=2
    )
    runner = Runner(store, InlineExecutor(), run_batch, settings=settings)
    stats = runner.run_until_idle(timeout_s=120)

    timed_out = audit(url, slow_id)
    assert_finished_once(timed_out, 2, status="failed")  # one attempt each: not retried
    for r in timed_out.runs.values():
        assert r.error is not None and r.error.startswith("timeout"), r.error
        assert not r.has_metrics
        m = re.search(r"exceeded timeout_s=0\.3 at step (\d+)", r.error)
        assert m is not None and int(m.group(1)) < MAX_STEPS, r.error  # stopped early
    assert_finished_once(audit(url, fast_id), 2)
    assert stats.recorded == 4 and stats.lost == 0 and stats.requeued == 0
    assert store.metrics().lease_holder is not None  # run_until_idle keeps it; release it
    runner.shutdown(0)
    assert store.metrics().lease_holder is None
