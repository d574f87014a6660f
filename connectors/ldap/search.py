"""How the connector reads a directory completely: filters, paged searches, base reads, referrals.

Shared by the source (every pass) and the revoker (state reads). A short result is never
taken for the whole directory: a truncated search (size, time or admin limit) or a referral
raises :class:`ScopeReadError` for that base, naming what was read and why it stopped.
Every value placed in a filter is escaped (RFC 4515). An attribute AD sends in ranges
(``member;range=0-1499``) is read to its end before the entry is used.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import ldap3
from ldap3.core import exceptions as ldap_exc
from ldap3.utils.conv import escape_filter_chars

from connectors.ldap.dialects import LowerAttrs
from connectors.ldap.dn import dn_under
from connectors.ldap.settings import LdapSettings
from connectors.ldap.translate import Entry
from offboard_audit.core.records import Person

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
# Result codes that mean "the server stopped before giving us everything".
_TRUNCATED = {4: "sizeLimitExceeded", 11: "adminLimitExceeded", 3: "timeLimitExceeded"}
RESULT_NO_SUCH_OBJECT = 32
RESULT_REFERRAL = 10
# AD range retrieval: ``member;range=0-1499`` (more to come) or ``member;range=1500-*`` (the last).
_RANGED = re.compile(r"^(?P<attr>[^;]+);range=(?P<lo>\d+)-(?P<hi>\d+|\*)$", re.IGNORECASE)


class ScopeReadError(Exception):
    """One search base could not be read completely (the other bases may be fine)."""


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


def _ranged_values(raw: Mapping[str, Any], attr: str, lo: int) -> tuple[list[bytes], str] | None:
    """The values and the range end (a number or ``*``) of ``attr;range=<lo>-...`` in ``raw``."""
    for key, values in raw.items():
        m = _RANGED.match(key)
        if m and m["attr"].lower() == attr and int(m["lo"]) == lo:
            return list(values or ()), m["hi"]
    return None


def complete_ranges(conn: Any, entry: Entry) -> Entry:
    """``entry`` with every ranged attribute read to its end, under its plain name.

    Active Directory sends at most MaxValRange (default 1500) values of an attribute per read:
    a bigger group's ``member`` arrives as ``member;range=0-1499``, and the rest only when asked
    for (``member;range=1500-*``, MS-ADTS 3.1.1.3.1.3.3). Taken as it came, a big group would
    look empty (its members' memberships unread, a leaver "no longer a member"). A range that
    cannot be read to its end raises ScopeReadError: a partial list is never a complete one.
    """
    # The ";" test first: this runs for every entry of a large directory.
    ranged = {key: m for key in entry.raw if ";" in key and (m := _RANGED.match(key))}
    if not ranged:
        return entry
    attrs = LowerAttrs((k, v) for k, v in entry.raw.items() if k not in ranged)
    for key, m in ranged.items():
        name = m["attr"].lower()
        values = list(entry.raw[key])
        hi = m["hi"]
        while hi != "*":
            lo = int(hi) + 1
            result, response = _search(
                conn,
                entry.dn,
                "(objectClass=*)",
                search_scope=ldap3.BASE,
                attributes=[f"{name};range={lo}-*"],
            )
            code = int(result.get("result", 0))
            found = next(
                (
                    _ranged_values(item.get("raw_attributes") or {}, name, lo)
                    for item in response
                    if item.get("type") == "searchResEntry"
                ),
                None,
            )
            if code != 0:
                why = f"{result.get('description')} {result.get('message') or ''}".strip()
            elif found is None:
                why = "the server did not send that range"
            elif found[1] != "*" and (not found[0] or int(found[1]) < lo):
                why = f"the server sent an empty or backward range ending at {found[1]}"
            else:
                why = ""
            if why or found is None:
                raise ScopeReadError(
                    f"read of {name} values {lo} and on of {entry.dn} failed ({why}): only "
                    f"{len(values)} values were read, refusing to treat them as all"
                )
            values.extend(found[0])
            hi = found[1]
        attrs[name] = [*attrs.get(name, ()), *values]
    return Entry(entry.dn, attrs)


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
                page.append(complete_ranges(conn, Entry(item["dn"], LowerAttrs.of(item["raw_attributes"]))))
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
            return complete_ranges(conn, Entry(item["dn"], LowerAttrs.of(item["raw_attributes"])))
    return None
