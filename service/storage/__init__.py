"""SQL storage of sweeps, runs and results (SQLite by default, PostgreSQL for teams).

The interface is notes/store-interface.md; tables stay private to this package and the
schema is owned by the Alembic revisions in ``migrations/``.
"""

from service.storage.migrate import check_schema, upgrade_head
from service.storage.store import Store, make_store

__all__ = ["Store", "check_schema", "make_store", "upgrade_head"]
