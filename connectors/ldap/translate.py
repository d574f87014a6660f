"""Directory entries -> the core's records. Pure: no I/O, no decisions about people.

One entry is one :class:`Account` plus its credentials: the login itself (``account``, id =
the DN), each ``sshPublicKey`` (id ``ssh:SHA256:...``, the OpenSSH fingerprint) and each group
membership (id ``group:<group DN>``). The entry's immutable identity (``entryUUID``, AD
``objectGUID``, 389-DS ``nsUniqueId``) is ``Account.uid``. What differs per directory flavour
(state, last login, identity) is in ``dialects.py``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime

from connectors.ldap.dialects import HINT_ATTRIBUTES, RawAttrs, first, parse_generalized_time, values_of
from connectors.ldap.dn import dn_under, normalize_dn
from connectors.ldap.settings import LdapSettings
from offboard_audit.core.records import Account, AccountKind, Credential, CredentialKind

SYSTEM = "ldap"
GROUP_PREFIX = "group:"
SSH_PREFIX = "ssh:"


@dataclass(frozen=True)
class Entry:
    dn: str
    raw: RawAttrs


def _blob_type(blob: bytes) -> str | None:
    """The key type a public key blob starts with (an SSH string: 4-byte length, then the name)."""
    size = int.from_bytes(blob[:4], "big")
    if len(blob) < 4 + size or not 0 < size <= 64:
        return None
    return blob[4 : 4 + size].decode("ascii", "replace")


def ssh_fingerprint(key: str) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of an authorized_keys line (falls back to the text).

    The key is the base64 blob right after its type word, and the blob names that same type:
    options before the type may hold quoted spaces (``command="borg serve ..."``), so neither
    the position of the blob nor "the first base64 word" identifies it.
    """
    parts = key.split()
    for i, part in enumerate(parts):
        if not part.startswith("AAAA"):
            continue
        try:
            blob = base64.b64decode(part, validate=True)
        except ValueError:
            continue
        kind = _blob_type(blob)
        # A bare blob (no type word before it) is accepted when it is the first word.
        if kind is not None and (parts[i - 1] == kind if i else True):
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


def hint_attribute_names(settings: LdapSettings) -> tuple[str, ...]:
    """The attributes copied into ``Account.attributes`` as owner hints (each name once)."""
    hints: dict[str, str] = {}
    for n in (
        *HINT_ATTRIBUTES,
        *settings.employee_id_attributes,
        *settings.email_attributes,
        *settings.username_attributes,
    ):
        hints.setdefault(n.lower(), n)
    return tuple(hints.values())


def translate_entry(
    settings: LdapSettings,
    hint_names: tuple[str, ...],
    entry: Entry,
    scope: str,
    groups: dict[str, list[str]],
) -> tuple[Account, list[Credential]]:
    """One directory entry -> its Account and Credentials. ``groups``: member key -> group DNs."""
    s = settings
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
    attributes = tuple((canonical, v) for canonical in hint_names for v in values_of(raw, canonical))
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


def _created(raw: RawAttrs, dialect: str) -> datetime | None:
    text = first(raw, "whenCreated" if dialect == "ad" else "createTimestamp")
    if not text:
        return None
    try:
        return parse_generalized_time(text)
    except ValueError:
        return None
