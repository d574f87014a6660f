"""person_keys in one Unicode form: recomputed as matching compares identifiers now

Matching compares identifiers in NFC, without invisible format characters (zero-width spaces
and joiners, byte order marks, soft hyphens, direction marks), trimmed, in lower case; the keys
were written trimmed and lower case only. A person stored with an address typed decomposed or
carrying a zero-width space kept a key that the webhook path, which now looks up the one form,
never finds: every stored person's keys are written again, as ``storage.people.person_keys``
computes them now. The people rows themselves are left as they are (the next HR read rewrites
them, in that form).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 05:00:00.000000
"""
from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _identifier_key(value: str) -> str:
    """As ``core.records.identifier_key`` computes it (kept here: migrations do not change)."""
    visible = "".join(ch for ch in value if unicodedata.category(ch) != "Cf")
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", visible).strip().lower())


def _before_0014(value: str) -> str:
    """How the keys were written before this migration (downgrade)."""
    return value.strip().lower()


def _keys(employee_id: str, email: str | None, aliases: list[str], norm: Callable[[str], str]) -> set[str]:
    """As ``storage.people.person_keys`` computes them, with ``norm`` for the identifiers."""

    def key(kind: str, value: str) -> str:
        return f"{kind}:{norm(value)}"[:700]

    keys = {key("id", employee_id)}
    emails = {email} if email else set()
    emails.update(a for a in aliases if "@" in a)
    keys.update(key("email", e) for e in emails if norm(e))
    keys.update(key("alias", a) for a in aliases if "@" not in a and norm(a))
    if email and norm(email.split("@", 1)[0]):
        keys.add(key("local", email.split("@", 1)[0]))
    return keys


_PEOPLE = sa.table(
    'people',
    sa.column('source', sa.String),
    sa.column('employee_id', sa.String),
    sa.column('email', sa.String),
    sa.column('aliases_json', sa.Text),
)
_KEYS = sa.table(
    'person_keys',
    sa.column('key', sa.String),
    sa.column('source', sa.String),
    sa.column('employee_id', sa.String),
)


def _rewrite_keys(norm: Callable[[str], str]) -> None:
    """Every stored person's keys written again with ``norm``, in the migration's transaction.
    Every person is read before any key is deleted; a failure part way leaves the keys as they
    were."""
    conn = op.get_bind()
    p = _PEOPLE.c
    people = conn.execute(sa.select(p.source, p.employee_id, p.email, p.aliases_json)).all()
    rows = [
        {"key": k, "source": source, "employee_id": eid}
        for source, eid, email, aliases in people
        for k in sorted(_keys(eid, email, json.loads(aliases or "[]"), norm))
    ]
    conn.execute(sa.delete(_KEYS))
    for start in range(0, len(rows), 5000):
        conn.execute(sa.insert(_KEYS), rows[start : start + 5000])


def upgrade() -> None:
    _rewrite_keys(_identifier_key)


def downgrade() -> None:
    _rewrite_keys(_before_0014)
