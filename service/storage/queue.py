"""The runner side of the store: runner lease, claims under leases, results exactly once.

Only the runner writes results. Every state change is a conditional UPDATE whose WHERE
names the state it leaves, so a duplicate, late or reordered message changes nothing.
Claims take only leaders and independent runs (never a follower); what happens to a leader
happens to its followers in the same transaction (:mod:`service.storage.leaders`): claimed,
they show it running; requeued or released, queued again; its success is copied to them;
its failure, or its loss after the retry budget, hands the configuration over to one of
them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from service.errors import StorageError
from service.records import Claim
from service.results import RunResult
from service.spec import RunConfig
from service.storage.codec import ACTIVE, chunks, curve_rows, metric_columns, spectrum_row
from service.storage.engine import TransactionalStore
from service.storage.leaders import (
    drop_leaders,
    followers_of,
    hand_over,
    lock_pools,
    mirror_followers,
    teams_of_runs,
)
from service.storage.tables import AttemptRow, CurveRow, Run, RunnerLease, SpectrumRow, Sweep

_LEASE_ROW = 1

_RUNS = cast(Table, Run.__table__)
_RESULT_COLUMNS = (
    "status",
    "error",
    "finished_at",
    "metrics",
    "excess_risk",
    "converged",
    "stop_reason",
    "wall_time_s",
)
_RECORD_ONE = (
    update(_RUNS)
    .where(
        _RUNS.c.id == bindparam("p_id"),
        or_(*(_RUNS.c.status == status for status in ACTIVE)),  # no IN: executemany
        _RUNS.c.config_hash == bindparam("p_config_hash"),
    )
    .values(
        lease_owner=None,
        lease_expires_at=None,
        follows=None,
        **{c: bindparam(f"p_{c}", type_=_RUNS.c[c].type) for c in _RESULT_COLUMNS},
    )
)
"""One run's result, executed many times by record_results (only runs still active, same hash)."""
_RESOLVE_ONE = (
    update(_RUNS)
    .where(
        _RUNS.c.id == bindparam("p_id"),
        or_(*(_RUNS.c.status == status for status in ACTIVE)),
        _RUNS.c.follows == bindparam("p_leader"),
    )
    .values(
        follows=None,
        reused_from=bindparam("p_leader"),
        **{c: bindparam(f"p_{c}", type_=_RUNS.c[c].type) for c in _RESULT_COLUMNS},
    )
)
"""A leader's result copied to one of its followers (reused_from names the leader)."""


