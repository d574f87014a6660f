"""Read people, service accounts and their credentials from an LDAP directory.

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

import base64
import contextlib
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import ldap3
from ldap3.core import exceptions as ldap_exc
from ldap3.utils.conv import escape_filter_chars

from connectors.ldap.dialects import (
    HINT_ATTRIBUTES,
    LowerAttrs,
    RawAttrs,
    first,
    parse_generalized_time,
    values_of,
)
from connectors.ldap.settings import Connector, LdapSettings
from offboard_audit.core.errors import SourceError
from offboard_audit.core.records import (
    Account,
    AccountKind,
    Credential,
    CredentialKind,
    Person,
    ScopeFailure,
    SourceData,
)

SYSTEM = "ldap"
PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
# Result codes that mean "the server stopped before giving us everything".
_TRUNCATED = {4: "sizeLimitExceeded", 11: "adminLimitExceeded", 3: "timeLimitExceeded"}
RESULT_NO_SUCH_OBJECT = 32
RESULT_REFERRAL = 10
GROUP_PREFIX = "group:"
SSH_PREFIX = "ssh:"


class ScopeReadError(Exception):
    """One search base could not be read completely (the other bases may be fine)."""


@dataclass(frozen=True)
class Entry:
    dn: str
    raw: RawAttrs


def normalize_dn(dn: str) -> str:
    """Case- and space-insensitive form of a DN, for comparisons only (never sent to a server)."""
    return ",".join(part.strip().lower() for part in dn.split(","))


def dn_under(dn: str, base: str) -> bool:
    d, b = normalize_dn(dn), normalize_dn(base)
    return d == b or d.endswith("," + b)


def referral_dn(url: str) -> str:
    """The DN an LDAP URL (RFC 4516) points at: ``ldap://h:389/ou=x,dc=y??sub`` -> ``ou=x,dc=y``."""
    return unquote(urlsplit(url).path.lstrip("/"))


def referral_message(what: str, urls: Sequence[str]) -> str:
    return (
        f"{what} was referred to another server ({', '.join(urls) or 'no URL given'}): the entries "
        "there were not read, so this base is incomplete (referrals are never chased; configure "
        "that directory as a base or source of its own, or list the referred DN in "
        "ignore_referrals_to if it holds no accounts)"
    )


def group_member_filter(group_filter: str, dn: str, uid: str | None) -> str:
    """Groups that list ``dn`` (member, uniqueMember) or ``uid`` (memberUid).

    Both values are escaped (RFC 4515: ``*``, ``(``, ``)``, ``\\``, NUL): a DN may hold any of
    them, and unescaped they would change the filter (a ``*`` makes it a substring test).
    """
    value = escape_filter_chars(dn)
    parts = [f"(member={value})", f"(uniqueMember={value})"]
    if uid:
        parts.append(f"(memberUid={escape_filter_chars(uid)})")
    return f"(&{group_filter}(|{''.join(parts)}))"


