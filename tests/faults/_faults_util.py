"""Helpers of the fault-injection tests: a stand-in task, waiting, and an exact audit.

A module (not conftest) so that Ray workers can import :func:`sleepy` by name (the tests put
this directory on the PYTHONPATH they inherit) and the test modules can import the rest.
The basename is unique in the repository: the tests directories have no ``__init__.py``.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from factories import result
from sqlalchemy import func, select

from service.results import RunResult
from service.spec import RunConfig
from service.storage.engine import make_engine
from service.storage.tables import AttemptRow, Run, SpectrumRow, Sweep

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

LOG_ENV = "SCALESWEEP_FAULTS_EXEC_LOG"
"""File where :func:`sleepy` appends ``seed pid`` each time it starts."""
HOLD_ENV = "SCALESWEEP_FAULTS_HOLD"
"""``SEEDS:MARKER``: runs with these seeds block until the file MARKER exists (the victims)."""


def sleepy(cfg: RunConfig) -> RunResult:
    """Stand-in task: note the start, (victims) block until released, sleep ``timeout_s``."""
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a") as f:
            f.write(f"{cfg.seed} {os.getpid()}\n")
    hold = os.environ.get(HOLD_ENV)
    if hold:
        seeds, marker = hold.split(":", 1)
        if str(cfg.seed) in seeds.split(",") and not os.path.exists(marker):
            deadline = time.monotonic() + 120  # never forever, even if the test died
            while not os.path.exists(marker) and time.monotonic() < deadline:
                time.sleep(0.02)
    end = time.monotonic() + (cfg.training.timeout_s or 0.0)
    while time.monotonic() < end:  # short sleeps: a cancellation gets through
        time.sleep(0.02)
    return result(cfg, 1.0 / (1 + cfg.seed), stop_reason="duality_gap", wall_time_s=0.0)


def executions(log: Path) -> Counter[int]:
    """How many times each seed started (from the file :func:`sleepy` appends to)."""
    if not log.exists():
        return Counter()
    return Counter(int(line.split()[0]) for line in log.read_text().splitlines() if line)


def wait_for(
    cond: Callable[[], object], timeout_s: float, what: str, every_s: float = 0.05
) -> None:
    """Poll ``cond`` until it is true; fail after ``timeout_s`` (a deadline, not a timing)."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(every_s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class RunAudit:
    """One run as stored, with its attempt rows (in attempt order)."""

    id: int
    seed: int
    status: str
    attempts: int
    error: str | None
    has_metrics: bool
    finished_at: datetime | None
    attempt_rows: list[tuple[int, str, str | None]] = field(default_factory=list)
    """(attempt, runner_id, outcome); outcome None while open."""
    spectra: int = 0


@dataclass(frozen=True)
class SweepAudit:
    status: str
    n_runs: int
    runs: dict[int, RunAudit]

    def statuses(self) -> Counter[str]:
        return Counter(r.status for r in self.runs.values())

    def by_seed(self) -> dict[int, RunAudit]:
        return {r.seed: r for r in self.runs.values()}


def audit(url: str, sweep_id: int) -> SweepAudit:
    """Read a sweep's runs, attempts and spectra straight from the database and check what
    must hold in every state: one row per configuration (no duplicate config_hash or
    run_index), ``n_runs`` rows, ``attempts`` equal to the attempt rows (numbered 1..k, at
    most the last one open, and only while the run is running), one spectrum per kind. On
    PostgreSQL the reads are one REPEATABLE READ snapshot, so it may run while others write."""
    engine = make_engine(url)
    # one snapshot for the four reads: under READ COMMITTED a run read as "running" can have
    # its attempt read as finished a statement later, while a runner keeps writing (SQLite:
    # the tests audit it only when nothing writes)
    snapshot = {"isolation_level": "REPEATABLE READ"} if url.startswith("postgresql") else {}
    try:
        with engine.connect().execution_options(**snapshot) as conn, conn.begin():
            sweep = conn.execute(
                select(Sweep.status, Sweep.n_runs).where(Sweep.id == sweep_id)
            ).one()
            rows = conn.execute(
                select(
                    Run.id,
                    Run.seed,
                    Run.config_hash,
                    Run.run_index,
                    Run.status,
                    Run.attempts,
                    Run.error,
                    Run.metrics,
                    Run.finished_at,
                ).where(Run.sweep_id == sweep_id)
            ).all()
            ids = [r.id for r in rows]
            attempts = conn.execute(
                select(
                    AttemptRow.run_id, AttemptRow.attempt, AttemptRow.runner_id, AttemptRow.outcome
                )
                .where(AttemptRow.run_id.in_(ids))
                .order_by(AttemptRow.run_id, AttemptRow.attempt)
            ).all()
            spectra = conn.execute(
                select(SpectrumRow.run_id, SpectrumRow.kind, func.count())
                .where(SpectrumRow.run_id.in_(ids))
                .group_by(SpectrumRow.run_id, SpectrumRow.kind)
            ).all()
    finally:
        engine.dispose()

    assert len(rows) == sweep.n_runs, (len(rows), sweep.n_runs)
    assert len({r.config_hash for r in rows}) == len(rows), "duplicate config_hash in the sweep"
    assert len({r.run_index for r in rows}) == len(rows), "duplicate run_index in the sweep"
    assert all(count == 1 for _, _, count in spectra), "a spectrum stored twice"
    per_run: dict[int, list[tuple[int, str, str | None]]] = {i: [] for i in ids}
    for a in attempts:
        per_run[a.run_id].append((a.attempt, a.runner_id, a.outcome))
    n_spectra = Counter(run_id for run_id, _, _ in spectra)
    runs: dict[int, RunAudit] = {}
    for r in rows:
        tried = per_run[r.id]
        assert [a[0] for a in tried] == list(range(1, r.attempts + 1)), (r.id, r.attempts, tried)
        open_ = [a for a in tried if a[2] is None]
        if r.status == "running":
            assert open_ == tried[-1:], (r.id, tried)
        else:
            assert not open_, (r.id, r.status, tried)
        runs[r.id] = RunAudit(
            id=r.id,
            seed=r.seed,
            status=r.status,
            attempts=r.attempts,
            error=r.error,
            has_metrics=r.metrics is not None,
            finished_at=r.finished_at,
            attempt_rows=tried,
            spectra=n_spectra[r.id],
        )
    return SweepAudit(status=sweep.status, n_runs=sweep.n_runs, runs=runs)


def assert_finished_once(a: SweepAudit, n: int, *, status: str = "succeeded") -> None:
    """Every one of ``n`` runs ended with exactly one result, ``status``, its last attempt
    closed with that outcome and the earlier ones (if any) lost."""
    assert a.n_runs == n and len(a.runs) == n
    assert a.statuses() == Counter({status: n}), a.statuses()
    for r in a.runs.values():
        assert r.finished_at is not None and r.attempts >= 1, r
        outcomes = [o for _, _, o in r.attempt_rows]
        assert outcomes == ["lost"] * (r.attempts - 1) + [status], r
        if status == "succeeded":
            assert r.has_metrics and r.error is None, r
