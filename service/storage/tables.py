"""SQLAlchemy tables: private to ``service.storage`` (rows never leave the package).

Every schema change here needs an Alembic revision in ``migrations/versions``;
``tests/storage/test_migrations.py`` fails when the two drift apart.

Ids that leave the store (sweeps, runs, tokens: in URLs, file names, ``reused_from``) are
never reused: PostgreSQL's sequences never go back, and on SQLite these tables are
``AUTOINCREMENT`` (``sqlite_autoincrement``), so deleting the newest sweep does not hand its
id to the next one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """One metadata, with stable constraint names on SQLite and PostgreSQL."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Sweep(Base):
    """A submitted sweep; ``spec`` is the (possibly extended) SweepSpec as JSON."""

    __tablename__ = "sweeps"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    n_runs: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    team: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    """The submitting token's team (None: no team, or submitted with auth off)."""
    archived: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), index=True
    )
    """Hidden from the default sweep list (``PATCH /v1/sweeps/{id}``); nothing else changes."""


class SweepTag(Base):
    """One tag of a sweep (the list filters on tags)."""

    __tablename__ = "sweep_tags"

    sweep_id: Mapped[int] = mapped_column(
        ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Run(Base):
    """One training run: config (JSON + indexed key columns), queue state, metrics."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("sweep_id", "config_hash"),
        UniqueConstraint("sweep_id", "run_index"),
        Index("ix_runs_sweep_id_status", "sweep_id", "status"),
        Index("ix_runs_status_lease_expires_at", "status", "lease_expires_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    run_index: Mapped[int] = mapped_column(Integer)
    """Position in the sweep's expansion order (RunRecord.index)."""
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    config_hash: Mapped[str] = mapped_column(String(64), index=True)
    # key config columns, for filters and grouping
    model: Mapped[str] = mapped_column(String(16), index=True)
    d: Mapped[int] = mapped_column(Integer, index=True)
    n: Mapped[int] = mapped_column(Integer, index=True)
    weight_decay: Mapped[float] = mapped_column(Double, index=True)
    gamma: Mapped[float] = mapped_column(Double, index=True)
    noise: Mapped[float] = mapped_column(Double, index=True)
    seed: Mapped[int] = mapped_column(Integer, index=True)
    optimizer: Mapped[str] = mapped_column(String(16), index=True)
    link_power: Mapped[float | None] = mapped_column(Double, nullable=True, index=True)
    width: Mapped[int] = mapped_column(Integer, index=True)
    """The effective hidden width (``RunConfig.width``): ``training.width``, else the
    quadratic default d (2d with a signed second layer); d for the diagonal net (its width)."""
    # queue state
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    reused_from: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), nullable=True
    )
    follows: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True, index=True)
    """The leader (another sweep's run of this configuration, same team) whose result this
    queued or running run waits for instead of being trained (service.storage.leaders);
    None for every other run."""
    # result
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    excess_risk: Mapped[float | None] = mapped_column(Double, nullable=True, index=True)
    converged: Mapped[bool | None] = mapped_column(Boolean, nullable=True, index=True)
    stop_reason: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    wall_time_s: Mapped[float | None] = mapped_column(Double, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RunLeader(Base):
    """The run that trains a configuration for a team while it is queued or running; the
    same configuration in the team's other sweeps follows it (``Run.follows``). The primary
    key makes two leaders of one configuration in one team impossible."""

    __tablename__ = "run_leaders"

    pool: Mapped[str] = mapped_column(String(200), primary_key=True)
    """The team of the leader's sweep; '' for the sweeps without a team (a team name is
    never empty)."""
    config_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), unique=True)


class SpectrumRow(Base):
    """One spectrum of a run: sorted values as a little-endian float64 blob, and its fits."""

    __tablename__ = "spectra"
    __table_args__ = (UniqueConstraint("run_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    n_values: Mapped[int] = mapped_column(Integer)
    values: Mapped[bytes] = mapped_column(LargeBinary)
    resolution: Mapped[float | None] = mapped_column(Double, nullable=True)
    tail_alpha: Mapped[float | None] = mapped_column(Double, nullable=True)
    tail_fit: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    tail_fit_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    rank_fit: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    rank_fit_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class CurveRow(Base):
    """One point of a run's learning curve."""

    __tablename__ = "curves"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_loss: Mapped[float] = mapped_column(Double)
    excess_risk: Mapped[float] = mapped_column(Double)


class AttemptRow(Base):
    """One attempt at a run: who claimed it, when, and how it ended."""

    __tablename__ = "attempts"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    runner_id: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """succeeded | failed | lost | cancelled; None while in flight."""


class RunnerLease(Base):
    """The single row (id 1) naming the one active runner of this database."""

    __tablename__ = "runner_lease"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holder: Mapped[str | None] = mapped_column(String(200), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ApiToken(Base):
    """An API token: only the sha256 of the secret is stored; ``key_id`` finds the row."""

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("key_id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(32))
    """The public part of the token (``ss_<key_id>_<secret>``), for lookup."""
    token_hash: Mapped[str] = mapped_column(String(64))
    """sha256 hex digest of the whole token."""
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(16))
    team: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Submission(Base):
    """One accepted sweep submission by a client key (token or address): the per-token limit
    counts these, so it holds across every API process on the database."""

    __tablename__ = "submissions"
    __table_args__ = (Index("ix_submissions_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
