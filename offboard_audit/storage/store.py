"""The storage API: records in, records out. SQLModel rows never leave this package.

One :class:`Store` on one database, made of a store per concern:

- runs and their sources (``runs.py``),
- people with their HR state (``people.py``),
- snapshots of accounts and credentials, written as diffs (``snapshots.py``),
- findings and their status history (``findings.py``),
- exemptions (``exemptions.py``),
- actions taken, as the pipeline and reports read them (``actions.py``, which also holds the
  revocation engine's action rows and the hash-chained audit log).

HR webhook events and daemon jobs are kept by ``webhook_store.py`` in the same database, lock
rows by ``lock_rows.py``. Data of a source (or scope) that failed in a run is left as it was and
read back as stale.
"""

from __future__ import annotations

from sqlmodel import SQLModel

from offboard_audit.storage.actions import ActionStore
from offboard_audit.storage.db import make_engine
from offboard_audit.storage.exemptions import ExemptionStore
from offboard_audit.storage.findings import FindingStore
from offboard_audit.storage.people import PeopleStore
from offboard_audit.storage.runs import RunStore
from offboard_audit.storage.snapshots import SnapshotStore


class Store(RunStore, PeopleStore, SnapshotStore, FindingStore, ExemptionStore, ActionStore):
    """Everything the pipeline, CLI, daemon and webhook persist goes through here."""

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
