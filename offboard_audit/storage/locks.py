"""Named locks shared by every process on one database: the one lock module, one key scheme.

Every lock the tool takes, and who takes it:

==================  ===========  ==============================================================
name                kind         held by, for
==================  ===========  ==============================================================
``revocation``      session      the revocation engine: one pass plans and applies at a time
``daemon:leader``   session      the daemon replica that runs the schedule
``reconcile:full``  session      a full reconcile or HR refresh of the daemon
``person:<id>``     session      a daemon's targeted reconcile of one person
``audit-chain``     transaction  an append to the audit log's hash chain
``schema-upgrade``  transaction  a schema upgrade (PostgreSQL only; SQLite serialises DDL)
==================  ===========  ==============================================================

The key scheme (:func:`lock_key`): the lock ``<name>`` is ``offboard-audit:<name>``
(:func:`qualified`). On PostgreSQL its advisory-lock key is the first 8 bytes of the SHA-256 of
that text, read as a signed big-endian 64-bit integer; on SQLite, which has no advisory locks, a
session lock is the ``locks`` row of that name. Every process of one version computes the same
keys; processes of versions with different schemes must not run against one database together.

Session locks (:class:`Locks`) are held until released:

- PostgreSQL: a session advisory lock on a connection of its own (outside the store's pool, so a
  lock held for hours never starves it); if the process dies, the server drops the connection and
  the lock with it. ``application_name`` of that connection names the holder.
- SQLite: a lease row. The holder renews the lease (itself, or every ``renew_every`` seconds on a
  thread). A lease that expired, or whose holder is a process on this host that no longer
  exists, is taken over with a compare-and-set on the old holder, so two processes taking over
  the same lease cannot both win; the old holder's next renewal fails and marks it ``lost``.

Every acquisition has its own holder id (``<owner>@<host>:<pid>:<token>``), so two threads of one
process exclude each other too.

Transaction locks (:func:`transaction_lock`) are held until the transaction ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Self

from sqlalchemy import Engine, create_engine, delete, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from offboard_audit.storage.db import Database, is_postgres
from offboard_audit.storage.rows import record_of
from offboard_audit.storage.tables import LOCKS

log = logging.getLogger(__name__)

REVOCATION = "revocation"
LEADER = "daemon:leader"
FULL_RECONCILE = "reconcile:full"
AUDIT_CHAIN = "audit-chain"
SCHEMA_UPGRADE = "schema-upgrade"

NAMESPACE = "offboard-audit:"
DEFAULT_LEASE = timedelta(seconds=30)

# Waiting for a lock another process holds is polling (nothing signals its release across
# processes): from 20 ms, doubling, to at most half a second.
_FIRST_POLL = 0.02
_MAX_POLL = 0.5

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def person_lock(employee_id: str) -> str:
    """The name of the lock a targeted reconcile of ``employee_id`` holds."""
    return f"person:{employee_id}"


def qualified(name: str) -> str:
    """The lock's full name: its ``locks`` row on SQLite, and what its key hashes."""
    return NAMESPACE + name


