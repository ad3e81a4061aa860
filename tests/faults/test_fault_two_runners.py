"""Two runner processes on one PostgreSQL database: one holds the runner lease, the other
waits without claiming; kill -9 the holder and the other takes over when the lease expires."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from _faults_util import assert_finished_once, audit, wait_for

from service.spec import Grid, SweepSpec, TrainingSpec
from service.storage import make_store, upgrade_head

pytestmark = pytest.mark.postgres

N_RUNS = 32
LEASE_S = 3.0
"""SCALESWEEP_LEASE_S: the run leases and (python -m workers) the runner lease."""


def _runner(url: str, runner_id: str, out: Path) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        SCALESWEEP_LEASE_S=str(LEASE_S),
        SCALESWEEP_MAX_INFLIGHT_RUNS="2",
        SCALESWEEP_PACK_BELOW_S="0.001",  # one run per task
        SCALESWEEP_RUNNER_POLL_S="0.05",
        SCALESWEEP_RUNNER_FLUSH_S="0",  # results visible as they come, not 0.5 s of them at once
        OPENBLAS_NUM_THREADS="1",
    )
    argv = [sys.executable, "-m", "workers", "--no-ray", "--database-url", url]
    return subprocess.Popen(
        [*argv, "--runner-id", runner_id],
        env=env,
        cwd=out.parent,  # no .env of the repository
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
    )


def test_the_waiting_runner_takes_over_from_a_killed_holder(
    pg_url: str, tmp_path: Path, faults_env: None
) -> None:
    upgrade_head(pg_url)
    store = make_store(pg_url)
    spec = SweepSpec(  # real runs of 0.03-0.05 s each here (convex LASSO, d=1000, n=800)
        model="diagonal",
        grid=Grid(d=[1000], n=[800], weight_decay=[0.01], seed=list(range(N_RUNS))),
        training=TrainingSpec(optimizer="convex"),
    )
    out = {rid: tmp_path / f"{rid}.out" for rid in ("r1", "r2")}
    procs = {rid: _runner(pg_url, rid, path) for rid, path in out.items()}
    try:
        # both up and polling before there is any work: which one holds the lease is chance
        for rid, path in out.items():
            wait_for(lambda p=path, r=rid: f"runner {r} started" in p.read_text(), 60, rid)
        wait_for(lambda: store.metrics().lease_holder is not None, 60, "a lease holder")
        holder = store.metrics().lease_holder
        assert holder in procs
        waiter = "r2" if holder == "r1" else "r1"
        sid = store.create_sweep(spec, max_runs=100).id
        # the holder works while the waiter polls for the lease (every 50 ms)
        wait_for(lambda: store.get_sweep(sid).counts.get("succeeded", 0) >= 3, 60, "3 runs")
        assert procs[waiter].poll() is None, out[waiter].read_text()
        mid = audit(pg_url, sid)
        assert {rid for r in mid.runs.values() for _, rid, _ in r.attempt_rows} == {holder}
        assert store.metrics().lease_holder == holder  # the waiter waited and claimed nothing

        procs[holder].send_signal(signal.SIGKILL)
        assert procs[holder].wait(30) == -signal.SIGKILL
        at_kill = audit(pg_url, sid)  # finished runs cannot change any more: a safe snapshot
        done = {i: r for i, r in at_kill.runs.items() if r.status == "succeeded"}
        assert len(done) < N_RUNS

        wait_for(lambda: store.metrics().lease_holder == waiter, 60, "the waiter to take over")
        wait_for(lambda: store.get_sweep(sid).status == "succeeded", 90, "the sweep")
        procs[waiter].send_signal(signal.SIGTERM)
        assert procs[waiter].wait(60) == 0, out[waiter].read_text()
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(30)
    assert store.metrics().lease_holder is None  # the waiter released it on SIGTERM

    a = audit(pg_url, sid)
    assert_finished_once(a, N_RUNS)  # one result each; the orphans' first attempts "lost"
    # the orphans: in flight at the holder when it died; expired, requeued by the waiter, rerun
    orphans = {i for i, r in a.runs.items() if r.attempt_rows[0][1:] == (holder, "lost")}
    assert orphans and not orphans & done.keys()
    for i, r in a.runs.items():
        if i in orphans:
            assert r.attempts == 2 and [x[1] for x in r.attempt_rows] == [holder, waiter], r
        else:
            assert r.attempts == 1, r
        if i in done:  # not recomputed
            assert (r.finished_at, r.attempt_rows) == (done[i].finished_at, done[i].attempt_rows)
    by_runner = Counter(x[1] for r in a.runs.values() for x in r.attempt_rows)
    assert sum(by_runner.values()) == N_RUNS + len(orphans)
    assert by_runner[waiter] == N_RUNS - len(done)
