"""people: the last HR row, the last applied status change and sticky terminations;
webhook events: whether they were applied, superseded or a conflict

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 12:00:00.000000
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate renders sqlmodel.sql.sqltypes.AutoString)
from alembic import op

import offboard_audit.storage.types


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('people', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hr_row_json', sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column('changed_at', offboard_audit.storage.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                'changed_by', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False, server_default=''
            )
        )
        batch_op.add_column(
            sa.Column('missing_since', offboard_audit.storage.types.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False, server_default='received'
            )
        )
    _backfill_hr_rows()


def _backfill_hr_rows() -> None:
    """Before this revision a full HR read replaced each stored person with its row, so the
    stored person is the best known last row (the same JSON as ``storage.people._hr_row_json``)."""
    people = sa.table(
        'people',
        sa.column('source', sa.String),
        sa.column('employee_id', sa.String),
        sa.column('email', sa.String),
        sa.column('name', sa.String),
        sa.column('status', sa.String),
        sa.column('terminated_at', offboard_audit.storage.types.UTCDateTime(timezone=True)),
        sa.column('aliases_json', sa.Text),
        sa.column('hr_row_json', sa.Text),
    )
    conn = op.get_bind()
    rows = list(conn.execute(sa.select(people)).mappings())
    for r in rows:
        terminated_at = r['terminated_at']
        row = {
            'email': r['email'],
            'name': r['name'],
            'status': r['status'],
            'terminated_at': terminated_at.astimezone(UTC).isoformat() if terminated_at else None,
            'aliases': json.loads(r['aliases_json'] or '[]'),
        }
        conn.execute(
            sa.update(people)
            .where(people.c.source == r['source'], people.c.employee_id == r['employee_id'])
            .values(hr_row_json=json.dumps(row, sort_keys=True))
        )


def downgrade() -> None:
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_column('status')
    with op.batch_alter_table('people', schema=None) as batch_op:
        batch_op.drop_column('missing_since')
        batch_op.drop_column('changed_by')
        batch_op.drop_column('changed_at')
        batch_op.drop_column('hr_row_json')
