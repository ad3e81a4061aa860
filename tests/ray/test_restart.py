"""Restart safety: SIGKILL the runner process mid-sweep, start another on the same database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _restart_runner import RUNNER_LEASE_S
from _tasks import LOG_ENV

from service.spec import Grid, SweepSpec, TrainingSpec
from service.storage import make_store, upgrade_head

HERE = Path(__file__).resolve().parent
N_RUNS = 16


def _start(
    url: str, sweep_id: int, runner_id: str, log: Path, out: Path
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, **{LOG_ENV: str(log)})
    return subprocess.Popen(
        [sys.executable, str(HERE / "_restart_runner.py"), url, str(sweep_id), runner_id],
        env=env,
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _wait(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_killed_runner_is_replaced_and_nothing_is_lost_or_recomputed(
    tmp_path: Path, ray_env: None
) -> None:
    url = f"sqlite:///{tmp_path}/restart.db"
    upgrade_head(url)
    store = make_store(url)
    spec = SweepSpec(
        model="diagonal",
        grid=Grid(d=[3], n=[4], weight_decay=[0.1], seed=list(range(N_RUNS))),
        training=TrainingSpec(timeout_s=0.3),  # each stand-in run sleeps 0.3 s
    )
    sid = store.create_sweep(spec, max_runs=100).id
    log = tmp_path / "exec.log"
    log.touch()

    first = _start(url, sid, "first", log, tmp_path / "first.out")
    try:
        _wait(lambda: store.get_sweep(sid).counts["succeeded"] >= 5, 60, "five finished runs")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    killed_at = time.monotonic()
    before = {r.id: r for r in store.list_runs(sid, limit=100).items}
    done_before = {i: r for i, r in before.items() if r.status == "succeeded"}
    orphans = [i for i, r in before.items() if r.status == "running"]
    assert 5 <= len(done_before) < N_RUNS and orphans
    assert store.metrics().lease_holder == "first"  # the dead runner's lease is not expired yet

    second = _start(url, sid, "second", log, tmp_path / "second.out")
    try:
        state = {i: (r.status, r.attempts) for i, r in before.items()}
        while (holder := store.metrics().lease_holder) != "second":
            assert holder in ("first", None) and time.monotonic() - killed_at < 30
            if holder == "first":  # the newcomer waits: nothing moves while the old lease holds
                now = {r.id: (r.status, r.attempts) for r in store.list_runs(sid, limit=100).items}
                assert now == state
            time.sleep(0.05)
        waited = time.monotonic() - killed_at
        assert second.wait(60) == 0, (tmp_path / "second.out").read_text()
    finally:
        second.kill()
    assert waited > RUNNER_LEASE_S / 2

    after = {r.id: r for r in store.list_runs(sid, limit=100).items}
    rec = store.get_sweep(sid)
    assert rec.status == "succeeded" and rec.counts["succeeded"] == N_RUNS
    for i, r in done_before.items():  # finished results were not recomputed
        assert (after[i].finished_at, after[i].attempts) == (r.finished_at, r.attempts)
    assert all(after[i].attempts == 2 for i in orphans)
    starts = [int(line.split()[0]) for line in log.read_text().splitlines()]
    assert all(starts.count(r.config.seed) == 1 for r in done_before.values())
    assert set(starts) == set(range(N_RUNS))  # every run executed; none lost
    assert store.metrics().lease_holder is None  # released on the clean stop


def _convex_sweep(store: Any, seeds: int) -> int:
    spec = SweepSpec(
        model="diagonal",
        grid=Grid(d=[20], n=[30], weight_decay=[0.05], seed=list(range(seeds))),
        training=TrainingSpec(optimizer="convex"),
    )
    return int(store.create_sweep(spec, max_runs=10_000).id)


def test_python_m_workers_stops_cleanly_on_sigterm(tmp_path: Path, ray_env: None) -> None:
    url = f"sqlite:///{tmp_path}/serve.db"
    upgrade_head(url)
    store = make_store(url)
    sid = _convex_sweep(store, seeds=400)
    out = tmp_path / "workers.out"
    env = dict(os.environ, SCALESWEEP_MAX_INFLIGHT_RUNS="4", SCALESWEEP_PACK_BELOW_S="0.001")
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers", "--no-ray", "--database-url", url, "--runner-id", "w1"],
        env=env,
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait(lambda: store.get_sweep(sid).counts["succeeded"] >= 10, 60, "ten finished runs")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, out.read_text()
    finally:
        proc.kill()
    rec = store.get_sweep(sid)
    assert rec.counts["running"] == 0, out.read_text()  # what was in flight was handed back
    assert rec.counts["succeeded"] + rec.counts["failed"] + rec.counts["queued"] == 400
    assert store.metrics().lease_holder is None
    assert "stopping" in out.read_text()


def test_the_runtime_runner_thread_runs_the_real_task(tmp_path: Path) -> None:
    from cli.runtime import build_runtime
    from service.config import Settings

    url = f"sqlite:///{tmp_path}/thread.db"
    settings = Settings(_env_file=None, database_url=url, runner_poll_s=0.02)  # type: ignore[call-arg]
    rt = build_runtime(settings, app=False, no_ray=True)
    sid = _convex_sweep(rt.store, seeds=8)
    rt.start_runner_thread()
    try:
        _wait(lambda: rt.store.get_sweep(sid).status == "succeeded", 60, "the sweep")
    finally:
        rt.close()  # stops and joins the runner thread, then closes the store
    store = make_store(url)
    assert store.metrics().lease_holder is None  # released on the way out
    runs = store.list_runs(sid, limit=100).items
    assert all(r.metrics is not None and r.metrics.stop_reason == "duality_gap" for r in runs)
