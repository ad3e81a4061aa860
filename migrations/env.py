"""Alembic environment: the schema of scalesweep's database (service.storage.tables)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from service.config import get_settings
from service.storage.engine import WRITE_OPTION, make_engine
from service.storage.tables import Base

config = context.config
target_metadata = Base.metadata

# any constant 64-bit key: serialises concurrent upgrades of one PostgreSQL database
_ADVISORY_LOCK_KEY = 0x5CA1E5EE9


def _url() -> str:
    """The URL given in code (upgrade_head), else an .ini's sqlalchemy.url, else the settings."""
    url = config.attributes.get("url")
    if not url and config.file_config.has_section(config.config_ini_section):
        url = config.get_main_option("sqlalchemy.url")
    return str(url) if url else get_settings().database_url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        transactional_ddl=True,  # one transaction for the whole upgrade, SQLite included
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``)."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    """``PRAGMA foreign_keys`` on the driver connection, outside any transaction (inside one
    SQLite ignores it)."""
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def _check_sqlite_foreign_keys(connection: Connection) -> None:
    """Refuse to commit an upgrade that left a dangling reference."""
    bad = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if bad:
        raise RuntimeError(f"the upgrade left rows whose foreign keys dangle: {bad[:5]}")


def run_migrations_online() -> None:
    """Upgrade in one transaction that holds the database's write lock.

    PostgreSQL: a transaction-scoped advisory lock; SQLite: ``BEGIN IMMEDIATE`` (the store's
    engine does it for writing connections). A second upgrader waits for the first, then
    reads the version table the first committed and has nothing left to do.

    SQLite runs the upgrade with foreign keys off (SQLite's own procedure for rebuilding a
    table: with them on, dropping the old copy of a table deletes its rows first and cascades
    into every table that references it) and checks every reference before committing.
    """
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                _sqlite_foreign_keys(connection, False)
            try:
                connection.execution_options(**{WRITE_OPTION: True})
                with connection.begin():
                    if connection.dialect.name == "postgresql":
                        connection.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"),
                            {"key": _ADVISORY_LOCK_KEY},
                        )
                    _configure(connection)
                    context.run_migrations()
                    if sqlite:
                        _check_sqlite_foreign_keys(connection)
            finally:
                if sqlite:
                    _sqlite_foreign_keys(connection, True)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
