"""In-flight deduplication (runs.follows, table run_leaders) and ids that are never reused.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 12:00:00.000000

A configuration queued or running in one sweep of a team is trained once: its leader is a
row of ``run_leaders`` (team pool, config_hash -> run), and the same configuration in the
team's other sweeps follows it (``runs.follows``) until its result arrives
(service.storage.leaders).

SQLite hands the id of a deleted newest row to the next insert unless the table is
``AUTOINCREMENT``, which only a rebuilt table can become: ``sweeps``, ``runs`` and
``api_tokens`` (the ids that leave the store) are rebuilt in batch mode, rows and ids kept
(``migrations/env.py`` turns foreign keys off for the rebuild, so dropping the old table
cascades into nothing, and checks them all before committing). An id deleted before this
revision may still come back once (nothing records it); none after. PostgreSQL's sequences
never reuse a value: there only the column and the table are added.
"""
from typing import Any, Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

def _rebuild(table: str, autoincrement: bool) -> Any:
    """A batch that rebuilds ``table`` on SQLite with or without AUTOINCREMENT (elsewhere: ALTERs)."""
    sqlite = op.get_context().dialect.name == 'sqlite'
    return op.batch_alter_table(
        table,
        schema=None,
        recreate='always' if sqlite else 'auto',
        table_kwargs={'sqlite_autoincrement': autoincrement} if sqlite else {},
    )


def upgrade() -> None:
    with _rebuild('sweeps', True):
        pass
    with _rebuild('api_tokens', True):
        pass
    with _rebuild('runs', True) as batch_op:
        batch_op.add_column(sa.Column('follows', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_runs_follows'), ['follows'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_runs_follows_runs'), 'runs', ['follows'], ['id'])
    op.create_table('run_leaders',
    sa.Column('pool', sa.String(length=200), nullable=False),
    sa.Column('config_hash', sa.String(length=64), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_leaders_run_id_runs')),
    sa.PrimaryKeyConstraint('pool', 'config_hash', name=op.f('pk_run_leaders')),
    sa.UniqueConstraint('run_id', name=op.f('uq_run_leaders_run_id'))
    )


def downgrade() -> None:
    op.drop_table('run_leaders')
    with _rebuild('runs', False) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_runs_follows_runs'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_runs_follows'))
        batch_op.drop_column('follows')
    with _rebuild('api_tokens', False):
        pass
    with _rebuild('sweeps', False):
        pass
