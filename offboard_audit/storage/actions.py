"""Storage for revocation: action rows, the hash-chained audit log and lock rows.

Records in, records out (``ActionRecord``, ``AuditEvent``); the SQLModel rows stay here.

Appending to the audit log is serialised so that two processes never fork the chain: on
PostgreSQL with a transaction-scoped advisory lock, on SQLite by making the first statement
of the transaction a write (which takes SQLite's single write lock before the chain head is
read). An action row and the audit event that describes it are written in one transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, delete, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from offboard_audit.core.audit_chain import GENESIS, AuditEvent, canonical_payload, event_hash
from offboard_audit.core.planning import ActionRecord, state_from_json, state_to_json
from offboard_audit.core.records import CredentialKind, ResourceState, Stage
from offboard_audit.storage.models import ActionRow, AuditEventRow, LockRow, RunRow, SourceRunRow
from offboard_audit.storage.store import Store

ACTIONS = ActionRow.__table__  # type: ignore[attr-defined]
EVENTS = AuditEventRow.__table__  # type: ignore[attr-defined]
LOCKS = LockRow.__table__  # type: ignore[attr-defined]
RUNS = RunRow.__table__  # type: ignore[attr-defined]
SOURCE_RUNS = SourceRunRow.__table__  # type: ignore[attr-defined]

_CHAIN_LOCK_NAME = "offboard-audit:audit-chain"


def lock_key(name: str) -> int:
    """A signed 64-bit key for PostgreSQL advisory locks, derived from a lock name."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def is_postgres(store: Store) -> bool:
    return store.engine.dialect.name == "postgresql"


# --- audit events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NewEvent:
    """An event to append; ``seq``, ``prev_hash`` and ``hash`` are assigned on append."""

    kind: str
    at: datetime
    actor: str
    payload: Mapping[str, Any]
    action_id: str | None = None
    run_id: str | None = None


@contextmanager
def chain_transaction(store: Store) -> Iterator[Connection]:
    """A write transaction that holds the audit chain's lock from its first statement."""
    with store.engine.begin() as conn:
        if is_postgres(store):
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(_CHAIN_LOCK_NAME)})
        else:
            # A write as the first statement takes SQLite's write lock (waiting on busy_timeout)
            # before anything is read, so the head read below cannot be outdated by another writer.
            conn.execute(update(LOCKS).where(LOCKS.c.name == _CHAIN_LOCK_NAME).values(holder=LOCKS.c.holder))
        yield conn


def append_events(conn: Connection, events: Sequence[NewEvent]) -> list[AuditEvent]:
    """Append events inside a :func:`chain_transaction`."""
    head = conn.execute(select(EVENTS.c.seq, EVENTS.c.hash).order_by(EVENTS.c.seq.desc()).limit(1)).first()
    seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
    out: list[AuditEvent] = []
    for ev in events:
        seq += 1
        payload_json = canonical_payload(ev.payload)
        h = event_hash(prev, seq, ev.at, ev.kind, ev.actor, ev.run_id, ev.action_id, payload_json)
        conn.execute(
            insert(EVENTS).values(
                seq=seq,
                at=ev.at,
                kind=ev.kind,
                actor=ev.actor,
                run_id=ev.run_id,
                action_id=ev.action_id,
                payload_json=payload_json,
                prev_hash=prev,
                hash=h,
            )
        )
        out.append(AuditEvent(seq, ev.at, ev.kind, ev.actor, ev.run_id, ev.action_id, payload_json, prev, h))
        prev = h
    return out


def append_event(store: Store, event: NewEvent) -> AuditEvent:
    with chain_transaction(store) as conn:
        return append_events(conn, [event])[0]


def _event(r: RowMapping) -> AuditEvent:
    return AuditEvent(
        seq=int(r["seq"]),
        at=r["at"],
        kind=r["kind"],
        actor=r["actor"],
        run_id=r["run_id"],
        action_id=r["action_id"],
        payload_json=r["payload_json"],
        prev_hash=r["prev_hash"],
        hash=r["hash"],
    )


