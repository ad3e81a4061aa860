"""SQL storage of sweeps, runs and results (SQLite by default, PostgreSQL for teams).

The interface is :mod:`service.storage.base` (declared once, used by the API and the
runner); :class:`Store` implements it. Tables stay private to this package and the schema
is owned by the Alembic revisions in ``migrations/``.
"""

from service.storage.base import ANY_TEAM, RunnerStore, SweepStore
from service.storage.migrate import check_schema, upgrade_head
from service.storage.store import Store, make_store

__all__ = [
    "ANY_TEAM",
    "RunnerStore",
    "Store",
    "SweepStore",
    "check_schema",
    "make_store",
    "upgrade_head",
]
