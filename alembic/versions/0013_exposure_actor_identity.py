"""exposure actors by immutable identity: an IAM user's UserId, a session's source identity

An IAM-user actor is now its UserId (stored in the new ``actor_uid``), so a user re-created
under an old name does not inherit the old user's events. The UserId of events stored before
cannot be known (they keep matching by ARN, as before).

An AWS role session's identity was its ARN only, so people who assumed one role under one
session name with their own ``sourceIdentity`` / ``onBehalfOf`` were one actor; the sessions
stored are re-keyed in place with those (the names before the session name), as the translation
now writes them.

A GCP impersonation actor named the impersonated service account after the person; only the
person is named now (the service account is not theirs): the stored ones lose that name.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28 23:00:00.000000
"""
from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The actor kinds of AWS sessions (connectors/aws_iam/exposure/translate.py); sessions of the
# first two end their ARN with the session name, the last name the translation gave them.
_SESSIONS = ('assumedrole', 'federateduser', 'identitycenteruser', 'root')
_NAMED_SESSIONS = ('assumedrole', 'federateduser')
_SERVICE_ACCOUNT = '.gserviceaccount.com'


def _session_identity(identity: str, kind: str, names: list[str]) -> str:
    if '#' in identity or not identity.startswith('arn:'):
        return identity
    session = identity.rsplit('/', 1)[1] if kind in _NAMED_SESSIONS and '/' in identity else None
    who = [n for n in names if n != session and n != identity]
    return '#'.join((identity, *who))


def upgrade() -> None:
    with op.batch_alter_table('exposure_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('actor_uid', sa.Text(), nullable=False, server_default=''))
    events = sa.table(
        'exposure_events',
        sa.column('actor_identity', sa.Text()),
        sa.column('actor_kind', sa.String()),
        sa.column('actor_names_json', sa.Text()),
    )
    c = events.c
    conn = op.get_bind()
    # One update per distinct actor row, not per event: the ledger may hold millions of events.
    rows = conn.execute(
        sa.select(c.actor_identity, c.actor_kind, c.actor_names_json)
        .where(c.actor_kind.in_((*_SESSIONS, 'impersonation')))
        .distinct()
    ).all()
    for identity, kind, names_json in rows:
        names = [str(n) for n in json.loads(names_json)]
        same = sa.and_(c.actor_identity == identity, c.actor_kind == kind, c.actor_names_json == names_json)
        if kind == 'impersonation':
            kept = [n for n in names if not n.lower().endswith(_SERVICE_ACCOUNT)]
            if kept != names:
                conn.execute(sa.update(events).where(same).values(actor_names_json=json.dumps(kept)))
            continue
        new = _session_identity(identity, kind, names)
        if new != identity:
            conn.execute(sa.update(events).where(same).values(actor_identity=new))


def downgrade() -> None:
    # The re-keyed identities stay: the older code reads them as any other identity.
    with op.batch_alter_table('exposure_events', schema=None) as batch_op:
        batch_op.drop_column('actor_uid')