def ssh_fingerprint(key: str) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of an authorized_keys line (falls back to the text)."""
    parts = key.split()
    for part in parts[:3]:
        # The key blob is the first base64 field that decodes (options may precede the type).
        if part.startswith("AAAA"):
            try:
                blob = base64.b64decode(part, validate=True)
            except ValueError:
                break
            digest = hashlib.sha256(blob).digest()
            return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
    digest = hashlib.sha256(key.strip().encode()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def ssh_credential_id(key: str) -> str:
    return SSH_PREFIX + ssh_fingerprint(key)


def group_credential_id(group_dn: str) -> str:
    return GROUP_PREFIX + group_dn


def wanted_attributes(settings: LdapSettings) -> list[str]:
    """Only what translation needs: state, last login, owner hints, keys, memberships."""
    d = settings.dialect
    names = [
        "objectClass",
        d.identity_attribute,
        *d.state_attributes,
        *d.last_login_attributes,
        *HINT_ATTRIBUTES,
        *settings.employee_id_attributes,
        *settings.email_attributes,
        *settings.username_attributes,
        "sshPublicKey",
        "memberOf",
        "whenCreated" if d.name == "ad" else "createTimestamp",
    ]
    if d.name == "ad":
        names.append("isCriticalSystemObject")
    seen: dict[str, str] = {}
    for n in names:
        seen.setdefault(n.lower(), n)
    return list(seen.values())


def _search(conn: Any, base: str, search_filter: str, **kwargs: Any) -> tuple[Mapping[str, Any], list[Any]]:
    """One search; the result and the response items, whatever ``raise_exceptions`` the
    connection was opened with (an injected one may raise: the result is then on ``conn``)."""
    try:
        conn.search(base, search_filter, **kwargs)
    except ldap_exc.LDAPOperationResult as exc:
        return conn.result or {
            "result": exc.result,
            "description": exc.description,
            "message": exc.message,
        }, []
    return conn.result or {}, list(conn.response or ())


def _referred(result: Mapping[str, Any]) -> list[str]:
    return [str(u) for u in result.get("referrals") or ()]


def _not_ignored(urls: Sequence[Any] | None, ignore_referrals_to: Sequence[str]) -> list[str]:
    """The reference URLs that count (a reference without a URL always counts)."""
    if not urls:
        return ["(a reference without a URL)"]
    return [str(u) for u in urls if not any(dn_under(referral_dn(str(u)), d) for d in ignore_referrals_to)]


def paged_search(
    conn: Any,
    base: str,
    search_filter: str,
    attributes: Sequence[str],
    page_size: int,
    ignore_referrals_to: Sequence[str] = (),
) -> Iterator[Entry]:
    """Yield every entry, page by page; raise ScopeReadError if the read is incomplete.

    A short result is never taken for the whole directory: sizeLimitExceeded (OpenLDAP's
    default 500 for non-admin binds, AD's limits) and friends raise, naming the count read.
    So does a referral: a continuation reference (``searchResRef``) to a DN not under one of
    ``ignore_referrals_to``, or a ``referral`` result for the base itself, raises naming the
    URLs; the page that carried it is not yielded.
    """
    cookie: bytes | None = None
    count = 0
    while True:
        result, response = _search(
            conn,
            base,
            search_filter,
            search_scope=ldap3.SUBTREE,
            attributes=list(attributes),
            paged_size=page_size,
            paged_cookie=cookie,
        )
        page: list[Entry] = []
        references: list[str] = []
        for item in response:
            kind = item.get("type")
            if kind == "searchResEntry":
                page.append(Entry(item["dn"], LowerAttrs.of(item["raw_attributes"])))
            elif kind == "searchResRef":
                references.extend(_not_ignored(item.get("uri") or (), ignore_referrals_to))
        code = int(result.get("result", 0))
        if code == RESULT_REFERRAL:
            raise ScopeReadError(referral_message(f"search of {base}", _referred(result)))
        if references:
            raise ScopeReadError(
                referral_message(f"search of {base} returned a continuation reference and", references)
            )
        count += len(page)
        yield from page
        if code in _TRUNCATED:
            raise ScopeReadError(
                f"search of {base} was truncated by the server ({_TRUNCATED[code]}) after {count} "
                f"entries: raise the size limit for the bind identity (OpenLDAP olcLimits "
                f"size.prtotal=unlimited; AD MaxPageSize/MaxResultSetSize) — refusing to treat a "
                f"partial list as complete"
            )
        if code != 0:
            raise ScopeReadError(
                f"search of {base} failed: {result.get('description')} {result.get('message') or ''}".strip()
            )
        controls = result.get("controls") or {}
        paged = controls.get(PAGED_RESULTS_OID)
        if paged is None:
            # A server that ignores the paged-results control sends everything in one go.
            return
        cookie = paged["value"]["cookie"]
        if not cookie:
            return


def read_entry(conn: Any, dn: str, attributes: Sequence[str]) -> Entry | None:
    """One entry by DN (base-scope search), or None if it does not exist.

    An entry at or under a referral object is not "gone": the server answers ``referral``
    and this raises ScopeReadError naming the URLs.
    """
    result, response = _search(
        conn, dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=list(attributes)
    )
    code = int(result.get("result", 0))
    if code == RESULT_NO_SUCH_OBJECT:
        return None
    if code == RESULT_REFERRAL:
        raise ScopeReadError(referral_message(f"read of {dn}", _referred(result)))
    if code != 0:
        raise ScopeReadError(
            f"read of {dn} failed: {result.get('description')} {result.get('message') or ''}".strip()
        )
    references = [
        u
        for item in response
        if item.get("type") == "searchResRef"
        for u in _not_ignored(item.get("uri"), ())
    ]
    if references:
        raise ScopeReadError(referral_message(f"read of {dn}", references))
    for item in response:
        if item.get("type") == "searchResEntry":
            return Entry(item["dn"], LowerAttrs.of(item["raw_attributes"]))
    return None


class LdapSource:
    """The ``ldap`` account source (see the module docstring for calls and permissions)."""

    system = SYSTEM

    def __init__(self, settings: LdapSettings, connector: Connector) -> None:
        self.settings = settings
        self.name = settings.name
        self._connect = connector
        hints: dict[str, str] = {}
        for n in (
            *HINT_ATTRIBUTES,
            *settings.employee_id_attributes,
            *settings.email_attributes,
            *settings.username_attributes,
        ):
            hints.setdefault(n.lower(), n)
        self._hint_names = tuple(hints.values())
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

    # --- translation (pure) -------------------------------------------------------------

    def translate(
        self, entry: Entry, scope: str, groups: dict[str, list[str]]
    ) -> tuple[Account, list[Credential]]:
        """One directory entry -> its Account and Credentials. ``groups``: member key -> group DNs."""
        s = self.settings
        d = s.dialect
        raw = entry.raw
        dn = entry.dn
        enabled = d.enabled(raw)
        last_login = d.last_login(raw)
        object_classes = {v.lower() for v in values_of(raw, "objectClass")}
        is_service = bool(object_classes & {c.lower() for c in s.service_object_classes}) or any(
            dn_under(dn, b) for b in s.service_base_dns
        )
        username = ""
        for attr in s.username_attributes:
            username = first(raw, attr) or ""
            if username:
                break
        if not username:
            username = d.username(raw, dn)
        emails = tuple(v for attr in s.email_attributes for v in values_of(raw, attr) if "@" in v)
        attributes = tuple(
            (canonical, v) for canonical in self._hint_names for v in values_of(raw, canonical)
        )
        created = _created(raw, d.name)
        account = Account(
            source=s.name,
            system=SYSTEM,
            account_id=dn,
            username=username,
            enabled=enabled,
            kind=AccountKind.SERVICE if is_service else AccountKind.HUMAN,
            emails=emails,
            display_name=first(raw, "displayName") or first(raw, "cn") or username,
            last_login_at=last_login,
            last_login_precision=d.last_login_precision,
            attributes=attributes,
            scope=scope,
            uid=d.identity(raw) or "",
        )
        creds = [
            Credential(
                source=s.name,
                account_id=dn,
                credential_id=dn,
                kind=CredentialKind.ACCOUNT,
                active=enabled,
                created_at=created,
                last_used_at=last_login,
                last_used_precision=d.last_login_precision,
                detail=f"{d.name} entry {dn}",
                scope=scope,
            )
        ]
        seen_keys: set[str] = set()
        for key in values_of(raw, "sshPublicKey"):
            cid = ssh_credential_id(key)
            if cid in seen_keys:
                continue
            seen_keys.add(cid)
            kind = key.split()[0] if key.split() else "?"
            comment = " ".join(key.split()[2:3])
            creds.append(
                Credential(
                    source=s.name,
                    account_id=dn,
                    credential_id=cid,
                    kind=CredentialKind.SSH_KEY,
                    active=True,
                    detail=f"sshPublicKey {kind} {cid[len(SSH_PREFIX) :]} {comment}".strip(),
                    scope=scope,
                )
            )
        group_dns: dict[str, str] = {}
        for g in values_of(raw, "memberOf"):
            group_dns.setdefault(normalize_dn(g), g)
        for key in (normalize_dn(dn), "uid:" + username.lower()):
            for g in groups.get(key, ()):
                group_dns.setdefault(normalize_dn(g), g)
        for g in group_dns.values():
            creds.append(
                Credential(
                    source=s.name,
                    account_id=dn,
                    credential_id=group_credential_id(g),
                    kind=CredentialKind.GROUP_MEMBERSHIP,
                    active=True,
                    detail=g,
                    scope=scope,
                )
            )
        return account, creds

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


def person_filter(settings: LdapSettings, person: Person) -> str | None:
    """An OR of equality tests for one HR person; every value escaped (RFC 4515)."""
    tests: list[str] = []
    values_by_attr: list[tuple[str, str]] = []
    emails = [e for e in (person.email, *person.aliases) if e and "@" in e]
    names = [a for a in person.aliases if a and "@" not in a]
    for attr in settings.employee_id_attributes:
        if person.employee_id:
            values_by_attr.append((attr, person.employee_id))
    for attr in (*settings.email_attributes, "userPrincipalName" if settings.dialect.name == "ad" else ""):
        if attr:
            values_by_attr.extend((attr, e) for e in emails)
    for attr in settings.username_attributes:
        values_by_attr.extend((attr, n) for n in names)
    for attr, value in dict.fromkeys(values_by_attr):
        tests.append(f"({attr}={escape_filter_chars(value)})")
    if not tests:
        return None
    return "(|" + "".join(tests) + ")"


def _created(raw: RawAttrs, dialect: str) -> datetime | None:
    text = first(raw, "whenCreated" if dialect == "ad" else "createTimestamp")
    if not text:
        return None
    try:
        return parse_generalized_time(text)
    except ValueError:
        return None


def close(conn: Any) -> None:
    """Unbind; a connection that already broke has nothing left to close."""
    with contextlib.suppress(ldap_exc.LDAPException):
        conn.unbind()
