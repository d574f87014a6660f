"""The notification outbox and the daemon's scheduled ticks.

Notifications are rows (``notifications``), written in the same transaction as the run or job
they belong to (:func:`add_notifications` takes the caller's connection), so a daemon that dies
before sending loses nothing: whichever replica leads sends the pending ones, with backoff across
restarts. A row's id is deterministic (origin, kind, target), so writing the same message twice
stores it once; delivery is at least once, and the payload carries the id for the receiver to
deduplicate. Every state change is conditional on the row still being ``pending``.

Ticks (``daemon_ticks``) record each firing of the schedule on the leader and the run it started:
a tick left ``running`` by a leader that died is found by the next one (:meth:`TickStore.orphaned`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Insert, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from offboard_audit.core.jobs import Notification, NotificationState, ScheduledTick, TickState
from offboard_audit.storage.db import Database, is_postgres
from offboard_audit.storage.rows import record_of, row_of
from offboard_audit.storage.tables import DAEMON_TICKS as TICKS
from offboard_audit.storage.tables import NOTIFICATIONS, RUNS

_PENDING = NotificationState.PENDING.value


def _insert_ignoring_duplicates(conn: Connection) -> Insert:
    """INSERT that skips a row whose id exists (no IntegrityError: on PostgreSQL that would abort
    the caller's whole transaction)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(NOTIFICATIONS).on_conflict_do_nothing(index_elements=["notification_id"])
    return sqlite.insert(NOTIFICATIONS).on_conflict_do_nothing()


def add_notifications(conn: Connection, notifications: Sequence[Notification]) -> int:
    """Write notifications on ``conn`` (the caller's transaction); returns how many were new."""
    if not notifications:
        return 0
    rows = [row_of(n, NOTIFICATIONS) for n in notifications]
    stmt = _insert_ignoring_duplicates(conn).returning(NOTIFICATIONS.c.notification_id)
    return len(list(conn.execute(stmt, rows).scalars()))


class OutboxStore:
    """Pending, delivered and undeliverable notifications."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.postgres = is_postgres(db)

    def add(self, notifications: Sequence[Notification]) -> int:
        with self.db.begin() as conn:
            return add_notifications(conn, notifications)

    def due(self, now: datetime, limit: int = 50) -> list[Notification]:
        """Pending notifications whose next attempt has come, oldest first."""
        due = (NOTIFICATIONS.c.next_attempt_at.is_(None)) | (NOTIFICATIONS.c.next_attempt_at <= now)
        with self.db.begin() as conn:
            rows = conn.execute(
                select(NOTIFICATIONS)
                .where(NOTIFICATIONS.c.state == _PENDING, due)
                .order_by(NOTIFICATIONS.c.created_at, NOTIFICATIONS.c.notification_id)
                .limit(limit)
            ).mappings()
            return [record_of(Notification, r) for r in rows]

    def get(self, notification_id: str) -> Notification | None:
        with self.db.begin() as conn:
            r = (
                conn.execute(select(NOTIFICATIONS).where(NOTIFICATIONS.c.notification_id == notification_id))
                .mappings()
                .first()
            )
        return record_of(Notification, r) if r is not None else None

    def of(self, origin: str | None = None) -> list[Notification]:
        q = select(NOTIFICATIONS)
        if origin is not None:
            q = q.where(NOTIFICATIONS.c.origin == origin)
        with self.db.begin() as conn:
            rows = conn.execute(q.order_by(NOTIFICATIONS.c.created_at, NOTIFICATIONS.c.notification_id))
            return [record_of(Notification, r) for r in rows.mappings()]

    def delivered(self, notification_id: str, now: datetime) -> bool:
        """Mark a pending notification delivered; False when it was not pending any more."""
        with self.db.begin() as conn:
            done = conn.execute(
                update(NOTIFICATIONS)
                .where(NOTIFICATIONS.c.notification_id == notification_id, NOTIFICATIONS.c.state == _PENDING)
                .values(
                    state=NotificationState.DELIVERED.value,
                    delivered_at=now,
                    attempts=NOTIFICATIONS.c.attempts + 1,
                    next_attempt_at=None,
                    last_error=None,
                )
            )
            return bool(done.rowcount)

    def failed(self, notification_id: str, error: str, next_attempt_at: datetime | None) -> bool:
        """Record a failed attempt: retried at ``next_attempt_at``, or undeliverable when None."""
        state = NotificationState.PENDING if next_attempt_at is not None else NotificationState.UNDELIVERABLE
        with self.db.begin() as conn:
            done = conn.execute(
                update(NOTIFICATIONS)
                .where(NOTIFICATIONS.c.notification_id == notification_id, NOTIFICATIONS.c.state == _PENDING)
                .values(
                    state=state.value,
                    attempts=NOTIFICATIONS.c.attempts + 1,
                    next_attempt_at=next_attempt_at,
                    last_error=error[:2000],
                )
            )
            return bool(done.rowcount)

    def counts(self) -> dict[NotificationState, int]:
        """How many notifications are in each state."""
        with self.db.begin() as conn:
            rows = conn.execute(
                select(NOTIFICATIONS.c.state, func.count()).group_by(NOTIFICATIONS.c.state)
            ).all()
        out = {s: 0 for s in NotificationState}
        for state, n in rows:
            out[NotificationState(state)] = int(n)
        return out


class TickStore:
    """The schedule's firings on the leader (``daemon_ticks``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def start(self, tick: ScheduledTick) -> None:
        with self.db.begin() as conn:
            conn.execute(insert(TICKS).values(row_of(tick, TICKS)))

    def set_run(self, tick_id: str, run_id: str) -> None:
        with self.db.begin() as conn:
            conn.execute(update(TICKS).where(TICKS.c.tick_id == tick_id).values(run_id=run_id))

    def finish(self, tick_id: str, now: datetime, state: TickState = TickState.DONE) -> bool:
        """Close a running tick; False when it was not running any more (another leader marked it)."""
        with self.db.begin() as conn:
            done = conn.execute(
                update(TICKS)
                .where(TICKS.c.tick_id == tick_id, TICKS.c.state == TickState.RUNNING.value)
                .values(state=state.value, finished_at=now)
            )
            return bool(done.rowcount)

    def orphaned(self, node: str) -> list[ScheduledTick]:
        """Ticks still ``running`` that another node started (the caller leads: that node is not
        running its schedule any more)."""
        with self.db.begin() as conn:
            rows = conn.execute(
                select(TICKS)
                .where(TICKS.c.state == TickState.RUNNING.value, TICKS.c.node != node)
                .order_by(TICKS.c.scheduled_at)
            ).mappings()
            return [record_of(ScheduledTick, r) for r in rows]

    def run_status(self, run_id: str) -> str | None:
        """The stored status of a tick's run (None: no such run)."""
        with self.db.begin() as conn:
            value = conn.execute(select(RUNS.c.status).where(RUNS.c.run_id == run_id)).scalar()
        return str(value) if value is not None else None

    def get(self, tick_id: str) -> ScheduledTick | None:
        with self.db.begin() as conn:
            r = conn.execute(select(TICKS).where(TICKS.c.tick_id == tick_id)).mappings().first()
        return record_of(ScheduledTick, r) if r is not None else None

    def all(self) -> list[ScheduledTick]:
        with self.db.begin() as conn:
            rows = conn.execute(select(TICKS).order_by(TICKS.c.started_at)).mappings()
            return [record_of(ScheduledTick, r) for r in rows]
