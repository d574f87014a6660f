"""text columns for values that come from other systems (names, DNs, ids, emails)

PostgreSQL enforces VARCHAR lengths that SQLite ignores: a 300-character HR name or a
700-character directory DN failed the whole audit on one database and passed on the other.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 08:30:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> [(column, old VARCHAR length, nullable)]
_COLUMNS: dict[str, list[tuple[str, int, bool]]] = {
    'people': [('employee_id', 128, False), ('email', 320, True), ('name', 256, False), ('changed_by', 256, False)],
    'person_keys': [('key', 700, False), ('employee_id', 128, False)],
    'accounts': [('account_id', 512, False), ('scope', 256, False), ('username', 512, False), ('display_name', 512, False), ('uid', 512, False)],
    'credentials': [('account_id', 512, False), ('credential_id', 512, False), ('scope', 256, False)],
    'findings': [('scope', 256, False), ('account_id', 512, False), ('account_name', 512, False), ('account_uid', 512, False), ('credential_id', 512, True), ('person_employee_id', 128, True), ('person_email', 320, True), ('person_name', 256, True), ('owner_email', 320, True)],
    'actions': [('scope', 256, False), ('account_id', 512, False), ('username', 512, False), ('account_uid', 512, False), ('credential_id', 512, False), ('person_employee_id', 128, True)],
    'exposure_events': [('event_id', 255, False), ('scope', 256, False), ('action', 128, False), ('actor_identity', 1024, False), ('actor_account_id', 1024, False), ('target_scope', 256, False), ('target_owner', 512, False), ('target_fingerprint', 256, False)],
    'exposure_checkpoints': [('stream', 700, False)],
    'exposure_secrets': [('scope', 256, False), ('secret_id', 700, False), ('owner', 320, True)],
    'exposure_objects': [('scope', 256, False), ('object_id', 700, False), ('owner', 512, False), ('fingerprint', 256, False)],
}


def upgrade() -> None:
    for table, columns in _COLUMNS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, length, nullable in columns:
                batch_op.alter_column(
                    name, existing_type=sa.String(length=length), type_=sa.Text(), existing_nullable=nullable
                )


def downgrade() -> None:
    for table, columns in _COLUMNS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, length, nullable in columns:
                batch_op.alter_column(
                    name, existing_type=sa.Text(), type_=sa.String(length=length), existing_nullable=nullable
                )
