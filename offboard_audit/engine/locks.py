"""The revocation lock: one process at a time plans and applies.

PostgreSQL: a session-level advisory lock on a connection held open for the whole
planning+applying; if the process dies, the server drops the connection and the lock with it.

SQLite (and anything else): a row in the ``locks`` table with a lease. The holder renews the
lease after each action. A lease that expired, or whose holder is a process on this host that
no longer exists, is taken over with a compare-and-set on the old holder.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from offboard_audit.storage.db import is_postgres
from offboard_audit.storage.lock_rows import (
    lock_key,
    read_lock,
    release_lock_row,
    renew_lock_row,
    try_lock_row,
)
from offboard_audit.storage.store import Store

REVOCATION_LOCK = "offboard-audit:revocation"
DEFAULT_LEASE = timedelta(minutes=5)
_POLL = 0.1


def holder_id(actor: str) -> str:
    """``actor@host:pid:token``: unique per acquisition, and says who to look for."""
    return f"{actor}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_dead(holder: str) -> bool:
    """True when ``holder`` names a process on this host that does not exist any more."""
    _, _, where = holder.rpartition("@")
    host, _, rest = where.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass
class HeldLock:
    """A lock this process holds; :meth:`renew` extends a lease (no-op for advisory locks)."""

    store: Store
    name: str
    holder: str
    lease: timedelta
    conn: Connection | None = None
    lost: bool = field(default=False)

    def renew(self) -> None:
        if self.conn is not None:
            return
        ok = renew_lock_row(self.store, self.name, self.holder, datetime.now(UTC) + self.lease)
        if not ok:
            # Someone took the lease over (we were presumed dead): stop before doing more.
            self.lost = True


class LockNotAcquired(Exception):
    """The lock stayed held by someone else for the whole timeout."""

    def __init__(self, name: str, holder: str | None) -> None:
        self.holder = holder
        who = f" by {holder}" if holder else ""
        super().__init__(f"the revocation lock {name!r} is held{who}")


def _try_advisory(conn: Connection, key: int) -> bool:
    return bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())


def _pg_holder(conn: Connection, key: int) -> str | None:
    """Who holds the advisory lock, for the waiting message only (never fails the wait)."""
    try:
        row = _pg_holder_row(conn, key)
    except Exception:
        conn.rollback()
        return None
    return f"PostgreSQL backend pid {row[0]} ({row[1]})" if row else None


def _pg_holder_row(conn: Connection, key: int) -> Any:
    return conn.execute(
        text(
            "SELECT a.pid, a.application_name, a.client_addr FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND ((l.classid::bigint << 32) | l.objid::bigint) = (:k)::bigint"
        ),
        {"k": key},
    ).first()


@contextmanager
def acquire(
    store: Store,
    actor: str,
    timeout: float = 30.0,
    name: str = REVOCATION_LOCK,
    lease: timedelta = DEFAULT_LEASE,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[HeldLock]:
    """Hold the named lock for the ``with`` block; raise :class:`LockNotAcquired` after ``timeout``.

    ``on_wait`` is called once, with the holder's description, when the lock is busy.
    """
    holder = holder_id(actor)
    deadline = time.monotonic() + max(timeout, 0.0)
    told = False

    def waiting(who: str | None) -> None:
        nonlocal told
        if not told and on_wait is not None:
            on_wait(f"waiting for the revocation lock (held by {who or 'another process'})")
        told = True

    if is_postgres(store):
        key = lock_key(name)
        conn = store.engine.connect()
        try:
            conn.execute(text("SELECT set_config('application_name', :n, false)"), {"n": holder[:63]})
            conn.commit()
            while not _try_advisory(conn, key):
                conn.commit()
                who = _pg_holder(conn, key)
                conn.commit()
                if time.monotonic() >= deadline:
                    raise LockNotAcquired(name, who)
                waiting(who)
                time.sleep(_POLL)  # polling a lock held by another process: no event to wait on
            conn.commit()
            try:
                yield HeldLock(store, name, holder, lease, conn)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        finally:
            conn.close()
        return

    while True:
        now = datetime.now(UTC)
        current = read_lock(store, name)
        if current is None:
            if try_lock_row(store, name, holder, now, now + lease):
                break
        elif (current.expires_at <= now or _holder_dead(current.holder)) and try_lock_row(
            store, name, holder, now, now + lease, steal_from=current.holder
        ):
            break
        if time.monotonic() >= deadline:
            raise LockNotAcquired(name, current.holder if current else None)
        waiting(current.holder if current else None)
        time.sleep(_POLL)  # polling a lock row held by another process
    try:
        yield HeldLock(store, name, holder, lease)
    finally:
        release_lock_row(store, name, holder)
