"""Restart PostgreSQL mid-sweep (twice): the runner reconnects, keeps the results it had in
memory, and the sweep finishes with exactly one result per run.

The server restarted is a private PostgreSQL cluster of this test (``initdb`` + ``pg_ctl`` in a
temporary directory, on a free port), not the shared one at 127.0.0.1:5432: restarting that
one would also cut every other connection to it -- the test session's own admin connection
in tests/conftest.py (its DROP DATABASE at the end would fail) and other sessions' tests.
Skipped where the PostgreSQL server binaries are not installed.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _faults_util import (
    LOG_ENV,
    assert_finished_once,
    audit,
    executions,
    free_port,
    sleepy,
    wait_for,
)
from factories import BatchOf

from service.config import Settings
from service.orchestration.executor import InlineExecutor
from service.orchestration.runner import Runner
from service.spec import Grid, SweepSpec, TrainingSpec
from service.storage import make_store, upgrade_head

pytestmark = pytest.mark.postgres

N_RUNS = 12
RESTART_AFTER = (3, 7)  # succeeded runs before each restart


def _bindir() -> Path | None:
    for cand in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (cand / "pg_ctl").exists() and (cand / "initdb").exists():
            return cand
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster: initdb, start, stop (fast), start again."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="scalesweep-faults-pg-"))
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the server as postgres
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.data = self.dir / "data"
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self.prefix, str(self.bindir / tool), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (cmd, done.stdout[-2000:], done.stderr[-2000:])

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        logfile = str(self.dir / "log")
        self._run("pg_ctl", "-D", str(self.data), "-l", logfile, "-w", "-o", opts, "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    bindir = _bindir()
    if bindir is None:
        pytest.skip("the PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a postgres user to run the server as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser")
    pg = PrivatePostgres(bindir)
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()


class _Failures(logging.Handler):
    """Counts the runner loop's "runner step failed" errors."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("runner step failed"):
            self.count += 1


def test_the_runner_survives_postgres_restarts_with_exact_counts(
    private_pg: PrivatePostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = private_pg.url
    upgrade_head(url)
    store = make_store(url)
    log = tmp_path / "exec.log"
    monkeypatch.setenv(LOG_ENV, str(log))  # the inline stand-in task notes each start
    spec = SweepSpec(
        model="diagonal",
        grid=Grid(d=[3], n=[4], weight_decay=[0.1], seed=list(range(N_RUNS))),
        training=TrainingSpec(timeout_s=0.3),  # the stand-in task sleeps this long
    )
    sid = store.create_sweep(spec, max_runs=100).id
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, lease_s=10.0, runner_poll_s=0.05, max_inflight_runs=2, pack_below_s=1e-6
    )
    runner = Runner(
        store,
        InlineExecutor(),
        BatchOf(sleepy),
        settings=settings,
        check_every_s=0.2,
        flush_every_s=0.0,
    )
    failures = _Failures()
    runner_log = logging.getLogger("scalesweep.runner")
    runner_log.addHandler(failures)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run_forever, args=(stop,))
    thread.start()
    outages = 0
    try:
        for at in RESTART_AFTER:
            wait_for(lambda at=at: store.get_sweep(sid).counts.get("succeeded", 0) >= at, 60, at)
            seen = failures.count
            private_pg.stop()
            try:  # the window lasts until the runner has hit it, no longer
                wait_for(lambda seen=seen: failures.count > seen, 30, "the runner to fail a step")
            finally:
                private_pg.start()
            outages += 1
        wait_for(lambda: store.get_sweep(sid).status == "succeeded", 90, "the sweep")
    finally:
        stop.set()
        thread.join(60)
        runner_log.removeHandler(failures)
    assert not thread.is_alive() and outages == len(RESTART_AFTER)

    a = audit(url, sid)
    assert_finished_once(a, N_RUNS)  # one result each, nothing lost or duplicated
    started = executions(log)
    assert set(started) == set(range(N_RUNS))
    for seed, r in a.by_seed().items():
        # executed once per attempt at most; a second attempt only if a claim's commit was
        # committed but never acknowledged (the lease then expires and the run is retried)
        assert 1 <= started[seed] <= r.attempts, (seed, started[seed], r)
    assert store.metrics().lease_holder is None
    store.close()
