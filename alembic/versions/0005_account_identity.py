"""immutable account identity on accounts, findings and actions (revocation re-checks it);
credentials whose id is a bulk-listing placeholder

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 06:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Rows written before this revision have no identity (""): the engine refuses to act on them
# until an audit has re-read the account ("target-changed: run the audit again").
_TABLES = {'accounts': 'uid', 'findings': 'account_uid', 'actions': 'account_uid'}


def upgrade() -> None:
    for table, column in _TABLES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column(column, sa.String(length=512), nullable=False, server_default=''))
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provisional', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.drop_column('provisional')
    for table, column in _TABLES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column(column)
