"""run leases: the process that runs a run (owner) and until when its lease holds (lease_until);
a running run whose lease ran out is marked abandoned

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 09:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import offboard_audit.storage.types


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Runs left running before this revision get no lease: their process cannot renew one, so the
# next run to start marks them abandoned.
def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=255), nullable=False, server_default=''))
        batch_op.add_column(
            sa.Column('lease_until', offboard_audit.storage.types.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('lease_until')
        batch_op.drop_column('owner')