def lock_key(name: str) -> int:
    """The PostgreSQL advisory-lock key of the lock ``name`` (signed 64-bit)."""
    digest = hashlib.sha256(qualified(name).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def transaction_lock(conn: Connection, name: str) -> None:
    """Hold the lock ``name`` until ``conn``'s transaction ends; make it the first statement.

    PostgreSQL: a transaction-scoped advisory lock, waiting for the holder. Elsewhere (SQLite): a
    write to the ``locks`` table as the first statement takes SQLite's single write lock (waiting
    on ``busy_timeout``) before anything is read, so nothing read after it can be outdated by
    another writer. That serialises every writer, not only this lock's, and needs the table.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(name)})
    else:
        conn.execute(update(LOCKS).where(LOCKS.c.name == qualified(name)).values(holder=LOCKS.c.holder))


def holder_id(owner: str) -> str:
    """``owner@host:pid:token``: unique per acquisition, and says where to look for the holder."""
    return f"{owner}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_dead(holder: str) -> bool:
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


class LockNotAcquired(Exception):
    """The lock stayed held by someone else for the whole timeout."""

    def __init__(self, name: str, holder: str | None) -> None:
        self.name = name
        self.holder = holder
        who = f" by {holder}" if holder else ""
        super().__init__(f"the {name} lock is held{who}")


class HeldLock(ABC):
    """A session lock this process holds until :meth:`release`."""

    def __init__(self, name: str, holder: str) -> None:
        self.name = name
        self.holder = holder
        # Set when renew() finds the lock gone: stop doing what it protects.
        self.lost = False

    @abstractmethod
    def renew(self) -> bool:
        """Extend a lease, or check an advisory lock's connection; False (and ``lost``) when it
        is not held any more."""

    @abstractmethod
    def release(self) -> None:
        """Give the lock up (never raises)."""

    # ``with locks.acquire(...) as held:`` releases the lock when the block ends, however it ends.
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


class _AdvisoryLock(HeldLock):
    """A PostgreSQL session advisory lock on its own connection."""

    def __init__(self, name: str, holder: str, conn: Connection) -> None:
        super().__init__(name, holder)
        self._conn = conn
        # The daemon renews its leadership on one thread and releases it on another.
        self._mutex = threading.Lock()

    def renew(self) -> bool:
        with self._mutex:
            if not self.lost:
                try:
                    self._conn.execute(text("SELECT 1"))
                    self._conn.commit()
                except Exception:
                    # The connection is gone, and with it the lock.
                    self.lost = True
            return not self.lost

    def release(self) -> None:
        with self._mutex:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key(self.name)})
                self._conn.commit()
            except Exception:
                log.debug("advisory unlock of %s failed (connection gone; the server released it)", self.name)
            finally:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self.lost = True


class _LeaseLock(HeldLock):
    """A lease row in ``locks``, renewed by its holder or by a thread of its own."""

    def __init__(
        self, db: Database, name: str, holder: str, lease: timedelta, clock: Clock, renew_every: float | None
    ) -> None:
        super().__init__(name, holder)
        self._db = db
        self._lease = lease
        self._clock = clock
        self._released = threading.Event()
        if renew_every is not None:
            threading.Thread(
                target=self._renew_loop, args=(renew_every,), name=f"lease-{name}", daemon=True
            ).start()

    def _renew_loop(self, every: float) -> None:
        while not self._released.wait(every):
            if not self.renew():
                log.warning("lost the %s lock: its lease was taken over", self.name)
                return

    def renew(self) -> bool:
        if not self.lost and not _renew_row(self._db, self.name, self.holder, self._clock() + self._lease):
            self.lost = True
        return not self.lost

    def release(self) -> None:
        self._released.set()
        try:
            _delete_row(self._db, self.name, self.holder)
        except Exception:
            log.exception("could not release the %s lock (its lease runs out by itself)", self.name)
        self.lost = True


class Locks:
    """Session locks on one database, taken in the name of ``owner`` (an actor or daemon node).

    ``clock`` dates the SQLite leases (PostgreSQL locks need no time).
    """

    def __init__(self, db: Database, owner: str, clock: Clock = utc_now) -> None:
        self.db = db
        self.owner = owner
        self.clock = clock
        self.postgres = is_postgres(db)

    def try_acquire(
        self, name: str, lease: timedelta = DEFAULT_LEASE, renew_every: float | None = None
    ) -> HeldLock | None:
        """The lock if it is free now (or its SQLite lease can be taken over), else None.

        ``lease`` and ``renew_every`` apply to SQLite leases only.
        """
        holder = holder_id(self.owner)
        if not self.postgres:
            return self._try_lease(name, holder, lease, renew_every)[0]
        conn = self._connect(holder)
        try:
            if _try_advisory(conn, name):
                return _AdvisoryLock(name, holder, conn)
        except BaseException:
            conn.close()
            raise
        conn.close()
        return None

    def acquire(
        self,
        name: str,
        timeout: float,
        lease: timedelta = DEFAULT_LEASE,
        *,
        renew_every: float | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> HeldLock:
        """Wait up to ``timeout`` seconds for the lock; :class:`LockNotAcquired` when it stayed held.

        ``on_wait`` is told once, ``waiting for the <name> lock (held by ...)``, when it is busy.
        """
        holder = holder_id(self.owner)
        deadline = time.monotonic() + max(timeout, 0.0)
        delay = _FIRST_POLL
        told = False
        conn = self._connect(holder) if self.postgres else None
        try:
            while True:
                if conn is not None:
                    held: HeldLock | None = (
                        _AdvisoryLock(name, holder, conn) if _try_advisory(conn, name) else None
                    )
                    who = None if held is not None else _pg_holder(conn, name)
                else:
                    held, who = self._try_lease(name, holder, lease, renew_every)
                if held is not None:
                    conn = None  # the held lock owns the connection now
                    return held
                if time.monotonic() >= deadline:
                    raise LockNotAcquired(name, who)
                if on_wait is not None and not told:
                    on_wait(f"waiting for the {name} lock (held by {who or 'another process'})")
                    told = True
                time.sleep(delay)  # polling a lock held by another process (see _FIRST_POLL)
                delay = min(delay * 2, _MAX_POLL)
        finally:
            if conn is not None:
                conn.close()

    def _connect(self, holder: str) -> Connection:
        conn = _lock_engine(self.db.engine).connect()
        try:
            conn.execute(text("SELECT set_config('application_name', :n, false)"), {"n": holder[:63]})
            conn.commit()
        except BaseException:
            conn.close()
            raise
        return conn

    def _try_lease(
        self, name: str, holder: str, lease: timedelta, renew_every: float | None
    ) -> tuple[HeldLock | None, str | None]:
        """One attempt at the lease row: (the lock, None) or (None, who holds it)."""
        now = self.clock()
        current = _read_row(self.db, name)
        if current is None:
            won = _insert_row(self.db, name, holder, now, now + lease)
        elif current.expires_at <= now or holder_dead(current.holder):
            won = _steal_row(self.db, name, holder, now, now + lease, current.holder)
        else:
            won = False
        if won:
            return _LeaseLock(self.db, name, holder, lease, self.clock, renew_every), None
        return None, current.holder if current is not None else None


# --- PostgreSQL -----------------------------------------------------------------------------

# One engine without a pool per database: a lock's connection lives exactly as long as the lock.
_LOCK_ENGINES: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
_LOCK_ENGINES_MUTEX = threading.Lock()


def _lock_engine(engine: Engine) -> Engine:
    with _LOCK_ENGINES_MUTEX:
        dedicated = _LOCK_ENGINES.get(engine)
        if dedicated is None:
            dedicated = _LOCK_ENGINES[engine] = create_engine(engine.url, poolclass=NullPool)
        return dedicated


def _try_advisory(conn: Connection, name: str) -> bool:
    got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key(name)}).scalar())
    conn.commit()  # a session lock outlives the transaction; do not leave one open
    return got


def _pg_holder(conn: Connection, name: str) -> str | None:
    """Who holds the advisory lock, for messages only (never fails the wait)."""
    try:
        row = conn.execute(
            text(
                "SELECT a.pid, a.application_name FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND ((l.classid::bigint << 32) | l.objid::bigint) = (:k)::bigint"
            ),
            {"k": lock_key(name)},
        ).first()
        conn.commit()
    except Exception:
        conn.rollback()
        return None
    return f"PostgreSQL backend pid {row[0]} ({row[1]})" if row else None


# --- SQLite lease rows ----------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseRow:
    """A lease row as read: who holds the lock ``name`` and until when."""

    name: str
    holder: str
    acquired_at: datetime
    expires_at: datetime


def _read_row(db: Database, name: str) -> LeaseRow | None:
    with db.engine.connect() as conn:
        r = conn.execute(select(LOCKS).where(LOCKS.c.name == qualified(name))).mappings().first()
    return record_of(LeaseRow, r) if r is not None else None


def _insert_row(db: Database, name: str, holder: str, now: datetime, expires_at: datetime) -> bool:
    try:
        with db.engine.begin() as conn:
            conn.execute(
                insert(LOCKS).values(
                    name=qualified(name), holder=holder, acquired_at=now, expires_at=expires_at
                )
            )
    except IntegrityError:
        return False
    return True


def _steal_row(
    db: Database, name: str, holder: str, now: datetime, expires_at: datetime, steal_from: str
) -> bool:
    """Replace ``steal_from`` (an expired or dead holder): a compare-and-set on that holder."""
    with db.engine.begin() as conn:
        result = conn.execute(
            update(LOCKS)
            .where(LOCKS.c.name == qualified(name), LOCKS.c.holder == steal_from)
            .values(holder=holder, acquired_at=now, expires_at=expires_at)
        )
        return bool(result.rowcount)


def _renew_row(db: Database, name: str, holder: str, expires_at: datetime) -> bool:
    with db.engine.begin() as conn:
        result = conn.execute(
            update(LOCKS)
            .where(LOCKS.c.name == qualified(name), LOCKS.c.holder == holder)
            .values(expires_at=expires_at)
        )
        return bool(result.rowcount)


def _delete_row(db: Database, name: str, holder: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(delete(LOCKS).where(LOCKS.c.name == qualified(name), LOCKS.c.holder == holder))
