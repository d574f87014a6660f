"""The one lock module: its key scheme, and session locks as SQLite lease rows.

PostgreSQL advisory locks (and the transaction locks of the audit chain and the schema upgrade)
are tested in ``tests/integration/test_locks_postgres.py``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from offboard_audit.engine.locks import acquire
from offboard_audit.storage.locks import (
    AUDIT_CHAIN,
    FULL_RECONCILE,
    LEADER,
    REVOCATION,
    SCHEMA_UPGRADE,
    LockNotAcquired,
    Locks,
    lock_key,
    person_lock,
    qualified,
)
from offboard_audit.storage.store import Store
from offboard_audit.storage.tables import LOCKS

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'locks.db'}")
    yield s
    s.engine.dispose()


def rows(store: Store) -> dict[str, str]:
    with store.engine.connect() as conn:
        return {r.name: r.holder for r in conn.execute(select(LOCKS.c.name, LOCKS.c.holder))}


# --- the key scheme ---------------------------------------------------------------------------


def test_every_lock_has_one_key_made_one_way_and_pinned() -> None:
    # Pinned on purpose: a change here is a change of the key scheme, and processes computing
    # keys differently do not exclude each other on one database. revocation, audit-chain and
    # the daemon's locks keep the keys they had before the locks were unified; schema-upgrade's
    # changed (it was the fixed number 0x6F6666626F617264).
    assert {
        name: lock_key(name)
        for name in (REVOCATION, LEADER, FULL_RECONCILE, person_lock("E2"), AUDIT_CHAIN, SCHEMA_UPGRADE)
    } == {
        "revocation": -764385446246472365,
        "daemon:leader": -7118793816525516154,
        "reconcile:full": -2044419283431523775,
        "person:E2": -2392484908191844690,
        "audit-chain": -8451356731287351496,
        "schema-upgrade": -3778509096315322365,
    }


def test_keys_are_signed_64_bit_and_names_are_namespaced() -> None:
    keys = {lock_key(person_lock(f"E{i}")) for i in range(1000)}
    assert len(keys) == 1000 and all(-(2**63) <= k < 2**63 for k in keys)
    assert qualified(person_lock("E2")) == "offboard-audit:person:E2"


# --- SQLite: lease rows -----------------------------------------------------------------------


def test_lease_is_exclusive_until_released(store: Store) -> None:
    a, b = Locks(store, "a"), Locks(store, "b")
    held = a.try_acquire(FULL_RECONCILE, LEASE)
    assert held is not None and b.try_acquire(FULL_RECONCILE, LEASE) is None
    assert rows(store) == {"offboard-audit:reconcile:full": held.holder}
    assert held.holder.startswith(f"a@{socket.gethostname()}:")
    held.release()
    assert rows(store) == {}
    again = b.try_acquire(FULL_RECONCILE, LEASE)
    assert again is not None
    again.release()


def test_two_acquisitions_in_one_process_exclude_each_other(store: Store) -> None:
    locks = Locks(store, "daemon:n1")
    first = locks.try_acquire(person_lock("E2"), LEASE)
    assert first is not None
    assert locks.try_acquire(person_lock("E2"), LEASE) is None  # another thread of the same daemon
    assert locks.try_acquire(person_lock("E3"), LEASE) is not None


def test_expired_lease_is_taken_over_and_the_old_holder_finds_it_lost(store: Store) -> None:
    clock = Clock(NOW)
    a, b = Locks(store, "a", clock), Locks(store, "b", clock)
    held = a.try_acquire(LEADER, LEASE)
    assert held is not None and held.renew() and not held.lost
    clock.now = NOW + timedelta(seconds=29)
    assert b.try_acquire(LEADER, LEASE) is None  # renewed at NOW: still held

    clock.now = NOW + timedelta(seconds=31)  # a stopped renewing: the lease expired
    taken = b.try_acquire(LEADER, LEASE)
    assert taken is not None
    assert not held.renew() and held.lost
    held.release()  # releasing a lost lease leaves the new holder's row alone
    assert rows(store) == {"offboard-audit:daemon:leader": taken.holder}
    taken.release()
    assert a.try_acquire(LEADER, LEASE) is not None


def test_lease_of_a_process_that_no_longer_exists_is_taken_over_before_it_expires(store: Store) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = f"daemon:old@{socket.gethostname()}:{gone.stdout.strip()}:deadbeef"
    alive = f"daemon:other@{socket.gethostname()}:1:cafebabe"  # pid 1 always exists
    with store.engine.begin() as conn:
        conn.execute(
            insert(LOCKS),
            [
                {
                    "name": qualified(person_lock("E2")),
                    "holder": dead,
                    "acquired_at": NOW,
                    "expires_at": NOW + LEASE,
                },
                {
                    "name": qualified(person_lock("E3")),
                    "holder": alive,
                    "acquired_at": NOW,
                    "expires_at": NOW + LEASE,
                },
            ],
        )
    locks = Locks(store, "daemon:new", Clock(NOW))
    assert locks.try_acquire(person_lock("E2"), LEASE) is not None
    assert locks.try_acquire(person_lock("E3"), LEASE) is None


def test_waiting_reports_the_holder_once_and_gives_up_after_the_timeout(store: Store) -> None:
    held = Locks(store, "cli:revoke").try_acquire(REVOCATION, LEASE)
    assert held is not None
    told: list[str] = []
    with pytest.raises(LockNotAcquired) as raised:
        Locks(store, "daemon:n1").acquire(REVOCATION, 0.1, LEASE, on_wait=told.append)
    assert told == [f"waiting for the revocation lock (held by {held.holder})"]
    assert raised.value.holder == held.holder
    assert str(raised.value) == f"the revocation lock is held by {held.holder}"


def test_the_engines_revocation_lock_is_the_same_lock(store: Store) -> None:
    held = Locks(store, "daemon:n1").try_acquire(REVOCATION, LEASE)
    assert held is not None
    with pytest.raises(LockNotAcquired), acquire(store, "cli", timeout=0):
        pass
    held.release()
    with acquire(store, "cli", timeout=0) as mine:
        assert rows(store) == {"offboard-audit:revocation": mine.holder}
    assert rows(store) == {}


def test_a_lease_renewed_on_its_own_thread_moves_on(store: Store) -> None:
    clock = Clock(NOW)
    held = Locks(store, "a", clock).try_acquire(FULL_RECONCILE, LEASE, renew_every=0.01)
    assert held is not None
    clock.now = NOW + timedelta(seconds=20)

    def expires() -> datetime:
        with store.engine.connect() as conn:
            value = conn.execute(select(LOCKS.c.expires_at)).scalar_one()
        assert isinstance(value, datetime)
        return value

    deadline = time.monotonic() + 10
    while expires() != NOW + timedelta(seconds=50):  # the renewing thread has no event to wait on
        assert time.monotonic() < deadline, "the lease was not renewed"
        time.sleep(0.01)
    held.release()
    assert rows(store) == {}
