"""Schema management through Alembic only: upgrade to head, and refuse unknown revisions.

The Alembic environment lives in ``migrations/`` at the repository root (``pyproject.toml``
``[tool.alembic]`` points the CLI there); :func:`alembic_config` builds the same config in
code so that ``scalesweep serve`` needs no ``alembic.ini``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError

from service.errors import StorageError

_UPGRADE_HINT = (
    "run `alembic upgrade head` from the scalesweep checkout (or start `scalesweep serve`, "
    "which upgrades the database)"
)


def migrations_dir() -> Path:
    """The ``migrations`` folder beside the ``service`` package (a checkout or editable install)."""
    candidates = [Path(__file__).resolve().parents[2] / "migrations", Path.cwd() / "migrations"]
    for path in candidates:
        if (path / "env.py").is_file():
            return path
    raise StorageError(
        f"Alembic migrations not found (looked in {', '.join(map(str, candidates))})"
    )


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url``, built in code (no alembic.ini)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["url"] = url
    return cfg


def head_revisions(url: str = "sqlite://") -> tuple[str, ...]:
    """The head revision(s) of the migration scripts."""
    return tuple(ScriptDirectory.from_config(alembic_config(url)).get_heads())


def current_revisions(url: str) -> tuple[str, ...]:
    """The revision(s) the database is stamped with (empty for an empty database)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return tuple(MigrationContext.configure(conn).get_current_heads())
    except SQLAlchemyError as e:
        raise StorageError(f"cannot read the schema revision of the database: {e}") from e
    finally:
        engine.dispose()


def _refuse_unknown(url: str, current: tuple[str, ...]) -> None:
    script = ScriptDirectory.from_config(alembic_config(url))
    known = {rev.revision for rev in script.walk_revisions()}
    unknown = [rev for rev in current if rev not in known]
    if unknown:
        raise StorageError(
            f"the database is at schema revision {', '.join(unknown)}, which this version of "
            "scalesweep does not know (a newer scalesweep migrated it?): upgrade scalesweep, "
            "or point SCALESWEEP_DATABASE_URL at another database"
        )


def upgrade_head(url: str) -> None:
    """Upgrade the database to the head revision (an empty database gets the whole schema).

    Concurrent callers are safe: on PostgreSQL ``migrations/env.py`` holds an advisory lock
    for the whole upgrade; SQLite has a single writer anyway.
    """
    _refuse_unknown(url, current_revisions(url))
    try:
        command.upgrade(alembic_config(url), "head")
    except (CommandError, SQLAlchemyError) as e:
        raise StorageError(f"schema upgrade failed: {e}") from e


def check_schema(url: str) -> None:
    """Raise StorageError unless the database is exactly at the head revision."""
    current = current_revisions(url)
    if not current:
        raise StorageError(f"the database has no scalesweep schema: {_UPGRADE_HINT}")
    _refuse_unknown(url, current)
    heads = set(head_revisions(url))
    if set(current) != heads:
        raise StorageError(
            f"the database is at schema revision {', '.join(current)}, not at head "
            f"{', '.join(sorted(heads))}: {_UPGRADE_HINT}"
        )
