"""Shared fixtures: database URLs on SQLite and PostgreSQL, and a migrated store on each;
a migrated SQLite file copied per test (``migrated_db``, ``sqlite_store``) where one backend
is enough and speed matters.

PostgreSQL: the server at 127.0.0.1:5432 (trust auth; override the maintenance URL with
SCALESWEEP_TEST_PG_URL). Each test session creates its own database
``scalesweep_t_<hex>`` (others run tests concurrently) and drops it at the end; each test
gets a fresh ``public`` schema. Without a server the PostgreSQL cases are skipped, unless
SCALESWEEP_REQUIRE_POSTGRES=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from service.storage import Store, make_store, upgrade_head

PG_MAINTENANCE_URL = os.environ.get(
    "SCALESWEEP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _libpq(url: str) -> str:
    """A SQLAlchemy URL as a libpq conninfo string for psycopg."""
    u = make_url(url)
    parts = {
        "host": u.host,
        "port": u.port,
        "user": u.username,
        "password": u.password,
        "dbname": u.database,
    }
    return " ".join(f"{k}={v}" for k, v in parts.items() if v is not None)


def _require_postgres() -> bool:
    return os.environ.get("SCALESWEEP_REQUIRE_POSTGRES", "") not in ("", "0")


def _drop_stale_databases(admin: psycopg.Connection[tuple[object, ...]]) -> None:
    """Drop test databases a killed session left behind (older than a day, nobody connected)."""
    try:
        stale = admin.execute(
            "SELECT d.datname FROM pg_database d WHERE d.datname LIKE 'scalesweep\\_t\\_%'"
            " AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)"
            " AND (pg_stat_file('base/' || d.oid || '/PG_VERSION')).modification"
            " < now() - interval '1 day'"
        ).fetchall()
        for (stale_name,) in stale:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(str(stale_name))
                )
            )
    except psycopg.Error:  # no right to read pg_stat_file: leave them
        pass


@pytest.fixture(scope="session")
def _pg_database() -> Iterator[str | None]:
    """This session's own PostgreSQL database (URL), or None when no server answers."""
    try:
        admin = psycopg.connect(_libpq(PG_MAINTENANCE_URL), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        if _require_postgres():
            pytest.fail(f"SCALESWEEP_REQUIRE_POSTGRES=1 but PostgreSQL is unreachable: {e}")
        yield None
        return
    name = f"scalesweep_t_{secrets.token_hex(6)}"
    with admin:
        _drop_stale_databases(admin)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield (
                make_url(PG_MAINTENANCE_URL)
                .set(database=name)
                .render_as_string(hide_password=False)
            )
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def pg_url(_pg_database: str | None) -> str:
    """A PostgreSQL URL whose ``public`` schema is empty (skips without a server)."""
    if _pg_database is None:
        pytest.skip(f"PostgreSQL is unreachable ({make_url(PG_MAINTENANCE_URL)!r})")
    with psycopg.connect(_libpq(_pg_database), autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return _pg_database


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend (no schema yet)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'scalesweep.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A store on a database migrated to head, on each backend."""
    upgrade_head(store_url)
    s = make_store(store_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database at head, migrated once; tests copy it (fast, isolated)."""
    path = tmp_path_factory.mktemp("template") / "head.db"
    upgrade_head(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_db: Path) -> str:
    """A fresh copy of :func:`migrated_db`, as a URL."""
    shutil.copyfile(migrated_db, tmp_path / "test.db")
    return f"sqlite:///{tmp_path}/test.db"


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    """A store on a fresh copy of the migrated SQLite database."""
    s = make_store(sqlite_url)
    try:
        yield s
    finally:
        s.close()
