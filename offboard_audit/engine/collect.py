"""Reading the account sources of one run: collect, settle, detail pass, source status.

One :class:`AccountRead` per source and run. A source reads everything (``collect``) or, in a
run about one person, only what may be theirs (``TargetedSource.collect_for``, when the source
has it). Whatever failed (the whole source, a scope of it, or the detail pass of a scope) is
replaced by the stored data of that scope, marked stale: nothing in it is resolved or planned,
and bulk data without its detail (placeholder ids, missing keys) is never taken as clean.

An optional enrichment that failed (:class:`~offboard_audit.core.records.EnrichmentFailure`: the
scope was read, evidence such as a last use was not) keeps the scope's fresh data with the last
known values of that evidence from the stored snapshot, marked stale (:func:`keep_last_known`);
the source is ``degraded`` with a warning, and no finding whose credential is still there closes
(:func:`offboard_audit.core.lifecycle.unproven_ids`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from offboard_audit.config import SourceConfig
from offboard_audit.core.errors import ConfigError, SourceError
from offboard_audit.core.protocols import AccountSource, TargetedSource
from offboard_audit.core.records import (
    Account,
    Credential,
    EnrichmentFailure,
    Link,
    Person,
    ScopeFailure,
    SourceData,
)
from offboard_audit.core.runs import SourceRun, SourceStatus
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
    # Optional enrichments that failed (bulk, targeted or detail read), and the detail pass's warnings.
    enrichment_failures: list[EnrichmentFailure] = field(default_factory=list)
    detail_warnings: list[str] = field(default_factory=list)
    # How many accounts and credentials carry a last known value in place of a fresh one.
    kept_last_known: int = 0

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

    @property
    def unenriched_scopes(self) -> set[str]:
        """Scopes read without their optional enrichment (and not failed altogether)."""
        if self.error is not None:
            return set()
        return {f.scope for f in self.enrichment_failures} - self.stale_scopes


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
    read.enrichment_failures.extend(read.data.enrichment_failures)
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
    read.detail_warnings.extend(detail.warnings)
    read.enrichment_failures.extend(detail.enrichment_failures)
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


def keep_last_known(reads: Sequence[AccountRead], store: Store) -> None:
    """For the scopes whose optional enrichment failed, put the stored last login and last use
    (the last known values) where this read has none or an older one, marked stale.

    Only the evidence is carried over, never an account or a credential: what exists and whether
    it is active comes from this read. Nothing is carried across a recreated account (its
    immutable identity differs from the stored one).
    """
    for read in reads:
        scopes = read.unenriched_scopes
        if scopes:
            _keep_last_known(read, scopes, store)


def _keep_last_known(read: AccountRead, scopes: set[str], store: Store) -> None:
    snap = store.load_snapshot(read.name, scopes)
    stored_accounts = {a.account_id: a for a in snap.accounts}
    stored_credentials = {c.key: c for c in snap.credentials}
    recreated = {
        a.account_id
        for a in read.accounts
        if (old := stored_accounts.get(a.account_id)) is not None and a.uid and old.uid and a.uid != old.uid
    }

    def carried(fresh: Account | Credential) -> bool:
        return fresh.scope in scopes and fresh.account_id not in recreated

    accounts, kept = _keep_newer(
        read.accounts, lambda a: stored_accounts.get(a.account_id), _last_login, _stale_login, carried
    )
    credentials, kept_uses = _keep_newer(
        read.credentials, lambda c: stored_credentials.get(c.key), _last_use, _stale_use, carried
    )
    read.accounts, read.credentials, read.kept_last_known = accounts, credentials, kept + kept_uses


def _newer(stored: datetime | None, fresh: datetime | None) -> bool:
    return stored is not None and (fresh is None or stored > fresh)


_Evidence = TypeVar("_Evidence", Account, Credential)


def _keep_newer(
    fresh: Sequence[_Evidence],
    stored: Callable[[_Evidence], _Evidence | None],
    when: Callable[[_Evidence], datetime | None],
    stale: Callable[[_Evidence, _Evidence], _Evidence],
    carried: Callable[[_Evidence], bool],
) -> tuple[list[_Evidence], int]:
    """``fresh`` with the newer time (``when``) of its ``stored`` copy put back, marked
    ``stale``, where ``carried`` allows it; and how many were carried."""
    out: list[_Evidence] = []
    kept = 0
    for item in fresh:
        old = stored(item)
        if carried(item) and old is not None and _newer(when(old), when(item)):
            item = stale(item, old)
            kept += 1
        out.append(item)
    return out, kept


def _last_login(a: Account) -> datetime | None:
    return a.last_login_at


def _stale_login(a: Account, old: Account) -> Account:
    return replace(
        a,
        last_login_at=old.last_login_at,
        last_login_precision=old.last_login_precision,
        last_login_stale=True,
    )


def _last_use(c: Credential) -> datetime | None:
    return c.last_used_at


def _stale_use(c: Credential, old: Credential) -> Credential:
    return replace(
        c, last_used_at=old.last_used_at, last_used_precision=old.last_used_precision, last_used_stale=True
    )


def unenriched(reads: Sequence[AccountRead]) -> tuple[list[Account], list[Credential]]:
    """The accounts and credentials of every scope read without its optional enrichment."""
    accounts: list[Account] = []
    credentials: list[Credential] = []
    for read in reads:
        scopes = read.unenriched_scopes
        accounts.extend(a for a in read.accounts if a.scope in scopes)
        credentials.extend(c for c in read.credentials if c.scope in scopes)
    return accounts, credentials


def _enrichment_warnings(read: AccountRead) -> list[str]:
    scopes = read.unenriched_scopes
    out = [
        f"{f.scope or read.name}: {f.error}; nothing here is resolved or downgraded for lack of it"
        for f in read.enrichment_failures
        if f.scope in scopes
    ]
    if out and read.kept_last_known:
        out.append(
            f"kept the last known last login/last use of {read.kept_last_known} account(s) and "
            "credential(s) from an earlier read (stale)"
        )
    return out


def source_run(read: AccountRead) -> SourceRun:
    """How the source fared: failed (whole or some scopes, stale data used), degraded
    (warnings, an optional enrichment that failed) or ok."""
    name, system = read.name, read.source.system
    counts: tuple[tuple[str, int], ...] = (
        ("accounts", len(read.accounts)),
        ("credentials", len(read.credentials)),
    )
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
    warnings = (*read.data.warnings, *read.detail_warnings, *_enrichment_warnings(read))
    if read.kept_last_known:
        counts += (("kept_last_known", read.kept_last_known),)
    if failed:
        error = "; ".join(f"{f.scope or name}: {f.error}" for f in failed)
        return SourceRun(name, system, SourceStatus.FAILED, error, counts, failed, warnings, True)
    status = SourceStatus.DEGRADED if warnings else SourceStatus.OK
    return SourceRun(name, system, status, None, counts, (), warnings)


def group_credentials(credentials: Iterable[Credential]) -> dict[tuple[str, str], list[Credential]]:
    """Credentials by (source, account id), as evaluation looks them up."""
    grouped: dict[tuple[str, str], list[Credential]] = defaultdict(list)
    for c in credentials:
        grouped[(c.source, c.account_id)].append(c)
    return grouped