def iter_events(store: Store, batch: int = 2000) -> Iterator[AuditEvent]:
    """Every event in ``seq`` order, read in batches."""
    last = 0
    while True:
        with store.engine.connect() as conn:
            rows = (
                conn.execute(select(EVENTS).where(EVENTS.c.seq > last).order_by(EVENTS.c.seq).limit(batch))
                .mappings()
                .all()
            )
        if not rows:
            return
        for r in rows:
            yield _event(r)
        last = int(rows[-1]["seq"])


def events_for_actions(store: Store, action_ids: Sequence[str]) -> list[AuditEvent]:
    if not action_ids:
        return []
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(EVENTS).where(EVENTS.c.action_id.in_(list(action_ids))).order_by(EVENTS.c.seq)
        ).mappings()
        return [_event(r) for r in rows]


# --- actions --------------------------------------------------------------------------------


def action_row(rec: ActionRecord) -> dict[str, Any]:
    return {
        "action_id": rec.action_id,
        "plan_id": rec.plan_id,
        "finding_id": rec.finding_id,
        "source": rec.source,
        "system": rec.system,
        "scope": rec.scope,
        "account_id": rec.account_id,
        "username": rec.username,
        "account_uid": rec.account_uid,
        "credential_id": rec.credential_id,
        "credential_kind": rec.credential_kind.value,
        "detail": rec.detail,
        "action": rec.action,
        "stage": rec.stage.value,
        "reversible": rec.reversible,
        "person_employee_id": rec.person,
        "status": rec.status,
        "error": rec.error,
        "prior_state_json": state_to_json(rec.prior_state),
        "result_state_json": state_to_json(rec.result_state),
        "actor": rec.actor,
        "undo_of": rec.undo_of,
        "created_at": rec.created_at,
        "updated_at": rec.updated_at,
    }


