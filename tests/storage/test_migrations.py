"""The schema comes only from Alembic, and the revisions match service.storage.tables."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from service.errors import StorageError
from service.storage import check_schema, make_store, upgrade_head
from service.storage.migrate import alembic_config, current_revisions, head_revisions
from service.storage.tables import Base

TABLES = {
    "sweeps", "runs", "spectra", "curves", "attempts", "runner_lease", "api_tokens", "submissions",
    "sweep_tags",
    "alembic_version",
}  # fmt: skip


def test_upgrade_from_empty_reaches_head(store_url: str) -> None:
    upgrade_head(store_url)
    check_schema(store_url)
    assert current_revisions(store_url) == head_revisions()
    engine = create_engine(store_url)
    try:
        assert set(inspect(engine).get_table_names()) == TABLES
    finally:
        engine.dispose()
    upgrade_head(store_url)  # idempotent


def test_no_pending_autogenerate_diff(store_url: str) -> None:
    upgrade_head(store_url)
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()


def test_single_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1


def test_downgrade_base_then_upgrade_head(store_url: str) -> None:
    upgrade_head(store_url)
    cfg = alembic_config(store_url)
    command.downgrade(cfg, "base")
    assert current_revisions(store_url) == ()
    engine = create_engine(store_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    upgrade_head(store_url)
    check_schema(store_url)


def test_check_schema_refuses_empty_database(store_url: str) -> None:
    with pytest.raises(StorageError, match="alembic upgrade head"):
        check_schema(store_url)


def test_check_schema_refuses_unknown_revision(store_url: str) -> None:
    upgrade_head(store_url)
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed9999'"))
    finally:
        engine.dispose()
    with pytest.raises(StorageError, match="f00dfeed9999.*does not know"):
        check_schema(store_url)
    with pytest.raises(StorageError, match="does not know"):
        upgrade_head(store_url)


def test_check_schema_refuses_older_revision(store_url: str) -> None:
    upgrade_head(store_url)
    command.downgrade(alembic_config(store_url), "base")
    command.stamp(alembic_config(store_url), "base")
    with pytest.raises(StorageError):
        check_schema(store_url)


def test_concurrent_upgrades_are_safe(store_url: str) -> None:
    # processes, like servers starting at once (Alembic's context is process-global)
    code = "import sys; from service.storage import upgrade_head; upgrade_head(sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, store_url], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    check_schema(store_url)


def test_sqlite_is_safe_by_default(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/pragmas.db"
    upgrade_head(url)
    store = make_store(url)
    try:
        with store._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        store.close()
