"""runs.width: the effective hidden width, a key column for filters and grouping.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-15 12:00:00.000000

Width is a sweep axis (``grid.width``, ``grid.width_ratio``): like d and n it gets an indexed
column, the run's effective width (``RunConfig.width``): ``training.width`` where the config
gives one, else the quadratic default d (2d with a signed second layer), and d for the
diagonal net. Existing rows are filled from their stored config JSON in one UPDATE per
backend (SQLite's ``json_extract``, PostgreSQL's ``->``/``->>``), then the column becomes
NOT NULL. SQLite makes a column NOT NULL only by rebuilding the table: ``runs`` is rebuilt in
batch mode, rows and ids kept and still ``AUTOINCREMENT`` (as in 0006; ``migrations/env.py``
turns foreign keys off for the rebuild and checks them all before committing).
"""
from typing import Any, Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: Union[str, None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_BACKFILL = {
    'sqlite': """
        UPDATE runs SET width = CASE
            WHEN model = 'diagonal' THEN d
            WHEN json_extract(config, '$.training.width') IS NOT NULL
                THEN CAST(json_extract(config, '$.training.width') AS INTEGER)
            WHEN json_extract(config, '$.training.second_layer') = 'signed' THEN 2 * d
            ELSE d
        END
    """,
    'postgresql': """
        UPDATE runs SET width = CASE
            WHEN model = 'diagonal' THEN d
            WHEN (config -> 'training' ->> 'width') IS NOT NULL
                THEN CAST(config -> 'training' ->> 'width' AS INTEGER)
            WHEN (config -> 'training' ->> 'second_layer') = 'signed' THEN 2 * d
            ELSE d
        END
    """,
}


def _rebuild(table: str) -> Any:
    """A batch that rebuilds ``table`` on SQLite keeping AUTOINCREMENT (elsewhere: ALTERs)."""
    sqlite = op.get_context().dialect.name == 'sqlite'
    return op.batch_alter_table(
        table,
        schema=None,
        recreate='always' if sqlite else 'auto',
        table_kwargs={'sqlite_autoincrement': True} if sqlite else {},
    )


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect not in _BACKFILL:
        raise RuntimeError(f'0007 fills runs.width on sqlite and postgresql, not {dialect}')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('width', sa.Integer(), nullable=True))
    op.execute(sa.text(_BACKFILL[dialect]))
    with _rebuild('runs') as batch_op:
        batch_op.alter_column('width', existing_type=sa.Integer(), nullable=False)
        batch_op.create_index(batch_op.f('ix_runs_width'), ['width'], unique=False)


def downgrade() -> None:
    with _rebuild('runs') as batch_op:
        batch_op.drop_index(batch_op.f('ix_runs_width'))
        batch_op.drop_column('width')
