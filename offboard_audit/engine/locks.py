"""The revocation lock: one process at a time plans and applies (or undoes) revocations.

A session lock of the one lock module (``storage/locks.py``, which says how locks work and how
their keys are made), held for a whole pass with a long lease that the engine renews after each
action. When a SQLite lease was taken over (its holder presumed dead), ``HeldLock.lost`` turns
true and the engine stops applying.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from offboard_audit.storage.db import Database
from offboard_audit.storage.locks import REVOCATION, HeldLock, LockNotAcquired, Locks

__all__ = ["DEFAULT_LEASE", "HeldLock", "LockNotAcquired", "acquire"]

DEFAULT_LEASE = timedelta(minutes=5)


@contextmanager
def acquire(
    store: Database,
    actor: str,
    timeout: float = 30.0,
    name: str = REVOCATION,
    lease: timedelta = DEFAULT_LEASE,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[HeldLock]:
    """Hold the revocation lock (or ``name``) in the name of ``actor`` for the ``with`` block.

    Raises :class:`LockNotAcquired` after ``timeout`` seconds; ``on_wait`` is told once,
    ``waiting for the revocation lock (held by ...)``, when the lock is busy.
    """
    with Locks(store, actor).acquire(name, timeout, lease, on_wait=on_wait) as held:
        yield held
