"""Named lease rows (the ``locks`` table), for databases without advisory locks (SQLite), and
the advisory lock key of a lock name (PostgreSQL)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from offboard_audit.storage.db import Database
from offboard_audit.storage.rows import record_of
from offboard_audit.storage.tables import LOCKS


def lock_key(name: str) -> int:
    """A signed 64-bit key for PostgreSQL advisory locks, derived from a lock name."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class LockHolder:
    name: str
    holder: str
    acquired_at: datetime
    expires_at: datetime


def read_lock(db: Database, name: str) -> LockHolder | None:
    with db.engine.connect() as conn:
        r = conn.execute(select(LOCKS).where(LOCKS.c.name == name)).mappings().first()
    return record_of(LockHolder, r) if r is not None else None


def try_lock_row(
    db: Database, name: str, holder: str, now: datetime, expires_at: datetime, steal_from: str | None = None
) -> bool:
    """Take the lock row if it is free, or replace ``steal_from`` (an expired or dead holder).

    The replace is a compare-and-set on the old holder, so two processes stealing the same
    stale lock cannot both win.
    """
    try:
        with db.engine.begin() as conn:
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


def renew_lock_row(db: Database, name: str, holder: str, expires_at: datetime) -> bool:
    with db.engine.begin() as conn:
        result = conn.execute(
            update(LOCKS).where(LOCKS.c.name == name, LOCKS.c.holder == holder).values(expires_at=expires_at)
        )
        return bool(result.rowcount)


def release_lock_row(db: Database, name: str, holder: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(delete(LOCKS).where(LOCKS.c.name == name, LOCKS.c.holder == holder))
