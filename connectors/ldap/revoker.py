"""Disable LDAP/AD credentials reversibly: lock the account, leave groups, drop SSH keys.

The actions (one class each) are in ``actions.py``; the engine runs their steps (read,
identity and no-op checks, change, re-read and verify). This module is what every action
goes through: connections, the DN checks, identity reads, the protected-account refusals
and modifies (:class:`LdapRevoker`, one subclass per dialect, picked by :func:`revoker_for`).

API calls: base-scope searches to read an entry's state, one base search of the account entry
right before each modify (its identity re-checked and, before a revocation, its login names
for the protected checks), and one LDAP modify per change, on the account entry (lock, SSH
keys) or on the group entry (membership; the directory's memberOf follows).

Identity: every read asks for the account entry's immutable identity (``entryUUID``, AD
``objectGUID``, 389-DS ``nsUniqueId``; asked for by name) and puts it into
``ResourceState.identity`` (None when no entry has that DN any more). The re-check right before
a modify raises ``TargetChanged`` when it is not the ``ActionTarget.account_uid`` the action
was planned for (an entry deleted and re-added under the same DN): nothing is modified. An
entry whose identity the bind identity cannot read is refused (RevokeError), never acted on by
name alone.

Permissions (the bind identity needs write access to exactly these attributes):
- OpenLDAP: ``pwdAccountLockedTime`` and ``sshPublicKey`` on account entries,
  ``member``/``uniqueMember``/``memberUid`` on group entries.
- Active Directory: ``userAccountControl`` (Write Property) and ``sshPublicKey`` on users,
  ``member`` on groups.
- 389-DS: ``nsAccountLock`` and ``sshPublicKey`` on users, ``member``/``uniqueMember``/
  ``memberUid`` on groups.
- All: read (search, base scope) of the identity attribute and of ``uid`` (AD:
  ``sAMAccountName``, ``userPrincipalName``, ``isCriticalSystemObject``) on account entries.

Safety: the revoker refuses its own bind identity (a DN, or on AD also ``user@realm`` /
``DOMAIN\\user`` compared with the entry's userPrincipalName / sAMAccountName), accounts
matching ``protected_dns`` (DN patterns, or login-name patterns), DNs outside the configured
bases and, for AD, built-in critical objects (Administrator, krbtgt, ``isCriticalSystemObject``),
whatever the core's plan says. Directory names are case-insensitive, and so is every one of
these comparisons.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from string import hexdigits
from types import MappingProxyType
from typing import Any, ClassVar

from ldap3.core import exceptions as ldap_exc
from ldap3.utils.dn import parse_dn

from connectors.ldap.actions import (
    LEAVE_GROUP,
    LOCK,
    REMOVE_SSH_KEY,
    ADLock,
    Changes,
    DS389Lock,
    LeaveGroup,
    LockAccount,
    OpenLDAPLock,
    RemoveSshKey,
)
from connectors.ldap.clients import Connector, close
from connectors.ldap.dialects import first, values_of
from connectors.ldap.dn import dn_under, normalize_dn
from connectors.ldap.search import ScopeReadError, read_entry
from connectors.ldap.settings import LdapSettings
from connectors.ldap.translate import Entry
from offboard_audit.core.actions import ActionDef, ActionTarget, ResourceState, identity_mismatch
from offboard_audit.core.errors import RevokeError, TargetChanged
from offboard_audit.core.protocols import ActionSpec

_AD_BUILTIN = {"administrator", "krbtgt", "guest"}
_MEMBER_PERMISSION = "write member, uniqueMember, memberUid on the group entry"
_SSH_PERMISSION = "write sshPublicKey on the account entry"


def _definitions(lock: ActionDef, member_permission: str) -> Mapping[str, ActionDef]:
    return MappingProxyType(
        {
            LOCK: lock,
            LEAVE_GROUP: LeaveGroup.define(member_permission),
            REMOVE_SSH_KEY: RemoveSshKey.define(_SSH_PERMISSION),
        }
    )


class LdapRevoker:
    """Base revoker; :func:`revoker_for` picks the dialect's subclass.

    The union of the dialects' permissions is declared here (for the plugin and ``config check``).
    """

    actions: ClassVar[Mapping[str, ActionDef]] = _definitions(
        LockAccount.define(
            "write pwdAccountLockedTime (openldap) / userAccountControl (ad) / nsAccountLock (389ds) "
            "on the account entry"
        ),
        _MEMBER_PERMISSION,
    )
    lock: ClassVar[type[LockAccount]]
    # Login names read from the live entry for the protected checks, and what else they need.
    login_attributes: ClassVar[tuple[str, ...]] = ("uid",)
    critical_attributes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: LdapSettings, connector: Connector) -> None:
        self.settings = settings
        self._connect = connector
        self.specs: Mapping[str, ActionSpec] = MappingProxyType(
            {
                LOCK: self.lock(self, self.actions[LOCK]),
                LEAVE_GROUP: LeaveGroup(self, self.actions[LEAVE_GROUP]),
                REMOVE_SSH_KEY: RemoveSshKey(self, self.actions[REMOVE_SSH_KEY]),
            }
        )

    # --- what every action goes through (actions.Directory) ---------------------------------

    @contextmanager
    def session(self, target: ActionTarget) -> Iterator[Any]:
        self._check_dn(target)
        conn = self._open()
        try:
            yield conn
        finally:
            close(conn)

    def entry(self, conn: Any, dn: str, attributes: list[str]) -> Entry | None:
        try:
            return read_entry(conn, dn, [*attributes, self.settings.dialect.identity_attribute])
        except (ldap_exc.LDAPException, ScopeReadError) as exc:
            # ScopeReadError: e.g. the entry now sits under a referral (the URL is in the message).
            raise RevokeError(f"{self.settings.name}: read of {dn} failed: {exc}") from exc

    def identity(self, entry: Entry) -> str:
        """The entry's immutable identity, as the source reads it into ``Account.uid``."""
        uid = self.settings.dialect.identity(entry.raw)
        if uid is None:
            attr = self.settings.dialect.identity_attribute
            raise RevokeError(
                f"{self.settings.name}: {entry.dn} has no readable {attr}: grant the bind identity "
                f"read access to {attr}; refusing to act on a DN alone (it may have been reused)"
            )
        return uid

    def same_entry(self, conn: Any, target: ActionTarget, protect: bool) -> None:
        names = [*self.login_attributes, *self.critical_attributes] if protect else []
        entry = self.entry(conn, target.account_id, names)
        uid = self.identity(entry) if entry is not None else None
        mismatch = identity_mismatch(
            target, ResourceState(exists=uid is not None, active=False, identity=uid)
        )
        if mismatch is not None:
            raise TargetChanged(mismatch)
        if protect and entry is not None:
            self._refuse_protected(entry, target)

    def modify(self, conn: Any, dn: str, changes: Changes) -> None:
        try:
            ok = conn.modify(dn, dict(changes))
        except ldap_exc.LDAPException as exc:
            raise RevokeError(f"{self.settings.name}: modify of {dn} failed: {exc}") from exc
        if not ok:
            r = conn.result
            raise RevokeError(
                f"{self.settings.name}: modify of {dn} failed: "
                f"{r.get('description')} {r.get('message') or ''}".strip()
            )

    # --- safety -----------------------------------------------------------------------------

    def _check_dn(self, target: ActionTarget) -> None:
        try:
            parse_dn(target.account_id)
        except ldap_exc.LDAPException as exc:
            raise RevokeError(f"not a DN: {target.account_id!r}") from exc
        if not any(dn_under(target.account_id, b) for b in self.settings.base_dns):
            raise RevokeError(f"refusing {target.account_id}: outside the configured base DNs")

    def _refuse_protected(self, entry: Entry, target: ActionTarget) -> None:
        """Refuse the bind identity and ``protected_dns``, comparing names case-insensitively.

        A pattern without ``=`` and a bind identity that is not a DN (AD ``user@realm``,
        ``DOMAIN\\user``) are compared with the entry's login names.
        """
        # Both spellings: parsed (escapes resolved) and split at commas (as patterns are).
        dn_forms = {canonical_dn(target.account_id), normalize_dn(target.account_id)}
        names = {v.strip().lower() for a in self.login_attributes for v in values_of(entry.raw, a)}
        names.discard("")
        self._refuse_critical(entry, target)
        if _is_bind_identity(self.settings.bind_dn, target.account_id, names):
            raise RevokeError(f"refusing to revoke the audit's own bind identity {target.account_id}")
        for pattern in self.settings.protected_dns:
            lowered = pattern.strip().lower()
            if "=" in lowered:
                hit = any(fnmatch.fnmatchcase(form, normalize_dn(lowered)) for form in dn_forms)
            else:
                hit = any(fnmatch.fnmatchcase(n, lowered) for n in names)
            if hit:
                raise RevokeError(f"refusing protected account {target.account_id} (matches {pattern!r})")

    def _refuse_critical(self, entry: Entry, target: ActionTarget) -> None:
        """Dialect-specific objects that must never be revoked (none outside AD)."""

    def _open(self) -> Any:
        try:
            return self._connect()
        except ldap_exc.LDAPException as exc:
            raise RevokeError(f"{self.settings.url}: cannot connect: {exc}") from exc
        except Exception as exc:  # SourceError from the shared connector
            raise RevokeError(str(exc)) from exc


