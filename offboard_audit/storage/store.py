"""The storage API: records in, records out. SQLModel rows never leave this package.

One :class:`Store` on one database, made of a store per concern:

- runs and their sources (``runs.py``),
- people with their HR state (``people.py``),
- snapshots of accounts and credentials, written as diffs (``snapshots.py``),
- findings and their status history (``findings.py``),
- exemptions (``exemptions.py``),
- the exposure ledger: events, stream checkpoints, the secrets inventory (``exposure.py``),
- actions taken, as the pipeline and reports read them (``actions.py``, which also holds the
  revocation engine's action rows and the hash-chained audit log).

HR webhook events and daemon jobs are kept by ``webhook_store.py`` in the same database, named
locks (advisory locks and lease rows, one key scheme) by ``locks.py``. Data of a source (or scope) that failed in a run is left as it was and
read back as stale.

:meth:`Store.atomic` makes everything one thread writes through the store commit together: a run
stores its people, snapshots, findings and its own finished record (status, circuit breaker) in
one transaction, so a reader never sees a run's findings without the verdict that goes with them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from offboard_audit.storage.actions import ActionStore
from offboard_audit.storage.db import make_engine
from offboard_audit.storage.exemptions import ExemptionStore
from offboard_audit.storage.exposure import ExposureStore
from offboard_audit.storage.findings import FindingStore
from offboard_audit.storage.people import PeopleStore
from offboard_audit.storage.runs import RunStore
from offboard_audit.storage.snapshots import SnapshotStore


class Store(RunStore, PeopleStore, SnapshotStore, FindingStore, ExemptionStore, ActionStore, ExposureStore):
    """Everything the pipeline, CLI, daemon and webhook persist goes through here."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        # The connection of this thread's atomic() block, if one is open.
        self._atomic = threading.local()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction of its own, or the enclosing :meth:`atomic` one of this thread."""
        conn: Connection | None = getattr(self._atomic, "conn", None)
        if conn is not None:
            yield conn
            return
        with super().begin() as conn:
            yield conn

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Everything this thread reads and writes through the store inside the block is one
        transaction: committed together when the block ends, rolled back if it raises (or if the
        process dies first). Other threads keep their own transactions."""
        if getattr(self._atomic, "conn", None) is not None:
            raise RuntimeError("Store.atomic() blocks do not nest")
        with self.engine.begin() as conn:
            self._atomic.conn = conn
            try:
                yield
            finally:
                self._atomic.conn = None

    @classmethod
    def open(cls, url: str, upgrade: bool = True) -> Store:
        """Open the database; with ``upgrade`` bring the schema to the newest migration."""
        store = cls(make_engine(url))
        if upgrade:
            from offboard_audit.storage.migrate import upgrade_head

            upgrade_head(store.engine)
        return store

    def create_all(self) -> None:
        """Create tables straight from the models (tests of pure storage logic only)."""
        SQLModel.metadata.create_all(self.engine)
