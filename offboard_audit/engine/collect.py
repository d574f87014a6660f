"""Reading the account sources of one run: collect, settle, detail pass, source status.

One :class:`AccountRead` per source and run. A source reads everything (``collect``) or, in a
run about one person, only what may be theirs (``TargetedSource.collect_for``, when the source
has it). Whatever failed (the whole source, a scope of it, or the detail pass of a scope) is
replaced by the stored data of that scope, marked stale: nothing in it is resolved or planned,
and bulk data without its detail (placeholder ids, missing keys) is never taken as clean.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from offboard_audit.config import SourceConfig
from offboard_audit.core.errors import ConfigError, SourceError
from offboard_audit.core.protocols import AccountSource, TargetedSource
from offboard_audit.core.records import (
    Account,
    Credential,
    Link,
    Person,
    ScopeFailure,
    SourceData,
    SourceRun,
    SourceStatus,
)
from offboard_audit.storage.store import Store

log = logging.getLogger(__name__)

Reporter = Callable[[str], None]


def describe(exc: BaseException) -> str:
    """An error for the run's record: a SourceError as it is, anything else with its type."""
    if isinstance(exc, SourceError):
        return str(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ReadMode(StrEnum):
    FULL = "full"  # collect(): everything, then a detail pass for the accounts asked about
    TARGETED = "targeted"  # collect_for(person): everything that may be theirs, in full


@dataclass
class AccountRead:
    """One account source in one run, from its read to what the run uses of it."""

    source: SourceConfig
    instance: AccountSource
    mode: ReadMode = ReadMode.FULL
    data: SourceData | None = None
    error: str | None = None
    accounts: list[Account] = field(default_factory=list)
    credentials: list[Credential] = field(default_factory=list)
    stale_scopes: set[str] = field(default_factory=set)
    # Scopes whose detail pass failed: their bulk data was dropped for the stored (stale) data.
    detail_failures: list[ScopeFailure] = field(default_factory=list)
    # Failed scopes (or the whole source, "*") for which nothing was stored before.
    no_earlier_data: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def stale(self) -> set[tuple[str, str]]:
        """(source, scope) pairs whose data is stale; (source, "*") when the source failed."""
        out = {(self.name, scope) for scope in self.stale_scopes}
        if self.error is not None:
            out.add((self.name, "*"))
        return out

    def fresh_accounts(self) -> list[Account]:
        return [a for a in self.accounts if a.scope not in self.stale_scopes]

    def fresh_credentials(self) -> list[Credential]:
        return [c for c in self.credentials if c.scope not in self.stale_scopes]


def collect(read: AccountRead, person: Person | None, report: Reporter) -> AccountRead:
    """Read the source (everything, or what may be ``person``'s); a failure is recorded."""
    report(f"collecting {read.name} ({read.source.system})")
    try:
        if person is not None and isinstance(read.instance, TargetedSource):
            read.mode = ReadMode.TARGETED
            read.data = read.instance.collect_for(person)
        else:
            read.data = read.instance.collect()
    except ConfigError:
        raise
    except Exception as exc:  # any failure of a source is recorded, never fatal, never "empty"
        read.error = describe(exc)
        log.warning("source %s failed: %s", read.name, read.error)
    return read


def settle(read: AccountRead, store: Store) -> None:
    """Take the fresh data of the scopes that were read and the stored data, marked stale, of
    those that failed (all of them when the whole source failed)."""
    if read.data is None:
        snap = store.load_snapshot(read.name)
        read.accounts = list(snap.accounts)
        read.credentials = list(snap.credentials)
        read.stale_scopes = {a.scope for a in snap.accounts}
        if not snap.accounts:
            read.no_earlier_data.add("*")
        return
    failed = {f.scope for f in read.data.failed_scopes}
    read.accounts = [a for a in read.data.accounts if a.scope not in failed]
    read.credentials = [c for c in read.data.credentials if c.scope not in failed]
    if failed:
        _use_stored(read, failed, store)


def read_scopes(read: AccountRead, store: Store) -> set[tuple[str, str]]:
    """(source, scope) pairs this full read covered successfully: every scope the source reported
    or has stored, less the stale ones. Call before the snapshot is saved."""
    if read.data is None or read.mode is not ReadMode.FULL:
        return set()
    seen = set(read.data.scopes) | {a.scope for a in read.data.accounts} | store.stored_scopes(read.name)
    return {(read.name, scope) for scope in (seen or {""}) - read.stale_scopes}


def _use_stored(read: AccountRead, scopes: set[str], store: Store) -> None:
    snap = store.load_snapshot(read.name, scopes)
    read.accounts.extend(snap.accounts)
    read.credentials.extend(snap.credentials)
    read.stale_scopes |= scopes
    read.no_earlier_data |= scopes - {a.scope for a in snap.accounts}


def detail_pass(
    reads: Sequence[AccountRead], links: Sequence[Link], now: datetime, store: Store, report: Reporter
) -> None:
    """Ask each fully read source for detail on the accounts of the ``links`` that need it
    (departed or ambiguous owners) only.

    A detail read that fails (the call raises, or the source reports a failed scope) fails that
    scope exactly like a failed bulk read: its fresh data is dropped for the stored, stale data.
    """
    wanted: dict[str, list[Account]] = defaultdict(list)
    for link in links:
        person = link.person
        if link.ambiguous or (person is not None and person.is_departed(now)):
            wanted[link.account.source].append(link.account)
    for read in reads:
        if read.data is None or read.mode is not ReadMode.FULL:
            continue
        accounts = [a for a in wanted.get(read.name, []) if a.scope not in read.stale_scopes]
        if not accounts:
            continue
        report(f"detail pass on {len(accounts)} accounts in {read.name}")
        try:
            detail = read.instance.detail(accounts)
        except Exception as exc:
            error = f"detail pass failed: {describe(exc)}"
            log.warning("source %s: %s", read.name, error)
            fail_scopes(read, [ScopeFailure(s, error) for s in sorted({a.scope for a in accounts})], store)
            continue
        _merge_detail(read, detail, store)


def _merge_detail(read: AccountRead, detail: SourceData, store: Store) -> None:
    failed = {f.scope for f in detail.failed_scopes}
    refined = {a.account_id: a for a in detail.accounts if a.scope not in failed}
    replaced = {c.account_id for c in detail.credentials if c.scope not in failed} | set(refined)
    if refined:
        read.accounts = [refined.get(a.account_id, a) for a in read.accounts]
    if replaced:
        read.credentials = [c for c in read.credentials if c.account_id not in replaced]
        read.credentials.extend(c for c in detail.credentials if c.scope not in failed)
    if detail.failed_scopes:
        failures = [ScopeFailure(f.scope, f"detail pass failed: {f.error}") for f in detail.failed_scopes]
        fail_scopes(read, failures, store)


def fail_scopes(read: AccountRead, failures: Sequence[ScopeFailure], store: Store) -> None:
    """Replace the fresh data of ``failures``' scopes with the stored data, marked stale."""
    scopes = {f.scope for f in failures} - read.stale_scopes
    if not scopes:
        return
    read.accounts = [a for a in read.accounts if a.scope not in scopes]
    read.credentials = [c for c in read.credentials if c.scope not in scopes]
    _use_stored(read, scopes, store)
    read.detail_failures.extend(f for f in failures if f.scope in scopes)


def source_run(read: AccountRead) -> SourceRun:
    """How the source fared: failed (whole or some scopes, stale data used), degraded
    (warnings) or ok."""
    name, system = read.name, read.source.system
    counts = (("accounts", len(read.accounts)), ("credentials", len(read.credentials)))
    if read.error is not None:
        error = read.error
        if "*" in read.no_earlier_data:
            error += " (failed, no earlier data: this source contributes no findings)"
        return SourceRun(name, system, SourceStatus.FAILED, error, counts, stale=True)
    assert read.data is not None
    failed = tuple(
        ScopeFailure(f.scope, f.error + (" (no earlier data)" if f.scope in read.no_earlier_data else ""))
        for f in (*read.data.failed_scopes, *read.detail_failures)
    )
    if failed:
        error = "; ".join(f"{f.scope or name}: {f.error}" for f in failed)
        return SourceRun(name, system, SourceStatus.FAILED, error, counts, failed, read.data.warnings, True)
    status = SourceStatus.DEGRADED if read.data.warnings else SourceStatus.OK
    return SourceRun(name, system, status, None, counts, (), read.data.warnings)


def group_credentials(credentials: Iterable[Credential]) -> dict[tuple[str, str], list[Credential]]:
    """Credentials by (source, account id), as evaluation looks them up."""
    grouped: dict[tuple[str, str], list[Credential]] = defaultdict(list)
    for c in credentials:
        grouped[(c.source, c.account_id)].append(c)
    return grouped
