"""spectra.resolution: the certificate's resolution of a certified spectrum.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 12:00:00.000000

A run's spectra are those of its certified minimum (gap-safe screening); a value at or below
the certificate's resolution may be zero at the minimum and is not fitted. Spectra stored
before this revision have none (NULL).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('spectra', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resolution', sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('spectra', schema=None) as batch_op:
        batch_op.drop_column('resolution')
