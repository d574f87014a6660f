"""webhook jobs: owner lease, attempts and takeovers (recovery of jobs left by a dead daemon)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 09:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import offboard_audit.storage.types


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('webhook_jobs', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('lease_expires_at', offboard_audit.storage.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('takeovers_json', sa.Text(), nullable=False, server_default='[]'))
        batch_op.create_index(batch_op.f('ix_webhook_jobs_lease_expires_at'), ['lease_expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('webhook_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_jobs_lease_expires_at'))
        batch_op.drop_column('takeovers_json')
        batch_op.drop_column('attempts')
        batch_op.drop_column('lease_expires_at')