class OpenLDAPRevoker(LdapRevoker):
    """OpenLDAP with the ppolicy overlay."""

    actions = _definitions(
        OpenLDAPLock.define("write pwdAccountLockedTime on the account entry"), _MEMBER_PERMISSION
    )
    lock = OpenLDAPLock


class DS389Revoker(LdapRevoker):
    """389 Directory Server."""

    actions = _definitions(DS389Lock.define("write nsAccountLock on the account entry"), _MEMBER_PERMISSION)
    lock = DS389Lock


class ADRevoker(LdapRevoker):
    """Active Directory (and Samba AD)."""

    actions = _definitions(
        ADLock.define("Write Property userAccountControl on the user object"),
        "Write Property member on the group object",
    )
    lock = ADLock
    login_attributes = ("sAMAccountName", "userPrincipalName")
    critical_attributes = ("isCriticalSystemObject",)

    def _refuse_critical(self, entry: Entry, target: ActionTarget) -> None:
        sam = (first(entry.raw, "sAMAccountName") or "").lower()
        critical = (first(entry.raw, "isCriticalSystemObject") or "").upper() == "TRUE"
        if sam in _AD_BUILTIN or critical:
            raise RevokeError(f"refusing built-in/critical AD account {target.account_id} ({sam})")


REVOKERS: dict[str, type[LdapRevoker]] = {
    "openldap": OpenLDAPRevoker,
    "ad": ADRevoker,
    "389ds": DS389Revoker,
}


