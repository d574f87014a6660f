"""Storage for revocation: action rows and the hash-chained audit log.

Records in, records out (``ActionRecord``, ``AuditEvent``); the SQLModel rows stay here.

Appending to the audit log is serialised so that two processes never fork the chain: on
PostgreSQL with a transaction-scoped advisory lock, on SQLite by making the first statement
of the transaction a write (which takes SQLite's single write lock before the chain head is
read). An action row and the audit event that describes it are written in one transaction.
With an audit key on the engine each event also gets its MAC; once the transaction commits,
its last event is noted for the next anchor (``report/audit_trail.py``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import RowMapping, func, insert, select, update
from sqlalchemy.engine import Connection

from offboard_audit.core.actions import ResourceState
from offboard_audit.core.audit_chain import GENESIS, AuditEvent, canonical_payload, event_hash
from offboard_audit.core.stored import (
    DONE_STATUSES,
    ActionRecord,
    ActionStatus,
    state_from_json,
    state_to_json,
)
from offboard_audit.storage.db import Database, chain_key, chunks, note_appended
from offboard_audit.storage.locks import AUDIT_CHAIN, transaction_lock
from offboard_audit.storage.rows import record_of, row_of
from offboard_audit.storage.tables import ACTIONS, AUDIT_EVENTS


class ActionStore(Database):
    """What the audit pipeline and the reports read of the actions taken."""

    def revoked_finding_ids(self) -> set[str]:
        """Findings whose credential an applied (and not undone) action revoked."""
        done = [s.value for s in DONE_STATUSES]
        q = select(ACTIONS.c.finding_id).where(ACTIONS.c.status.in_(done), ACTIONS.c.finding_id.is_not(None))
        with self.begin() as conn:
            return set(conn.execute(q).scalars())

    def action_ids_starting(self, prefix: str) -> list[str]:
        """The action ids that start with ``prefix`` (case-sensitive on every database), sorted."""
        q = select(ACTIONS.c.action_id).where(ACTIONS.c.action_id.startswith(prefix, autoescape=True))
        with self.begin() as conn:
            # SQLite's LIKE ignores case: the exact prefix test is made here.
            return sorted(i for i in conn.execute(q).scalars() if i.startswith(prefix))

    def actions_by_finding(self, finding_ids: Sequence[str]) -> dict[str, list[ActionRecord]]:
        """Actions per finding (undo rows included), oldest first."""
        out: dict[str, list[ActionRecord]] = defaultdict(list)
        for batch in chunks(list(finding_ids), 500):
            for rec in load_actions(self, finding_ids=batch):
                assert rec.finding_id is not None
                out[rec.finding_id].append(rec)
        return dict(out)


# --- audit events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NewEvent:
    """An event to append; ``seq``, ``prev_hash`` and ``hash`` are assigned on append."""

    kind: str
    at: datetime
    actor: str
    payload: Mapping[str, object]
    action_id: str | None = None
    run_id: str | None = None


# conn.info key of the events appended in the open chain transaction.
_APPENDED = "offboard_audit.appended_events"


@contextmanager
def chain_transaction(db: Database) -> Iterator[Connection]:
    """A write transaction that holds the audit chain's lock from its first statement."""
    appended: list[AuditEvent] = []
    with db.engine.begin() as conn:
        # First statement: the chain head read below cannot be outdated by another writer.
        transaction_lock(conn, AUDIT_CHAIN)
        conn.info[_APPENDED] = appended
        try:
            yield conn
        finally:
            conn.info.pop(_APPENDED, None)
    # Committed: only now are these events in the log, so only now may an anchor name them.
    if appended:
        note_appended(db.engine, appended[-1])


def append_events(conn: Connection, events: Sequence[NewEvent]) -> list[AuditEvent]:
    """Append events inside a :func:`chain_transaction`; keyed when the engine has an audit key
    (``db.use_chain_key``)."""
    e = AUDIT_EVENTS.c
    head = conn.execute(select(e.seq, e.hash).order_by(e.seq.desc()).limit(1)).first()
    seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
    key = chain_key(conn.engine)
    out: list[AuditEvent] = []
    for ev in events:
        seq += 1
        payload_json = canonical_payload(ev.payload)
        h = event_hash(prev, seq, ev.at, ev.kind, ev.actor, ev.run_id, ev.action_id, payload_json)
        mac, key_id = (key.event_mac(h), key.key_id) if key is not None else (None, None)
        event = AuditEvent(
            seq, ev.at, ev.kind, ev.actor, ev.run_id, ev.action_id, payload_json, prev, h, mac, key_id
        )
        conn.execute(insert(AUDIT_EVENTS).values(row_of(event, AUDIT_EVENTS)))
        out.append(event)
        prev = h
    appended = conn.info.get(_APPENDED)
    if isinstance(appended, list):
        appended.extend(out)
    return out


