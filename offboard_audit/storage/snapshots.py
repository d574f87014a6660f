"""Snapshots: the accounts and credentials of each source as last read.

Written as diffs against what is stored (a content hash per row), so an unchanged re-run writes
almost nothing. Rows of scopes that failed in a run are left as they were.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import RowMapping, Table, bindparam, delete, insert, select
from sqlalchemy.engine import Connection

from offboard_audit.core.records import Account, Credential
from offboard_audit.storage.db import Database, chunks
from offboard_audit.storage.rows import record_of, row_of
from offboard_audit.storage.tables import ACCOUNTS, CREDENTIALS

T = TypeVar("T", Account, Credential)
Keyed = dict[tuple[str, ...], T]  # by the values of the table's key columns (after ``source``)


@dataclass(frozen=True)
class Snapshot:
    """Accounts and credentials of one source as stored."""

    accounts: tuple[Account, ...]
    credentials: tuple[Credential, ...]


class SnapshotStore(Database):
    def load_snapshot(self, source: str, scopes: Iterable[str] | None = None) -> Snapshot:
        """Stored accounts and credentials of a source (optionally only some scopes)."""
        scope_list = list(scopes) if scopes is not None else None
        qa = select(ACCOUNTS).where(ACCOUNTS.c.source == source)
        qc = select(CREDENTIALS).where(CREDENTIALS.c.source == source)
        if scope_list is not None:
            qa = qa.where(ACCOUNTS.c.scope.in_(scope_list))
            qc = qc.where(CREDENTIALS.c.scope.in_(scope_list))
        with self.begin() as conn:
            accounts = tuple(_account(r) for r in conn.execute(qa).mappings())
            creds = tuple(_credential(r) for r in conn.execute(qc).mappings())
        return Snapshot(accounts, creds)

    def stored_scopes(self, source: str) -> set[str]:
        with self.begin() as conn:
            q = select(ACCOUNTS.c.scope).where(ACCOUNTS.c.source == source).distinct()
            return set(conn.execute(q).scalars())

    def save_snapshot(
        self,
        source: str,
        accounts: Sequence[Account],
        credentials: Sequence[Credential],
        run_id: str,
        keep_scopes: Iterable[str] = (),
    ) -> int:
        """Write one source's fresh accounts and credentials as a diff against what is stored.

        Rows in ``keep_scopes`` (scopes that failed this run) are left untouched. Returns the
        number of rows written or deleted.
        """
        keep = set(keep_scopes)
        fresh_accounts: Keyed[Account] = {(a.account_id,): a for a in accounts if a.scope not in keep}
        fresh_creds: Keyed[Credential] = {
            (c.account_id, c.credential_id): c for c in credentials if c.scope not in keep
        }
        with self.begin() as conn:
            written = _diff(
                conn, ACCOUNTS, ("account_id",), source, fresh_accounts, _account_row, run_id, keep
            )
            written += _diff(
                conn,
                CREDENTIALS,
                ("account_id", "credential_id"),
                source,
                fresh_creds,
                _credential_row,
                run_id,
                keep,
            )
        return written


def _hash(record: object) -> str:
    return hashlib.sha1(repr(record).encode("utf-8"), usedforsecurity=False).hexdigest()


def _diff(
    conn: Connection,
    table: Table,
    key_cols: tuple[str, ...],
    source: str,
    new: Mapping[tuple[str, ...], T],
    to_row: Callable[[T, str, str], dict[str, object]],
    run_id: str,
    keep: set[str],
) -> int:
    """Make the source's rows of ``table`` (outside ``keep``) equal ``new`` (by key columns)."""
    cols = [table.c[k] for k in key_cols]
    q = select(*cols, table.c.row_hash, table.c.scope).where(table.c.source == source)
    old: dict[tuple[str, ...], str] = {}
    for row in conn.execute(q):
        *stored_key, row_hash, scope = row
        if scope not in keep:
            old[tuple(stored_key)] = row_hash
    inserts: list[dict[str, object]] = []
    gone: list[tuple[str, ...]] = []
    for key, record in new.items():
        h = _hash(record)
        prev = old.get(key)
        if prev == h:
            continue
        if prev is not None:
            gone.append(key)
        inserts.append(to_row(record, h, run_id))
    gone.extend(k for k in old if k not in new)
    if gone:
        # One compiled statement run once per key (executemany): a statement per batch with
        # an OR of 500 key tuples cost more to build and compile than the deletes themselves.
        keyed = [c == bindparam(f"key_{i}") for i, c in enumerate(cols)]
        conn.execute(
            delete(table).where(table.c.source == source, *keyed),
            [{f"key_{i}": v for i, v in enumerate(key)} for key in gone],
        )
    for ins_batch in chunks(inserts):
        conn.execute(insert(table), list(ins_batch))
    return len(inserts) + len(gone)


def _secs(delta: timedelta | None) -> float | None:
    return delta.total_seconds() if delta is not None else None


def _delta(secs: float | None) -> timedelta | None:
    return timedelta(seconds=secs) if secs is not None else None


def _account_row(a: Account, h: str, run_id: str) -> dict[str, object]:
    return row_of(
        a,
        ACCOUNTS,
        emails_json=json.dumps(list(a.emails)),
        attributes_json=json.dumps([list(x) for x in a.attributes]),
        last_login_precision_s=_secs(a.last_login_precision),
        row_hash=h,
        updated_run=run_id,
    )


def _account(r: RowMapping) -> Account:
    return record_of(
        Account,
        r,
        emails=tuple(json.loads(r["emails_json"])),
        attributes=tuple((k, v) for k, v in json.loads(r["attributes_json"])),
        last_login_precision=_delta(r["last_login_precision_s"]),
    )


def _credential_row(c: Credential, h: str, run_id: str) -> dict[str, object]:
    return row_of(
        c,
        CREDENTIALS,
        last_used_precision_s=_secs(c.last_used_precision),
        row_hash=h,
        updated_run=run_id,
    )


def _credential(r: RowMapping) -> Credential:
    return record_of(Credential, r, last_used_precision=_delta(r["last_used_precision_s"]))