def revoker_for(settings: LdapSettings, connector: Connector) -> LdapRevoker:
    return REVOKERS[settings.dialect.name](settings, connector)


def _unescape_dn_value(value: str) -> str:
    """An RDN value as the directory compares it: ``\\2C`` and ``\\,`` are both ``,`` (RFC 4514)."""
    out = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            pair = value[i + 1 : i + 3]
            if len(pair) == 2 and all(ch in hexdigits for ch in pair):
                out += bytes.fromhex(pair)
                i += 3
                continue
            out += value[i + 1].encode()
            i += 2
            continue
        out += value[i].encode()
        i += 1
    return out.decode("utf-8", "replace")


def dn_key(dn: str) -> tuple[tuple[str, str], ...] | None:
    """A DN for equality tests: each RDN's type and unescaped value, lower-cased and stripped
    (the attributes we compare are case-insensitive); None if ``dn`` does not parse."""
    try:
        parts = parse_dn(dn)
    except ldap_exc.LDAPException:
        return None
    return tuple(
        (attr.strip().lower(), _unescape_dn_value(value).strip().lower()) for attr, value, _sep in parts
    )


def canonical_dn(dn: str) -> str:
    """A DN as text for pattern matching: ``dn_key`` joined (falls back to ``normalize_dn``)."""
    key = dn_key(dn)
    if key is None:
        return normalize_dn(dn)
    return ",".join(f"{attr}={value}" for attr, value in key)


def _is_bind_identity(bind: str, dn: str, names: set[str]) -> bool:
    """Whether the entry (its DN ``dn``, lower-case login ``names``) is the bind identity.

    ``bind`` is a DN (compared RDN by RDN, escapes resolved), or for AD ``user@realm`` (a UPN;
    AD also accepts sAMAccountName@domain) or ``DOMAIN\\user``: all compared case-insensitively,
    as the directory does.
    """
    who = bind.strip().lower()
    if "=" in who:
        # A DN (checked first: a DN may hold an escaped "\\"; AD login names cannot hold "=").
        mine, theirs = dn_key(bind), dn_key(dn)
        if mine is not None and theirs is not None:
            return mine == theirs
        return normalize_dn(bind) == normalize_dn(dn)
    if "\\" in who:
        return who.split("\\", 1)[1] in names
    if "@" in who:
        return who in names or who.split("@", 1)[0] in names
    return who in names


__all__ = ["LEAVE_GROUP", "LOCK", "REMOVE_SSH_KEY", "LdapRevoker", "canonical_dn", "dn_key", "revoker_for"]