def _action(r: RowMapping) -> ActionRecord:
    return ActionRecord(
        action_id=r["action_id"],
        plan_id=r["plan_id"],
        finding_id=r["finding_id"],
        source=r["source"],
        system=r["system"],
        scope=r["scope"],
        account_id=r["account_id"],
        username=r["username"],
        account_uid=r["account_uid"],
        credential_id=r["credential_id"],
        credential_kind=CredentialKind(r["credential_kind"]),
        detail=r["detail"],
        action=r["action"],
        stage=Stage(r["stage"]),
        reversible=bool(r["reversible"]),
        person=r["person_employee_id"],
        status=r["status"],
        error=r["error"],
        prior_state=state_from_json(r["prior_state_json"]),
        result_state=state_from_json(r["result_state_json"]),
        actor=r["actor"],
        undo_of=r["undo_of"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def record_new_action(store: Store, rec: ActionRecord, event: NewEvent) -> AuditEvent:
    """Insert an action row and its audit event atomically (the intent, or a plain failure)."""
    with chain_transaction(store) as conn:
        conn.execute(insert(ACTIONS).values(**action_row(rec)))
        return append_events(conn, [event])[0]


def record_outcome(
    store: Store,
    action_id: str,
    status: str,
    at: datetime,
    event: NewEvent,
    error: str | None = None,
    result_state: ResourceState | None = None,
    also: Mapping[str, str] | None = None,
) -> AuditEvent:
    """Update an action row's status and append its outcome event in one transaction.

    ``also`` maps other action ids to a new status (an undo marks the original ``undone``).
    """
    with chain_transaction(store) as conn:
        values: dict[str, Any] = {"status": status, "updated_at": at, "error": error}
        if result_state is not None:
            values["result_state_json"] = state_to_json(result_state)
        conn.execute(update(ACTIONS).where(ACTIONS.c.action_id == action_id).values(**values))
        for other, other_status in (also or {}).items():
            conn.execute(
                update(ACTIONS).where(ACTIONS.c.action_id == other).values(status=other_status, updated_at=at)
            )
        return append_events(conn, [event])[0]


def load_actions(
    store: Store,
    *,
    statuses: Sequence[str] | None = None,
    person: str | None = None,
    action_ids: Sequence[str] | None = None,
    finding_ids: Sequence[str] | None = None,
) -> list[ActionRecord]:
    """Stored actions, oldest first."""
    with store.engine.connect() as conn:
        q = select(ACTIONS)
        if statuses is not None:
            q = q.where(ACTIONS.c.status.in_(list(statuses)))
        if person is not None:
            q = q.where(ACTIONS.c.person_employee_id == person)
        if action_ids is not None:
            q = q.where(ACTIONS.c.action_id.in_(list(action_ids)))
        if finding_ids is not None:
            q = q.where(ACTIONS.c.finding_id.in_(list(finding_ids)))
        q = q.order_by(ACTIONS.c.created_at, ACTIONS.c.action_id)
        return [_action(r) for r in conn.execute(q).mappings()]


# --- runs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunState:
    """What ``revoke`` needs to know about the newest finished audit run."""

    run_id: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    circuit_breaker: str | None


def latest_run(store: Store) -> RunState | None:
    with store.engine.connect() as conn:
        row = (
            conn.execute(
                select(RUNS)
                .where(RUNS.c.finished_at.is_not(None))
                .order_by(RUNS.c.started_at.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
    if row is None:
        return None
    return RunState(
        row["run_id"], row["started_at"], row["finished_at"], row["status"], row["circuit_breaker"]
    )


def last_good_read(store: Store) -> dict[str, datetime]:
    """Per source, when the newest run that read it successfully started."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(SOURCE_RUNS.c.name, RUNS.c.started_at)
            .join(RUNS, RUNS.c.run_id == SOURCE_RUNS.c.run_id)
            .where(SOURCE_RUNS.c.status.in_(["ok", "degraded"]))
        ).all()
    out: dict[str, datetime] = {}
    for name, started in rows:
        if name not in out or started > out[name]:
            out[name] = started
    return out


# --- lock rows (databases without advisory locks) -------------------------------------------


@dataclass(frozen=True)
class LockHolder:
    name: str
    holder: str
    acquired_at: datetime
    expires_at: datetime


def read_lock(store: Store, name: str) -> LockHolder | None:
    with store.engine.connect() as conn:
        r = conn.execute(select(LOCKS).where(LOCKS.c.name == name)).mappings().first()
    if r is None:
        return None
    return LockHolder(r["name"], r["holder"], r["acquired_at"], r["expires_at"])


def try_lock_row(
    store: Store, name: str, holder: str, now: datetime, expires_at: datetime, steal_from: str | None = None
) -> bool:
    """Take the lock row if it is free, or replace ``steal_from`` (an expired or dead holder).

    The replace is a compare-and-set on the old holder, so two processes stealing the same
    stale lock cannot both win.
    """
    try:
        with store.engine.begin() as conn:
            if steal_from is None:
                conn.execute(
                    insert(LOCKS).values(name=name, holder=holder, acquired_at=now, expires_at=expires_at)
                )
                return True
            result = conn.execute(
                update(LOCKS)
                .where(LOCKS.c.name == name, LOCKS.c.holder == steal_from)
                .values(holder=holder, acquired_at=now, expires_at=expires_at)
            )
            return bool(result.rowcount)
    except IntegrityError:
        return False


def renew_lock_row(store: Store, name: str, holder: str, expires_at: datetime) -> bool:
    with store.engine.begin() as conn:
        result = conn.execute(
            update(LOCKS).where(LOCKS.c.name == name, LOCKS.c.holder == holder).values(expires_at=expires_at)
        )
        return bool(result.rowcount)


def release_lock_row(store: Store, name: str, holder: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(delete(LOCKS).where(LOCKS.c.name == name, LOCKS.c.holder == holder))


def payload_dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
