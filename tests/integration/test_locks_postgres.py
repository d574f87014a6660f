"""The one lock module on a real PostgreSQL: session advisory locks on connections of their own,
and every lock of the tool (revocation, daemon, audit chain, schema upgrade) on the one key scheme.

A thread that must block on a lock is observed waiting in ``pg_locks`` (the server's own view),
never assumed to be waiting after a sleep.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from offboard_audit.engine.locks import acquire
from offboard_audit.storage.actions import NewEvent, append_event, iter_events
from offboard_audit.storage.locks import (
    AUDIT_CHAIN,
    LEADER,
    REVOCATION,
    SCHEMA_UPGRADE,
    LockNotAcquired,
    Locks,
    lock_key,
    person_lock,
)
from offboard_audit.storage.migrate import upgrade_head
from offboard_audit.storage.store import Store

pytestmark = pytest.mark.postgres


@pytest.fixture
def store(postgres_url: str) -> Iterator[Store]:
    s = Store.open(postgres_url)
    yield s
    s.engine.dispose()


def advisory(store: Store, name: str, granted: bool) -> list[int]:
    """Backends holding (or waiting for) the advisory lock ``name``, by its key."""
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted = :g "
                    "AND ((classid::bigint << 32) | objid::bigint) = (:k)::bigint"
                ),
                {"g": granted, "k": lock_key(name)},
            ).scalars()
        )


def blocked_until_released(store: Store, name: str, work: Callable[[], None]) -> None:
    """Hold ``name`` through the lock module, run ``work`` on a thread, see it wait for that very
    key in pg_locks, release, and see it finish."""
    held = Locks(store, "test").try_acquire(name)
    assert held is not None
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 30
    while not advisory(store, name, granted=False):  # pg_locks is the only signal of a waiter
        assert worker.is_alive() and time.monotonic() < deadline, f"{name} was not waited for: {errors}"
        time.sleep(0.02)
    held.release()
    worker.join(timeout=30)
    assert not worker.is_alive() and errors == []


def test_advisory_lock_is_exclusive_and_freed_by_release(store: Store) -> None:
    a, b = Locks(store, "a"), Locks(store, "b")
    held = a.try_acquire(LEADER)
    assert held is not None and b.try_acquire(LEADER) is None and held.renew()
    assert len(advisory(store, LEADER, granted=True)) == 1
    held.release()
    assert advisory(store, LEADER, granted=True) == []
    again = b.try_acquire(LEADER)
    assert again is not None
    again.release()


def test_two_acquisitions_in_one_process_exclude_each_other(store: Store) -> None:
    locks = Locks(store, "daemon:n1")
    first = locks.try_acquire(person_lock("E2"))
    assert first is not None and locks.try_acquire(person_lock("E2")) is None
    first.release()


def test_lock_lives_on_its_own_named_connection_outside_the_stores_pool(store: Store) -> None:
    held = Locks(store, "daemon:web-2:4181:9c03e1").try_acquire(LEADER)
    assert held is not None
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    with pytest.raises(LockNotAcquired) as raised:
        Locks(store, "other").acquire(LEADER, 0.05)
    (pid,) = advisory(store, LEADER, granted=True)
    assert raised.value.holder == f"PostgreSQL backend pid {pid} ({held.holder})"
    held.release()


def test_lock_of_a_holder_whose_connection_died_is_free_and_the_holder_knows(store: Store) -> None:
    held = Locks(store, "daemon:dying").try_acquire(LEADER)
    assert held is not None
    (pid,) = advisory(store, LEADER, granted=True)
    with store.engine.begin() as conn:  # the server ends the session, as when its process dies
        assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    other = Locks(store, "daemon:next").try_acquire(LEADER)
    assert other is not None
    assert not held.renew() and held.lost
    held.release()  # never raises on a dead connection
    other.release()


def test_the_engines_revocation_lock_is_the_same_lock(store: Store) -> None:
    held = Locks(store, "daemon:n1").try_acquire(REVOCATION)
    assert held is not None
    told: list[str] = []
    with pytest.raises(LockNotAcquired), acquire(store, "cli", timeout=0.05, on_wait=told.append):
        pass
    assert len(told) == 1 and told[0].startswith(
        "waiting for the revocation lock (held by PostgreSQL backend pid"
    )
    held.release()
    with acquire(store, "cli", timeout=0):
        assert len(advisory(store, REVOCATION, granted=True)) == 1


def test_appending_to_the_audit_chain_waits_for_the_audit_chain_lock(store: Store) -> None:
    event = NewEvent("test", datetime(2026, 3, 1, tzinfo=UTC), "tester", {"n": 1})
    blocked_until_released(store, AUDIT_CHAIN, lambda: append_event(store, event))
    assert [e.kind for e in iter_events(store)] == ["test"]


def test_a_schema_upgrade_waits_for_the_schema_upgrade_lock(store: Store) -> None:
    blocked_until_released(store, SCHEMA_UPGRADE, lambda: upgrade_head(store.engine))
