"""Engines and transactions: dialect options in one place, errors translated in one place.

SQLite is made safe by default (PEERS.md 3.2): WAL, a 30 s busy timeout, foreign keys on,
and every writing transaction starts with ``BEGIN IMMEDIATE``, so a read snapshot is never
upgraded to a write (which fails at once with "database is locked" instead of waiting).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from service.errors import ConflictError, StorageError

SQLITE_BUSY_TIMEOUT_S = 30.0
WRITE_OPTION = "scalesweep_write"
"""Execution option: this connection writes (SQLite: BEGIN IMMEDIATE)."""


def _finite_json(obj: Any) -> Any:
    """Non-finite floats as the strings pydantic reads back ("NaN", "Infinity", "-Infinity")."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_json(v) for v in obj]
    return obj


def json_dumps(obj: Any) -> str:
    """The JSON serializer of every engine: strict JSON (PostgreSQL refuses NaN tokens)."""
    try:
        return json.dumps(obj, allow_nan=False, separators=(",", ":"))
    except ValueError:  # a non-finite float somewhere: the slow path
        return json.dumps(_finite_json(obj), allow_nan=False, separators=(",", ":"))


def _set_wal(cur: Any) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another process holds the lock.

    Switching a fresh database to WAL needs an exclusive lock, and SQLite may answer
    "database is locked" at once instead of waiting (e.g. two servers starting on one new
    file); retry within the busy timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with scalesweep's dialect options."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, json_serializer=json_dumps)
    memory = u.database in (None, "", ":memory:")
    engine = create_engine(
        url,
        json_serializer=json_dumps,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        **({"poolclass": StaticPool} if memory else {}),
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # pysqlite must not BEGIN on its own; _on_begin does
        cur = dbapi_conn.cursor()
        try:
            if not memory:
                _set_wal(cur)
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _summary(e: SQLAlchemyError) -> str:
    """The driver's message, first line, without the (possibly huge) statement and parameters."""
    orig = getattr(e, "orig", None) or e
    lines = str(orig).strip().splitlines() or [""]
    return f"{type(orig).__name__}: {lines[0][:300]}"


class TransactionalStore:
    """Owns the engine; :meth:`_transaction` is the only way the store touches the database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.dialect = engine.dialect.name

    def close(self) -> None:
        """Close every pooled connection (the store is unusable afterwards)."""
        self._engine.dispose()

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[Connection]:
        """One transaction: commit on success, rollback on error, errors translated.

        IntegrityError becomes ConflictError, any other SQLAlchemyError StorageError.
        """
        try:
            with self._engine.connect() as conn:
                if write:
                    conn.execution_options(**{WRITE_OPTION: True})
                with conn.begin():
                    yield conn
        except IntegrityError as e:
            raise ConflictError(f"conflicting write: {_summary(e)}") from e
        except SQLAlchemyError as e:
            raise StorageError(f"database operation failed: {_summary(e)}") from e