def _result_params(res: RunResult, now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {"status": res.status, "error": res.error, "finished_at": now}
    values.update(metric_columns(res.metrics))
    return {f"p_{c}": values[c] for c in _RESULT_COLUMNS}


def _record_params(run_id: int, res: RunResult, now: datetime) -> dict[str, Any]:
    return {**_result_params(res, now), "p_id": run_id, "p_config_hash": res.config_hash}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def finish_sweeps(conn: Connection, sweep_ids: Iterable[int], now: datetime) -> None:
    """Mark queued/running sweeps with no queued or running run left as succeeded."""
    ids = sorted(set(sweep_ids))
    if not ids:
        return
    busy = select(Run.id).where(Run.sweep_id == Sweep.id, Run.status.in_(ACTIVE)).exists()
    conn.execute(
        update(Sweep)
        .where(Sweep.id.in_(ids), Sweep.status.in_(ACTIVE), ~busy)
        .values(status="succeeded", finished_at=now, updated_at=now)
    )


def end_attempts(conn: Connection, run_ids: list[int], outcome: str, now: datetime) -> None:
    """Close the open attempt of each run with ``outcome``."""
    for part in chunks(run_ids):
        conn.execute(
            update(AttemptRow)
            .where(AttemptRow.run_id.in_(part), AttemptRow.ended_at.is_(None))
            .values(ended_at=now, outcome=outcome)
        )


class RunnerQueue(TransactionalStore):
    """Runner-side operations (:class:`service.storage.base.RunnerStore`)."""

    # --- the runner lease: one active runner per database

    def acquire_runner_lease(self, runner_id: str, ttl_s: float) -> bool:
        """Take or renew the runner lease; False while another runner holds an unexpired one."""
        now = utcnow()
        free = or_(
            RunnerLease.holder.is_(None),
            RunnerLease.holder == runner_id,
            RunnerLease.expires_at.is_(None),
            RunnerLease.expires_at < now,
        )
        with self._transaction() as conn:
            got = conn.execute(
                update(RunnerLease)
                .where(RunnerLease.id == _LEASE_ROW, free)
                .values(holder=runner_id, expires_at=now + timedelta(seconds=ttl_s))
            ).rowcount
            if got == 0 and conn.execute(select(func.count()).select_from(RunnerLease)).scalar():
                return False
            if got == 0:  # the row is missing (never, after migration 0001): create it held
                conn.execute(
                    insert(RunnerLease).values(
                        id=_LEASE_ROW, holder=runner_id, expires_at=now + timedelta(seconds=ttl_s)
                    )
                )
        return True

    def release_runner_lease(self, runner_id: str) -> None:
        """Give the lease up (a no-op unless ``runner_id`` holds it)."""
        with self._transaction() as conn:
            conn.execute(
                update(RunnerLease)
                .where(RunnerLease.id == _LEASE_ROW, RunnerLease.holder == runner_id)
                .values(holder=None, expires_at=None)
            )

    # --- claims and leases of runs

    def claim_runs(self, runner_id: str, *, limit: int, lease_s: float) -> list[Claim]:
        """Queued runs -> running under a lease (oldest sweep first); one attempt each."""
        if limit < 1:
            return []
        now = utcnow()
        with self._transaction() as conn:
            pick = (
                select(Run.id, Run.sweep_id, Run.config)
                .where(Run.status == "queued", Run.follows.is_(None))
                .order_by(Run.sweep_id, Run.run_index)
                .limit(limit)
            )
            if self.dialect == "postgresql":
                pick = pick.with_for_update(skip_locked=True)
            picked = {r.id: r for r in conn.execute(pick)}
            if not picked:
                return []
            claimed = conn.execute(
                update(Run)
                .where(Run.id.in_(list(picked)), Run.status == "queued")
                .values(
                    status="running",
                    attempts=Run.attempts + 1,
                    lease_owner=runner_id,
                    lease_expires_at=now + timedelta(seconds=lease_s),
                    started_at=now,
                )
                .returning(Run.id, Run.attempts)
            ).all()
            if not claimed:
                return []
            conn.execute(
                insert(AttemptRow),
                [
                    {
                        "run_id": r.id,
                        "attempt": r.attempts,
                        "runner_id": runner_id,
                        "started_at": now,
                    }
                    for r in claimed
                ],
            )
            sweep_ids = {picked[r.id].sweep_id for r in claimed}
            sweep_ids |= mirror_followers(conn, [r.id for r in claimed], "running", now)
            conn.execute(
                update(Sweep)
                .where(Sweep.id.in_(sorted(sweep_ids)), Sweep.status == "queued")
                .values(status="running", updated_at=now)
            )
        claims = [
            Claim(
                run_id=r.id,
                sweep_id=picked[r.id].sweep_id,
                config=RunConfig.model_validate(picked[r.id].config),
                attempt=r.attempts,
            )
            for r in claimed
        ]
        claims.sort(key=lambda c: (c.sweep_id, c.run_id))
        return claims

    def renew_leases(self, runner_id: str, run_ids: list[int], lease_s: float) -> None:
        """Extend the leases ``runner_id`` holds on these running runs."""
        until = utcnow() + timedelta(seconds=lease_s)
        with self._transaction() as conn:
            for part in chunks(sorted(set(run_ids))):
                conn.execute(
                    update(Run)
                    .where(Run.id.in_(part), Run.status == "running", Run.lease_owner == runner_id)
                    .values(lease_expires_at=until)
                )

    def release_runs(self, runner_id: str, run_ids: list[int]) -> int:
        """Hand claimed runs back without spending an attempt (a runner stopping gracefully).

        Runs still ``running`` under ``runner_id``'s lease go back to ``queued`` with their
        lease cleared and ``attempts`` minus one; their open attempt row is deleted (the claim
        is not counted). Runs of other runners, finished or cancelled runs are left alone.
        Returns how many runs were released.
        """
        ids = sorted(set(run_ids))
        released: list[int] = []
        now = utcnow()
        mine = and_(Run.status == "running", Run.lease_owner == runner_id)
        with self._transaction() as conn:
            if self.dialect == "postgresql":  # in id order, as submissions lock leaders
                for part in chunks(ids):
                    conn.execute(
                        select(Run.id).where(Run.id.in_(part), mine).order_by(Run.id)
                        .with_for_update()
                    ).all()  # fmt: skip
            for part in chunks(ids):
                released += conn.execute(
                    update(Run)
                    .where(Run.id.in_(part), mine)
                    .values(
                        status="queued",
                        attempts=Run.attempts - 1,
                        lease_owner=None,
                        lease_expires_at=None,
                    )
                    .returning(Run.id)
                ).scalars()
            for part in chunks(released):
                conn.execute(
                    delete(AttemptRow).where(
                        AttemptRow.run_id.in_(part), AttemptRow.ended_at.is_(None)
                    )
                )
            mirror_followers(conn, released, "queued", now)
        return len(released)

    def requeue_expired(self, *, max_attempts: int) -> int:
        """Running runs whose lease expired -> queued, or failed once ``max_attempts`` are spent.

        Returns how many runs changed state.
        """
        now = utcnow()
        expired = and_(Run.status == "running", Run.lease_expires_at < now)
        with self._transaction() as conn:
            rows = conn.execute(select(Run.id, Run.sweep_id, Run.attempts).where(expired)).all()
            if not rows:
                return 0
            if self.dialect == "postgresql":  # a lost leader hands over: its team's lock
                lock_pools(conn, teams_of_runs(conn, (r.id for r in rows)))
            retry = [r.id for r in rows if r.attempts < max_attempts]
            requeued: list[int] = []
            for part in chunks(retry):
                requeued += conn.execute(
                    update(Run)
                    .where(Run.id.in_(part), expired)
                    .values(status="queued", lease_owner=None, lease_expires_at=None)
                    .returning(Run.id)
                ).scalars()
            by_attempts: dict[int, list[int]] = {}
            for r in rows:
                if r.attempts >= max_attempts:
                    by_attempts.setdefault(r.attempts, []).append(r.id)
            given_up: list[int] = []
            for n, ids in sorted(by_attempts.items()):
                for part in chunks(ids):
                    given_up += conn.execute(
                        update(Run)
                        .where(Run.id.in_(part), expired)
                        .values(
                            status="failed",
                            error=f"worker lost after {n} attempts",
                            lease_owner=None,
                            lease_expires_at=None,
                            finished_at=now,
                        )
                        .returning(Run.id)
                    ).scalars()
            end_attempts(conn, [r.id for r in rows], "lost", now)
            mirror_followers(conn, requeued, "queued", now)
            hand_over(conn, given_up)
            finish_sweeps(conn, (r.sweep_id for r in rows), now)
        return len(requeued) + len(given_up)

    def cancelled_run_ids(self, run_ids: list[int]) -> list[int]:
        """Which of these runs were cancelled or deleted with their sweep (the runner stops
        them)."""
        out: list[int] = []
        with self._transaction(write=False) as conn:
            for part in chunks(sorted(set(run_ids))):
                rows = conn.execute(select(Run.id, Run.status).where(Run.id.in_(part)))
                status = dict(rows.tuples().all())
                out += [i for i in part if status.get(i, "cancelled") == "cancelled"]
        return sorted(out)

    # --- results, exactly once

    def record_results(self, results: list[tuple[int, RunResult]]) -> int:
        """Store results of runs still queued/running; ignore duplicates and late results.

        A result whose config_hash is not the run's is ignored too. Returns how many were stored.

        One SELECT picks the runs still queued/running (PostgreSQL: locked FOR UPDATE in id
        order, so concurrent batches cannot deadlock and a concurrent writer waits; SQLite:
        the write transaction is BEGIN IMMEDIATE), then one executemany UPDATE writes them,
        its WHERE repeating the same conditions. Of two deliveries of a run in one batch the
        first wins.
        """
        if not results:
            return 0
        now = utcnow()
        first: dict[int, RunResult] = {}
        for run_id, res in results:
            first.setdefault(run_id, res)
        with self._transaction() as conn:
            if self.dialect == "postgresql":  # leaders end here: their teams' locks first
                lock_pools(conn, teams_of_runs(conn, first))
            live: dict[int, tuple[int, str]] = {}  # run id -> (sweep id, config hash)
            for part in chunks(sorted(first)):
                pick = (
                    select(Run.id, Run.sweep_id, Run.config_hash)
                    .where(Run.id.in_(part), Run.status.in_(ACTIVE))
                    .order_by(Run.id)
                )
                if self.dialect == "postgresql":
                    pick = pick.with_for_update()
                live.update((r.id, (r.sweep_id, r.config_hash)) for r in conn.execute(pick))
            stored = [
                (run_id, res)
                for run_id, res in sorted(first.items())
                if run_id in live and live[run_id][1] == res.config_hash
            ]
            if not stored:
                return 0
            updated = conn.execute(_RECORD_ONE, [_record_params(i, r, now) for i, r in stored])
            if conn.dialect.supports_sane_multi_rowcount and updated.rowcount != len(stored):
                raise StorageError(  # never with the locks above; roll back rather than guess
                    f"record_results: {updated.rowcount} of {len(stored)} runs were updated"
                )
            self._insert_artifacts(conn, stored)
            for status in ("succeeded", "failed"):
                ids = [rid for rid, res in stored if res.status == status]
                end_attempts(conn, ids, status, now)
            sweeps = {live[rid][0] for rid, _ in stored}
            sweeps |= self._settle_leaders(conn, stored, now)
            finish_sweeps(conn, sweeps, now)
        return len(stored)

    def _settle_leaders(
        self, conn: Connection, stored: list[tuple[int, RunResult]], now: datetime
    ) -> set[int]:
        """Leaders among runs whose results were just stored: a success is copied to every
        follower (reused_from: the leader), a failure hands over; returns the sweeps of the
        followers that got a result."""
        won = {rid: res for rid, res in stored if res.status == "succeeded"}
        hand_over(conn, [rid for rid, res in stored if res.status != "succeeded"])
        followers = followers_of(conn, drop_leaders(conn, won))
        copies = [
            (run_id, sweep_id, leader)
            for leader, runs in followers.items()
            for run_id, sweep_id in runs
        ]
        if not copies:
            return set()
        params = [
            {**_result_params(won[leader], now), "p_id": run_id, "p_leader": leader}
            for run_id, _, leader in copies
        ]
        updated = conn.execute(_RESOLVE_ONE, params)
        if conn.dialect.supports_sane_multi_rowcount and updated.rowcount != len(copies):
            raise StorageError(
                f"record_results: {updated.rowcount} of {len(copies)} followers were updated"
            )
        self._insert_artifacts(conn, [(run_id, won[leader]) for run_id, _, leader in copies])
        return {sweep_id for _, sweep_id, _ in copies}

    @staticmethod
    def _insert_artifacts(conn: Connection, stored: list[tuple[int, RunResult]]) -> None:
        spectra: list[dict[str, Any]] = []
        curve: list[dict[str, Any]] = []
        for run_id, res in stored:
            kinds = {s.kind: s for s in res.spectra}  # one spectrum per kind
            spectra += [spectrum_row(run_id, s) for s in kinds.values()]
            curve += curve_rows(run_id, res.curve)
        if spectra:
            conn.execute(insert(SpectrumRow), spectra)
        if curve:
            conn.execute(insert(CurveRow), curve)
