"""exposure actors by immutable identity: an IAM user's UserId

An IAM-user actor is now its UserId (stored in the new ``actor_uid``), so a user re-created
under an old name does not inherit the old user's events. The UserId of events stored before
cannot be known (they keep matching by ARN, as before).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28 23:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('exposure_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('actor_uid', sa.Text(), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('exposure_events', schema=None) as batch_op:
        batch_op.drop_column('actor_uid')
