"""In-flight deduplication: a team trains a configuration once, also while it is queued or running.

The team-shared cache (:mod:`service.storage.inserts`) reuses *finished* runs. A configuration
that is queued or running in a sweep of the same team is not trained a second time either:
the run that trains it is its *leader* (a row of ``run_leaders``: team pool, config_hash ->
run), and the same configuration in the team's other sweeps *follows* it (``runs.follows``).
A follower is never claimed; it shows its leader's status (queued, running); when the
leader's result is recorded the follower gets a copy, with ``reused_from`` naming the leader,
exactly as reuse of a finished run does. A leader that ends without a reusable result hands
over: it failed (failed runs are never reused, here as in the cache), it was lost after its
retries, or its sweep was cancelled or deleted (a follower does not inherit another sweep's
cancellation). Its oldest follower becomes the leader and is trained; the others follow that
one. A sweep with ``recompute: true`` never follows (it may lead: its fresh result serves
later sweeps like any other).

Invariants: at most one leader per (pool, config_hash) (the primary key); a leader is a
queued or running run; ``follows`` is set only on queued or running runs and names a leader.

Races. SQLite has one writer at a time (BEGIN IMMEDIATE). On PostgreSQL every transaction
that inserts runs or ends a leader first takes a transaction-level advisory lock on each team
pool it touches (:func:`lock_pools`, in key order): two submissions of one configuration
cannot both lead, and a follower cannot join a leader whose result is being written (the
submission, serialised after the write, finds the result in the cache instead). The runner's
claims and releases change a leader's status without that lock, so a submission reads its
leaders FOR SHARE in id order (:func:`find_leaders`; claims skip locked rows): a new
follower never copies a status that is being changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Connection,
    Integer,
    bindparam,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from service.storage.codec import ACTIVE, chunks
from service.storage.tables import Run, RunLeader, Sweep

_LOCK_NAMESPACE = 0x5CA1
"""First key of the advisory locks on team pools (the second is the pool's)."""


@dataclass(frozen=True)
class Leader:
    """The run that trains a configuration, as a new follower copies it."""

    run_id: int
    status: str
    started_at: datetime | None


def pool_of(team: str | None) -> str:
    """The key of a team's pool in ``run_leaders`` ('' for the sweeps without a team)."""
    if team == "":
        raise ValueError("a team name is never empty (None: no team)")
    return team or ""


def _lock_key(pool: str) -> int:
    """A signed 32-bit key of a pool, the same in every process."""
    return int.from_bytes(hashlib.sha256(pool.encode()).digest()[:4], "big", signed=True)


def lock_pools(conn: Connection, teams: Iterable[str | None]) -> None:
    """PostgreSQL: lock these teams' pools until the transaction ends (in key order, so two
    transactions never wait on each other in a circle). SQLite: nothing (one writer)."""
    if conn.dialect.name != "postgresql":
        return
    for key in sorted({_lock_key(pool_of(team)) for team in teams}):
        conn.execute(
            select(func.pg_advisory_xact_lock(cast(_LOCK_NAMESPACE, Integer), cast(key, Integer)))
        )


def teams_of_runs(conn: Connection, run_ids: Iterable[int]) -> set[str | None]:
    """The teams of the sweeps these runs belong to (a sweep's team never changes)."""
    teams: set[str | None] = set()
    for part in chunks(sorted(set(run_ids))):
        teams.update(
            conn.execute(
                select(Sweep.team)
                .distinct()
                .join(Run, Run.sweep_id == Sweep.id)
                .where(Run.id.in_(part))
            ).scalars()
        )
    return teams


def find_leaders(conn: Connection, team: str | None, hashes: Iterable[str]) -> dict[str, Leader]:
    """The leaders of these configurations in ``team``'s pool (the caller holds its lock);
    on PostgreSQL their runs are locked FOR SHARE in id order until the transaction ends."""
    pool = pool_of(team)
    led: dict[int, str] = {}
    for part in chunks(sorted(set(hashes))):
        led.update(
            conn.execute(
                select(RunLeader.run_id, RunLeader.config_hash).where(
                    RunLeader.pool == pool, RunLeader.config_hash.in_(part)
                )
            )
            .tuples()
            .all()
        )
    found: dict[str, Leader] = {}
    for ids in chunks(sorted(led)):
        stmt = select(Run.id, Run.status, Run.started_at).where(Run.id.in_(ids)).order_by(Run.id)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(read=True)
        for run_id, status, started_at in conn.execute(stmt):
            found[led[run_id]] = Leader(run_id, status, started_at)
    return found


def add_leaders(conn: Connection, team: str | None, runs: Mapping[str, int]) -> None:
    """Make these runs (config_hash -> run id) the leaders of their configurations."""
    if runs:
        pool = pool_of(team)
        conn.execute(
            insert(RunLeader),
            [{"pool": pool, "config_hash": h, "run_id": rid} for h, rid in sorted(runs.items())],
        )


def mirror_followers(
    conn: Connection, leader_ids: Iterable[int], status: str, now: datetime
) -> set[int]:
    """The followers of these leaders take their new status ("running": started ``now``;
    "queued": not started); returns the sweeps of the followers that changed.

    PostgreSQL: a follower locked by another transaction (its sweep being cancelled or
    deleted, which ends it) is skipped rather than waited for.
    """
    sweeps: set[int] = set()
    for part in chunks(sorted(set(leader_ids))):
        mine = select(Run.id).where(
            Run.follows.in_(part), Run.status.in_(ACTIVE), Run.status != status
        )
        if conn.dialect.name == "postgresql":
            mine = mine.with_for_update(skip_locked=True)
        sweeps.update(
            conn.execute(
                update(Run)
                .where(Run.id.in_(mine.scalar_subquery()))
                .values(status=status, started_at=now if status == "running" else None)
                .returning(Run.sweep_id)
            ).scalars()
        )
    return sweeps


def drop_leaders(conn: Connection, run_ids: Iterable[int]) -> list[int]:
    """End the leadership of those of these runs that lead; returns them."""
    ended: list[int] = []
    for part in chunks(sorted(set(run_ids))):
        ended += conn.execute(
            delete(RunLeader).where(RunLeader.run_id.in_(part)).returning(RunLeader.run_id)
        ).scalars()
    return sorted(ended)


def followers_of(conn: Connection, leader_ids: Iterable[int]) -> dict[int, list[tuple[int, int]]]:
    """Each leader's followers as (run id, sweep id), oldest first."""
    out: dict[int, list[tuple[int, int]]] = {}
    for part in chunks(sorted(set(leader_ids))):
        rows = conn.execute(
            select(Run.follows, Run.id, Run.sweep_id)
            .where(Run.follows.in_(part), Run.status.in_(ACTIVE))
            .order_by(Run.id)
        )
        for leader, run_id, sweep_id in rows:
            assert leader is not None  # selected on it
            out.setdefault(leader, []).append((run_id, sweep_id))
    return out


_PROMOTE = update(RunLeader).where(RunLeader.run_id == bindparam("p_leader"))
_REFOLLOW = (
    update(Run)
    .where(Run.follows == bindparam("p_leader"), or_(*(Run.status == s for s in ACTIVE)))
    .values(follows=bindparam("p_heir"), status="queued", started_at=None)
)
"""The other followers of a leader that handed over follow its heir (no IN: executemany)."""


def hand_over(conn: Connection, run_ids: Iterable[int]) -> int:
    """Those of these runs that lead and end without a reusable result (failed, lost,
    cancelled, deleted) hand over: the oldest follower becomes the leader, queued to be
    trained, and the other followers follow it; a leader without followers just ends.
    Call it in the transaction that ends the runs (the caller holds their pools' locks).
    Returns how many followers became leaders."""
    led = sorted(
        rid
        for part in chunks(sorted(set(run_ids)))
        for rid in conn.execute(
            select(RunLeader.run_id).where(RunLeader.run_id.in_(part))
        ).scalars()
    )
    if not led:
        return 0
    followers = followers_of(conn, led)
    heirs = {leader: fs[0][0] for leader, fs in followers.items()}
    drop_leaders(conn, [leader for leader in led if leader not in heirs])
    if not heirs:
        return 0
    pairs = [{"p_leader": leader, "p_heir": heir} for leader, heir in sorted(heirs.items())]
    conn.execute(_PROMOTE.values(run_id=bindparam("p_heir")), pairs)
    for part in chunks(sorted(heirs.values())):
        conn.execute(
            update(Run)
            .where(Run.id.in_(part))
            .values(follows=None, status="queued", started_at=None)
        )
    conn.execute(_REFOLLOW, pairs)
    return len(heirs)
