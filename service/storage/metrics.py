"""What ``GET /metrics`` reports, read from the database at scrape time (three queries).

Runs per status (a GROUP BY), the wall time of finished runs as cumulative histogram
buckets (one pass: a ``CASE`` sum per bucket), and the runner lease holder. Computed from
the store rather than kept in process memory, so every API process of a team deployment
reports the same numbers, and they survive restarts.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, case, func, select
from sqlalchemy.exc import SQLAlchemyError

from service.errors import StorageError
from service.records import StoreMetrics
from service.results import RunStatus
from service.storage.codec import RUN_STATUSES
from service.storage.queue import utcnow
from service.storage.tables import Run, RunnerLease

DURATION_BUCKETS_S: tuple[float, ...] = (
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
"""Upper bounds (seconds) of the run duration histogram; +Inf is implied."""
FINISHED: tuple[RunStatus, ...] = ("succeeded", "failed")


def collect(engine: Engine, buckets: Sequence[float] = DURATION_BUCKETS_S) -> StoreMetrics:
    """Read the snapshot (StorageError when the database fails)."""
    bounds = sorted(buckets)
    finished = Run.status.in_(FINISHED) & Run.wall_time_s.is_not(None)
    per_bucket = [func.sum(case((Run.wall_time_s <= b, 1), else_=0)) for b in bounds]
    try:
        with engine.connect() as conn:
            per_status = conn.execute(select(Run.status, func.count()).group_by(Run.status))
            counts = {str(status): int(n) for status, n in per_status}
            row = conn.execute(
                select(func.count(), func.sum(Run.wall_time_s), *per_bucket).where(finished)
            ).one()
            lease = conn.execute(
                select(RunnerLease.holder, RunnerLease.expires_at).where(RunnerLease.id == 1)
            ).first()
    except SQLAlchemyError as e:
        raise StorageError(f"database operation failed: {type(e).__name__}") from e
    holder: str | None = None
    if lease is not None and lease.holder is not None and lease.expires_at is not None:
        holder = str(lease.holder) if lease.expires_at > utcnow() else None
    return StoreMetrics(
        runs_by_status={s: int(counts.get(s, 0)) for s in RUN_STATUSES},
        duration_buckets=[(b, int(n or 0)) for b, n in zip(bounds, row[2:], strict=True)],
        duration_count=int(row[0] or 0),
        duration_sum_s=float(row[1] or 0.0),
        lease_holder=holder,
    )
