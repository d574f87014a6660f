"""who should remove an object a leaver left behind, when its system names someone

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 09:10:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('exposure_objects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('remove_by_json', sa.Text(), nullable=False, server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('exposure_objects', schema=None) as batch_op:
        batch_op.drop_column('remove_by_json')
