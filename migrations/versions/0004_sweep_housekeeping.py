"""Sweep housekeeping: sweeps.archived and table sweep_tags.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:00:00.000000

Rename, tag, archive and delete a sweep (PATCH / DELETE /v1/sweeps/{id}); the list filters
on a tag and hides archived sweeps unless asked.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('sweeps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('archived', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_index(batch_op.f('ix_sweeps_archived'), ['archived'], unique=False)
    op.create_table('sweep_tags',
    sa.Column('sweep_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['sweep_id'], ['sweeps.id'], name=op.f('fk_sweep_tags_sweep_id_sweeps'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sweep_id', 'tag', name=op.f('pk_sweep_tags'))
    )
    with op.batch_alter_table('sweep_tags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sweep_tags_tag'), ['tag'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sweep_tags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sweep_tags_tag'))
    op.drop_table('sweep_tags')
    with op.batch_alter_table('sweeps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sweeps_archived'))
        batch_op.drop_column('archived')