def append_event(db: Database, event: NewEvent) -> AuditEvent:
    with chain_transaction(db) as conn:
        return append_events(conn, [event])[0]


def iter_events(db: Database, batch: int = 2000) -> Iterator[AuditEvent]:
    """Every event in ``seq`` order, read in batches."""
    last = 0
    while True:
        q = select(AUDIT_EVENTS).where(AUDIT_EVENTS.c.seq > last).order_by(AUDIT_EVENTS.c.seq).limit(batch)
        with db.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        if not rows:
            return
        for r in rows:
            yield record_of(AuditEvent, r)
        last = int(rows[-1]["seq"])


def last_event(db: Database) -> AuditEvent | None:
    """The chain's head as the database shows it."""
    q = select(AUDIT_EVENTS).order_by(AUDIT_EVENTS.c.seq.desc()).limit(1)
    with db.engine.connect() as conn:
        row = conn.execute(q).mappings().first()
    return record_of(AuditEvent, row) if row is not None else None


def events_up_to(db: Database, seq: int) -> int:
    """How many events the log holds up to and including ``seq`` (an anchor's count)."""
    q = select(func.count()).select_from(AUDIT_EVENTS).where(AUDIT_EVENTS.c.seq <= seq)
    with db.engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def events_for_actions(db: Database, action_ids: Sequence[str]) -> list[AuditEvent]:
    if not action_ids:
        return []
    q = (
        select(AUDIT_EVENTS)
        .where(AUDIT_EVENTS.c.action_id.in_(list(action_ids)))
        .order_by(AUDIT_EVENTS.c.seq)
    )
    with db.engine.connect() as conn:
        return [record_of(AuditEvent, r) for r in conn.execute(q).mappings()]


# --- actions --------------------------------------------------------------------------------


def action_row(rec: ActionRecord) -> dict[str, object]:
    return row_of(
        rec,
        ACTIONS,
        person_employee_id=rec.person,
        prior_state_json=state_to_json(rec.prior_state),
        result_state_json=state_to_json(rec.result_state),
    )


def _action(r: RowMapping) -> ActionRecord:
    return record_of(
        ActionRecord,
        r,
        person=r["person_employee_id"],
        prior_state=state_from_json(r["prior_state_json"]),
        result_state=state_from_json(r["result_state_json"]),
    )


def record_new_action(db: Database, rec: ActionRecord, event: NewEvent) -> AuditEvent:
    """Insert an action row and its audit event atomically (the intent, or a plain failure)."""
    with chain_transaction(db) as conn:
        conn.execute(insert(ACTIONS).values(action_row(rec)))
        return append_events(conn, [event])[0]


def record_outcome(
    db: Database,
    action_id: str,
    status: ActionStatus,
    at: datetime,
    event: NewEvent,
    error: str | None = None,
    result_state: ResourceState | None = None,
    also: Mapping[str, ActionStatus] | None = None,
) -> AuditEvent:
    """Update an action row's status and append its outcome event in one transaction.

    ``also`` maps other action ids to a new status (an undo marks the original ``undone``).
    """
    with chain_transaction(db) as conn:
        values: dict[str, object] = {"status": ActionStatus(status).value, "updated_at": at, "error": error}
        if result_state is not None:
            values["result_state_json"] = state_to_json(result_state)
        conn.execute(update(ACTIONS).where(ACTIONS.c.action_id == action_id).values(values))
        for other, other_status in (also or {}).items():
            conn.execute(
                update(ACTIONS)
                .where(ACTIONS.c.action_id == other)
                .values(status=ActionStatus(other_status).value, updated_at=at)
            )
        return append_events(conn, [event])[0]


def load_actions(
    db: Database,
    *,
    statuses: Sequence[ActionStatus] | None = None,
    person: str | None = None,
    action_ids: Sequence[str] | None = None,
    finding_ids: Sequence[str] | None = None,
) -> list[ActionRecord]:
    """Stored actions, oldest first."""
    q = select(ACTIONS)
    if statuses is not None:
        q = q.where(ACTIONS.c.status.in_([ActionStatus(s).value for s in statuses]))
    if person is not None:
        q = q.where(ACTIONS.c.person_employee_id == person)
    if action_ids is not None:
        q = q.where(ACTIONS.c.action_id.in_(list(action_ids)))
    if finding_ids is not None:
        q = q.where(ACTIONS.c.finding_id.in_(list(finding_ids)))
    q = q.order_by(ACTIONS.c.created_at, ACTIONS.c.action_id)
    with db.engine.connect() as conn:
        return [_action(r) for r in conn.execute(q).mappings()]
