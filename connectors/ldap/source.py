"""The ``ldap`` account source: people, service accounts and their credentials, in three passes.

API calls: a simple bind, then RFC 2696 paged subtree searches (one per base DN, plus one
over ``group_base_dn`` when it is set) asking only for the attributes listed in
:func:`wanted_attributes`; the detail pass reads single entries by DN (base scope) and the
targeted pass runs one escaped equality filter per base.

Permissions: read access (search + read) for the bind identity on the account entries and
the attributes below, including the operational ones (``pwdAccountLockedTime``,
``pwdLastSuccess``, ``authTimestamp``, ``lastLogonTimestamp``, ``nsAccountLock``,
``lastLoginTime``) and the identity attribute (``entryUUID``, ``objectGUID``,
``nsUniqueId``: asked for by name in every read, the first and last being operational),
and a size limit that allows full paged reads (OpenLDAP:
``olcLimits: dn.exact="<bind_dn>" size.prtotal=unlimited``; AD: paging within MaxPageSize).

Referrals are never chased and never skipped: a search continuation reference
(``searchResRef``) or a ``referral`` result in any read (bulk, detail, targeted, groups)
fails that base as a scope, naming the referral URLs, because the entries behind it were
not read. The only exception is a reference to a DN listed in ``ignore_referrals_to``
(naming contexts the operator declares hold no accounts, e.g. AD's Configuration partition).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import ldap3
from ldap3.core import exceptions as ldap_exc

from connectors.ldap.clients import Connector, close
from connectors.ldap.dialects import first, values_of
from connectors.ldap.dn import dn_under, normalize_dn
from connectors.ldap.search import (
    ScopeReadError,
    group_member_filter,
    paged_search,
    person_filter,
    read_entry,
)
from connectors.ldap.settings import LdapSettings
from connectors.ldap.translate import (
    SYSTEM,
    Entry,
    hint_attribute_names,
    translate_entry,
    wanted_attributes,
)
from offboard_audit.core.errors import SourceError
from offboard_audit.core.records import Account, Credential, Person, ScopeFailure, SourceData


class LdapSource:
    """The ``ldap`` account source (see the module docstring for calls and permissions)."""

    system = SYSTEM

    def __init__(self, settings: LdapSettings, connector: Connector) -> None:
        self.settings = settings
        self.name = settings.name
        self._connect = connector
        self._hint_names = hint_attribute_names(settings)
        self._attributes = wanted_attributes(settings)
        # Normalized DNs the latest bulk pass read completely (entry + memberships).
        self._read_in_full: set[str] = set()

    # --- passes -----------------------------------------------------------------------

    def collect(self) -> SourceData:
        """Bulk pass: one paged search per base (+ one over groups), all accounts and credentials."""
        s = self.settings
        conn = self._open()
        try:
            accounts: list[Account] = []
            per_account: dict[str, list[Credential]] = {}
            failures: list[ScopeFailure] = []
            scopes: list[str] = list(s.base_dns)
            entries: list[tuple[str, Entry]] = []
            for base in s.base_dns:
                try:
                    # Materialise the base first: a base cut short must contribute nothing.
                    read = list(self._paged(conn, base, s.user_filter, self._attrs()))
                except ScopeReadError as exc:
                    failures.append(ScopeFailure(base, str(exc)))
                    continue
                entries.extend((base, e) for e in read)
            if len(failures) == len(s.base_dns):
                raise SourceError(f"{s.name}: no base could be read: " + "; ".join(f.error for f in failures))
            groups: dict[str, list[str]] = {}
            if s.group_base_dn is not None:
                scopes.append(s.group_base_dn)
                try:
                    groups = self._group_index(conn)
                except ScopeReadError as exc:
                    failures.append(ScopeFailure(s.group_base_dn, str(exc)))
            for base, entry in entries:
                account, creds = self.translate(entry, base, groups)
                accounts.append(account)
                per_account[account.account_id] = creds
            credentials = [c for creds in per_account.values() for c in creds]
            groups_ok = s.group_base_dn is None or not any(f.scope == s.group_base_dn for f in failures)
            self._read_in_full = {normalize_dn(a.account_id) for a in accounts} if groups_ok else set()
            return SourceData(
                accounts=tuple(accounts),
                credentials=tuple(credentials),
                failed_scopes=tuple(failures),
                scopes=tuple(scopes),
            )
        except ldap_exc.LDAPException as exc:
            raise SourceError(f"{s.name}: {s.url}: read failed: {type(exc).__name__}: {exc}") from exc
        finally:
            close(conn)

    def detail(self, accounts: Sequence[Account]) -> SourceData:
        """Re-read the asked-for entries by DN (and their groups) that the bulk pass did not read.

        The bulk pass already asks for every attribute this pass would, so entries this
        instance's latest ``collect()`` read in full have nothing more to say: re-reading
        1,000 leavers would cost 2,000 round trips for data seconds old. The revoker reads
        the live state again before every change anyway.
        """
        mine = [
            a
            for a in accounts
            if a.source == self.name and normalize_dn(a.account_id) not in self._read_in_full
        ]
        if not mine:
            return SourceData()
        s = self.settings
        conn = self._open()
        try:
            out_accounts: list[Account] = []
            out_creds: list[Credential] = []
            failures: list[ScopeFailure] = []
            for account in mine:
                base = account.scope or self._base_of(account.account_id)
                try:
                    entry = read_entry(conn, account.account_id, self._attrs())
                    if entry is None:
                        continue  # deleted since the bulk pass: nothing left to revoke
                    groups = self._groups_for(conn, entry) if s.group_base_dn else {}
                except ScopeReadError as exc:
                    failures.append(ScopeFailure(base, str(exc)))
                    continue
                acc, creds = self.translate(entry, base, groups)
                out_accounts.append(acc)
                out_creds.extend(creds)
            return SourceData(
                accounts=tuple(out_accounts),
                credentials=tuple(out_creds),
                failed_scopes=tuple(failures),
                scopes=tuple(sorted({a.scope for a in mine if a.scope})),
            )
        except ldap_exc.LDAPException as exc:
            raise SourceError(f"{s.name}: {s.url}: detail read failed: {type(exc).__name__}: {exc}") from exc
        finally:
            close(conn)

    def collect_for(self, person: Person) -> SourceData:
        """Targeted pass for one person: an escaped OR of their ids, emails and aliases per base."""
        s = self.settings
        flt = person_filter(s, person)
        if flt is None:
            return SourceData(scopes=s.base_dns)
        full = f"(&{s.user_filter}{flt})"
        conn = self._open()
        try:
            accounts: list[Account] = []
            creds: list[Credential] = []
            failures: list[ScopeFailure] = []
            for base in s.base_dns:
                try:
                    found = list(self._paged(conn, base, full, self._attrs()))
                    translated = [
                        self.translate(e, base, self._groups_for(conn, e) if s.group_base_dn else {})
                        for e in found
                    ]
                except ScopeReadError as exc:
                    failures.append(ScopeFailure(base, str(exc)))
                    continue
                for acc, cs in translated:
                    accounts.append(acc)
                    creds.extend(cs)
            if len(failures) == len(s.base_dns):
                raise SourceError(f"{s.name}: no base could be read: " + "; ".join(f.error for f in failures))
            return SourceData(tuple(accounts), tuple(creds), tuple(failures), scopes=s.base_dns)
        except ldap_exc.LDAPException as exc:
            raise SourceError(f"{s.name}: {s.url}: read failed: {type(exc).__name__}: {exc}") from exc
        finally:
            close(conn)

    def translate(
        self, entry: Entry, scope: str, groups: dict[str, list[str]]
    ) -> tuple[Account, list[Credential]]:
        """One directory entry -> its Account and Credentials (see ``translate.py``)."""
        return translate_entry(self.settings, self._hint_names, entry, scope, groups)

    # --- helpers ------------------------------------------------------------------------

    def _attrs(self) -> list[str]:
        return list(self._attributes)

    def _paged(self, conn: Any, base: str, search_filter: str, attributes: Sequence[str]) -> Iterator[Entry]:
        s = self.settings
        return paged_search(conn, base, search_filter, attributes, s.page_size, s.ignore_referrals_to)

    def _open(self) -> Any:
        try:
            return self._connect()
        except ldap_exc.LDAPException as exc:
            raise SourceError(f"{self.settings.url}: cannot connect: {type(exc).__name__}: {exc}") from exc

    def _base_of(self, dn: str) -> str:
        for base in self.settings.base_dns:
            if dn_under(dn, base):
                return base
        return self.settings.base_dns[0]

    def _group_index(self, conn: Any) -> dict[str, list[str]]:
        """member DN (normalized) or "uid:<memberUid>" -> group DNs, from group entries."""
        s = self.settings
        assert s.group_base_dn is not None
        flt = s.group_filter
        index: dict[str, list[str]] = {}
        for g in self._paged(conn, s.group_base_dn, flt, ["member", "uniqueMember", "memberUid"]):
            for attr in ("member", "uniqueMember"):
                for m in values_of(g.raw, attr):
                    index.setdefault(normalize_dn(m), []).append(g.dn)
            for uid in values_of(g.raw, "memberUid"):
                index.setdefault("uid:" + uid.lower(), []).append(g.dn)
        return index

    def _groups_for(self, conn: Any, entry: Entry) -> dict[str, list[str]]:
        """Only the groups one entry belongs to (detail/targeted passes)."""
        s = self.settings
        assert s.group_base_dn is not None
        flt = group_member_filter(s.group_filter, entry.dn, first(entry.raw, "uid"))
        # The filter already proves membership: ask for no attributes ("1.1"), or every match
        # would drag all of a big group's member values over the wire.
        found = [g.dn for g in self._paged(conn, s.group_base_dn, flt, [ldap3.NO_ATTRIBUTES])]
        return {normalize_dn(entry.dn): found}
