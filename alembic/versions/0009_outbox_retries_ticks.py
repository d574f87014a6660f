"""daemon: notification outbox, retries of incomplete webhook jobs, scheduled ticks, and
person_keys (indexed lookups of the people one person's accounts can match; backfilled)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-12 09:00:00.000000
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from alembic import op

import offboard_audit.storage.types


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DT = offboard_audit.storage.types.UTCDateTime


def _key(kind: str, value: str) -> str:
    return f"{kind}:{value.strip().lower()}"[:700]


def _keys(employee_id: str, email: str | None, aliases: list[str]) -> set[str]:
    """As ``storage.people.person_keys`` computes them (kept here: migrations do not change)."""
    keys = {_key("id", employee_id)}
    emails = {email} if email else set()
    emails.update(a for a in aliases if "@" in a)
    keys.update(_key("email", e) for e in emails if e.strip())
    keys.update(_key("alias", a) for a in aliases if "@" not in a and a.strip())
    if email and email.split("@", 1)[0].strip():
        keys.add(_key("local", email.split("@", 1)[0]))
    return keys


def _backfill(conn: sa.engine.Connection) -> Iterator[dict[str, str]]:
    people = sa.table(
        'people',
        sa.column('source', sa.String),
        sa.column('employee_id', sa.String),
        sa.column('email', sa.String),
        sa.column('aliases_json', sa.Text),
    )
    rows = conn.execute(
        sa.select(people.c.source, people.c.employee_id, people.c.email, people.c.aliases_json)
    ).all()
    for source, eid, email, aliases in rows:
        for k in _keys(eid, email, json.loads(aliases or "[]")):
            yield {"key": k, "source": source, "employee_id": eid}


def upgrade() -> None:
    keys = op.create_table(
        'person_keys',
        sa.Column('key', sa.String(length=700), nullable=False),
        sa.Column('source', sa.String(length=128), nullable=False),
        sa.Column('employee_id', sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint('key', 'source', 'employee_id'),
    )
    with op.batch_alter_table('person_keys', schema=None) as batch_op:
        batch_op.create_index('ix_person_keys_person', ['source', 'employee_id'], unique=False)
    conn = op.get_bind()
    batch: list[dict[str, str]] = []
    for row in _backfill(conn):
        batch.append(row)
        if len(batch) >= 5000:
            op.bulk_insert(keys, batch)
            batch = []
    if batch:
        op.bulk_insert(keys, batch)

    with op.batch_alter_table('webhook_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_attempt_at', DT(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_webhook_jobs_next_attempt_at'), ['next_attempt_at'], unique=False)

    op.create_table(
        'notifications',
        sa.Column('notification_id', sa.String(length=200), nullable=False),
        sa.Column('origin', sa.String(length=128), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('target', sa.String(length=32), nullable=False),
        sa.Column('payload_json', sa.Text(), nullable=False),
        sa.Column('created_at', DT(timezone=True), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', DT(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('delivered_at', DT(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('notification_id'),
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notifications_origin'), ['origin'], unique=False)
        batch_op.create_index('ix_notifications_state_next', ['state', 'next_attempt_at'], unique=False)

    op.create_table(
        'daemon_ticks',
        sa.Column('tick_id', sa.String(length=160), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('scheduled_at', DT(timezone=True), nullable=False),
        sa.Column('node', sa.String(length=256), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('started_at', DT(timezone=True), nullable=False),
        sa.Column('run_id', sa.String(length=64), nullable=True),
        sa.Column('finished_at', DT(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('tick_id'),
    )
    with op.batch_alter_table('daemon_ticks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_daemon_ticks_state'), ['state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('person_keys', schema=None) as batch_op:
        batch_op.drop_index('ix_person_keys_person')
    op.drop_table('person_keys')
    with op.batch_alter_table('daemon_ticks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_daemon_ticks_state'))
    op.drop_table('daemon_ticks')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_state_next')
        batch_op.drop_index(batch_op.f('ix_notifications_origin'))
    op.drop_table('notifications')
    with op.batch_alter_table('webhook_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_jobs_next_attempt_at'))
        batch_op.drop_column('next_attempt_at')
