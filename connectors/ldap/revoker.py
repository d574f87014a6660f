"""Disable LDAP/AD credentials reversibly: lock the account, leave groups, drop SSH keys.

API calls: base-scope searches to read the state before and after each change, and one
LDAP modify per change on the account entry (lock, SSH keys) or on the group entry
(membership; the directory's memberOf follows). Every change records the prior values in
``ResourceState.data`` so that ``undo`` can put them back.

Identity: every read of a state also reads the account entry's immutable identity
(``entryUUID``, AD ``objectGUID``, 389-DS ``nsUniqueId``; asked for by name)
into ``ResourceState.identity`` (None when no entry has that DN any more). ``apply`` and
``undo`` re-read it right before their modify and raise ``TargetChanged`` when it is not the
``ActionTarget.account_uid`` the action was planned for (an entry deleted and re-added under
the same DN): nothing is modified. An entry whose identity the bind identity cannot read is
refused (RevokeError), never acted on by name alone.

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
from collections.abc import Mapping
from string import hexdigits
from types import MappingProxyType
from typing import Any, ClassVar

import ldap3
from ldap3.core import exceptions as ldap_exc
from ldap3.utils.dn import parse_dn

from connectors.ldap.dialects import PPOLICY_PERMANENT_LOCK, UAC_ACCOUNTDISABLE, first, values_of
from connectors.ldap.settings import Connector, LdapSettings
from connectors.ldap.source import (
    GROUP_PREFIX,
    Entry,
    ScopeReadError,
    close,
    dn_under,
    normalize_dn,
    read_entry,
    ssh_credential_id,
)
from offboard_audit.core.errors import RevokeError, TargetChanged
from offboard_audit.core.records import (
    ActionDef,
    ActionResult,
    ActionTarget,
    CredentialKind,
    ResourceState,
    Stage,
    identity_mismatch,
)

LOCK = "lock_account"
LEAVE_GROUP = "remove_group_membership"
REMOVE_SSH_KEY = "remove_ssh_key"

_MEMBER_ATTRS = ("member", "uniqueMember", "memberUid")
_AD_BUILTIN = {"administrator", "krbtgt", "guest"}


def _actions(lock_perm: str, member_perm: str) -> Mapping[str, ActionDef]:
    return MappingProxyType(
        {
            LOCK: ActionDef(
                name=LOCK,
                credential_kind=CredentialKind.ACCOUNT,
                stage=Stage.DISABLE,
                reversible=True,
                permissions=(lock_perm,),
                description="Lock/disable the directory account so that binds fail; undo unlocks it.",
            ),
            LEAVE_GROUP: ActionDef(
                name=LEAVE_GROUP,
                credential_kind=CredentialKind.GROUP_MEMBERSHIP,
                stage=Stage.DISABLE,
                reversible=True,
                permissions=(member_perm,),
                description="Remove the account from one group; undo adds it back.",
            ),
            REMOVE_SSH_KEY: ActionDef(
                name=REMOVE_SSH_KEY,
                credential_kind=CredentialKind.SSH_KEY,
                stage=Stage.DISABLE,
                reversible=True,
                permissions=("write sshPublicKey on the account entry",),
                description="Remove one sshPublicKey value (by fingerprint); undo re-adds the same key.",
            ),
        }
    )


class LdapRevoker:
    """Base revoker; :func:`revoker_for` picks the dialect's subclass.

    The union of the dialects' permissions is declared here (for the plugin and ``config check``).
    """

    actions: ClassVar[Mapping[str, ActionDef]] = _actions(
        "write pwdAccountLockedTime (openldap) / userAccountControl (ad) / nsAccountLock (389ds) "
        "on the account entry",
        "write member, uniqueMember, memberUid on the group entry",
    )

    def __init__(self, settings: LdapSettings, connector: Connector) -> None:
        self.settings = settings
        self._connect = connector

    # --- protocol -------------------------------------------------------------------------

    def read_state(self, action: str, target: ActionTarget) -> ResourceState:
        self._check_action(action, target)
        conn = self._open()
        try:
            return self._read(conn, action, target)
        finally:
            close(conn)

    def apply(self, action: str, target: ActionTarget) -> ActionResult:
        self._check_action(action, target)
        conn = self._open()
        try:
            before = self._read(conn, action, target)
            _same_target(target, before)
            self._refuse_protected(conn, target)
            if not before.exists or not before.active:
                return ActionResult(
                    False, before, before, verified=True, message="already in the target state"
                )
            self._change(conn, action, target, before)
            after = self._read(conn, action, target)
            verified = not after.active
            return ActionResult(
                True, before, after, verified, message="" if verified else "change not visible on re-read"
            )
        finally:
            close(conn)

    def undo(self, action: str, target: ActionTarget, prior: ResourceState) -> ActionResult:
        self._check_action(action, target)
        conn = self._open()
        try:
            before = self._read(conn, action, target)
            _same_target(target, before)
            if not prior.exists:
                return ActionResult(False, before, before, verified=True, message="nothing existed before")
            if before.active == prior.active and self._restored(action, before, prior):
                return ActionResult(False, before, before, verified=True, message="already as before")
            self._restore(conn, action, target, before, prior)
            after = self._read(conn, action, target)
            verified = after.active == prior.active and self._restored(action, after, prior)
            return ActionResult(True, before, after, verified, message="" if verified else "undo not visible")
        finally:
            close(conn)

    # --- reads ----------------------------------------------------------------------------

    def _read(self, conn: Any, action: str, target: ActionTarget) -> ResourceState:
        try:
            if action == LOCK:
                return self._read_lock(conn, target.account_id)
            if action == LEAVE_GROUP:
                return self._read_group(conn, target)
            return self._read_ssh(conn, target)
        except (ldap_exc.LDAPException, ScopeReadError) as exc:
            # ScopeReadError: e.g. the entry now sits under a referral (the URL is in the message).
            raise RevokeError(f"{self.settings.name}: read of {target.account_id} failed: {exc}") from exc

    def _entry(self, conn: Any, dn: str, attributes: list[str]) -> Entry | None:
        """The account entry by DN with ``attributes`` and the dialect's identity attribute."""
        return read_entry(conn, dn, [*attributes, self.settings.dialect.identity_attribute])

    def _identity(self, entry: Entry) -> str:
        """The entry's immutable identity, as the source reads it into ``Account.uid``."""
        uid = self.settings.dialect.identity(entry.raw)
        if uid is None:
            attr = self.settings.dialect.identity_attribute
            raise RevokeError(
                f"{self.settings.name}: {entry.dn} has no readable {attr}: grant the bind identity "
                f"read access to {attr}; refusing to act on a DN alone (it may have been reused)"
            )
        return uid

    def _read_lock(self, conn: Any, dn: str) -> ResourceState:
        raise NotImplementedError

    def _read_group(self, conn: Any, target: ActionTarget) -> ResourceState:
        group_dn = _group_dn(target)
        user = self._entry(conn, target.account_id, ["uid"])
        identity = self._identity(user) if user is not None else None
        group = read_entry(conn, group_dn, list(_MEMBER_ATTRS))
        if group is None:
            return ResourceState(
                exists=False, active=False, data=(("group_dn", group_dn),), identity=identity
            )
        me = normalize_dn(target.account_id)
        uid = first(user.raw, "uid") if user is not None else None
        data: list[tuple[str, str]] = [("group_dn", group.dn)]
        for attr in ("member", "uniqueMember"):
            data.extend((attr, v) for v in values_of(group.raw, attr) if normalize_dn(v) == me)
        if uid:
            data.extend(
                ("memberUid", v) for v in values_of(group.raw, "memberUid") if v.lower() == uid.lower()
            )
        active = len(data) > 1
        return ResourceState(exists=True, active=active, data=tuple(data), identity=identity)

    def _read_ssh(self, conn: Any, target: ActionTarget) -> ResourceState:
        entry = self._entry(conn, target.account_id, ["sshPublicKey"])
        if entry is None:
            return ResourceState(exists=False, active=False)
        keys = [
            k for k in values_of(entry.raw, "sshPublicKey") if ssh_credential_id(k) == target.credential_id
        ]
        return ResourceState(
            exists=bool(keys),
            active=bool(keys),
            data=tuple(("sshPublicKey", k) for k in keys),
            identity=self._identity(entry),
        )

    # --- writes ---------------------------------------------------------------------------

    def _change(self, conn: Any, action: str, target: ActionTarget, before: ResourceState) -> None:
        if action == LOCK:
            self._modify(conn, target.account_id, self._lock_changes(before))
        elif action == LEAVE_GROUP:
            group_dn = before.value("group_dn") or _group_dn(target)
            changes: dict[str, list[tuple[Any, list[str]]]] = {}
            for attr in _MEMBER_ATTRS:
                values = [v for k, v in before.data if k == attr]
                if values:
                    changes[attr] = [(ldap3.MODIFY_DELETE, values)]
            self._modify(conn, group_dn, changes)
        else:
            keys = [v for k, v in before.data if k == "sshPublicKey"]
            self._modify(conn, target.account_id, {"sshPublicKey": [(ldap3.MODIFY_DELETE, keys)]})

    def _restore(
        self, conn: Any, action: str, target: ActionTarget, current: ResourceState, prior: ResourceState
    ) -> None:
        if action == LOCK:
            self._modify(conn, target.account_id, self._unlock_changes(current, prior))
        elif action == LEAVE_GROUP:
            group_dn = prior.value("group_dn") or _group_dn(target)
            present = set(current.data)
            changes: dict[str, list[tuple[Any, list[str]]]] = {}
            for attr in _MEMBER_ATTRS:
                values = [v for k, v in prior.data if k == attr and (k, v) not in present]
                if values:
                    changes[attr] = [(ldap3.MODIFY_ADD, values)]
            if changes:
                self._modify(conn, group_dn, changes)
        else:
            present_keys = {v for _, v in current.data}
            keys = [v for k, v in prior.data if k == "sshPublicKey" and v not in present_keys]
            if keys:
                self._modify(conn, target.account_id, {"sshPublicKey": [(ldap3.MODIFY_ADD, keys)]})

    def _lock_changes(self, before: ResourceState) -> dict[str, list[tuple[Any, list[str]]]]:
        raise NotImplementedError

    def _unlock_changes(
        self, current: ResourceState, prior: ResourceState
    ) -> dict[str, list[tuple[Any, list[str]]]]:
        raise NotImplementedError

    def _restored(self, action: str, state: ResourceState, prior: ResourceState) -> bool:
        """Whether ``state`` holds the prior values (membership values, keys); locks compare ``active``."""
        if action == LOCK or not prior.active:
            return True
        return set(state.data) >= set(prior.data)

    def _modify(self, conn: Any, dn: str, changes: Mapping[str, Any]) -> None:
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

    def _check_action(self, action: str, target: ActionTarget) -> None:
        if action not in self.actions:
            raise RevokeError(f"unknown ldap action {action!r} (known: {', '.join(self.actions)})")
        try:
            parse_dn(target.account_id)
        except ldap_exc.LDAPException as exc:
            raise RevokeError(f"not a DN: {target.account_id!r}") from exc
        if not any(dn_under(target.account_id, b) for b in self.settings.base_dns):
            raise RevokeError(f"refusing {target.account_id}: outside the configured base DNs")

    # Login names read from the live entry for the protected checks, and what else they need.
    _login_attributes: ClassVar[tuple[str, ...]] = ("uid",)
    _critical_attributes: ClassVar[tuple[str, ...]] = ()

    def _refuse_protected(self, conn: Any, target: ActionTarget) -> None:
        """Refuse the bind identity and ``protected_dns``, comparing names case-insensitively.

        Reads the entry (base search) for its login names: a pattern without ``=`` and a bind
        identity that is not a DN (AD ``user@realm``, ``DOMAIN\\user``) are compared with them.
        """
        # Both spellings: parsed (escapes resolved) and split at commas (as patterns are).
        dn_forms = {canonical_dn(target.account_id), normalize_dn(target.account_id)}
        try:
            entry = read_entry(conn, target.account_id, [*self._login_attributes, *self._critical_attributes])
        except (ldap_exc.LDAPException, ScopeReadError) as exc:
            raise RevokeError(f"{self.settings.name}: read of {target.account_id} failed: {exc}") from exc
        names = (
            {v.strip().lower() for a in self._login_attributes for v in values_of(entry.raw, a)}
            if entry is not None
            else set()
        )
        names.discard("")
        if entry is not None:
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
    """OpenLDAP with the ppolicy overlay: a permanent ``pwdAccountLockedTime`` locks the account."""

    actions = _actions(
        "write pwdAccountLockedTime on the account entry",
        "write member, uniqueMember, memberUid on the group entry",
    )

    def _read_lock(self, conn: Any, dn: str) -> ResourceState:
        entry = self._entry(conn, dn, ["pwdAccountLockedTime"])
        if entry is None:
            return ResourceState(exists=False, active=False)
        locked = first(entry.raw, "pwdAccountLockedTime")
        return ResourceState(
            exists=True,
            active=locked is None,
            data=(("pwdAccountLockedTime", locked or ""),),
            identity=self._identity(entry),
        )

    def _lock_changes(self, before: ResourceState) -> dict[str, list[tuple[Any, list[str]]]]:
        return {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, [PPOLICY_PERMANENT_LOCK])]}

    def _unlock_changes(
        self, current: ResourceState, prior: ResourceState
    ) -> dict[str, list[tuple[Any, list[str]]]]:
        old = prior.value("pwdAccountLockedTime") or ""
        return {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, [old] if old else [])]}


class DS389Revoker(LdapRevoker):
    """389 Directory Server: ``nsAccountLock: true`` (what ``dsidm account lock`` does)."""

    actions = _actions(
        "write nsAccountLock on the account entry",
        "write member, uniqueMember, memberUid on the group entry",
    )

    def _read_lock(self, conn: Any, dn: str) -> ResourceState:
        entry = self._entry(conn, dn, ["nsAccountLock"])
        if entry is None:
            return ResourceState(exists=False, active=False)
        lock = first(entry.raw, "nsAccountLock")
        active = lock is None or lock.strip().lower() != "true"
        return ResourceState(
            exists=True, active=active, data=(("nsAccountLock", lock or ""),), identity=self._identity(entry)
        )

    def _lock_changes(self, before: ResourceState) -> dict[str, list[tuple[Any, list[str]]]]:
        return {"nsAccountLock": [(ldap3.MODIFY_REPLACE, ["true"])]}

    def _unlock_changes(
        self, current: ResourceState, prior: ResourceState
    ) -> dict[str, list[tuple[Any, list[str]]]]:
        old = prior.value("nsAccountLock") or ""
        return {"nsAccountLock": [(ldap3.MODIFY_REPLACE, [old] if old else [])]}


class ADRevoker(LdapRevoker):
    """Active Directory (and Samba AD): set ACCOUNTDISABLE (0x2) in ``userAccountControl``."""

    actions = _actions(
        "Write Property userAccountControl on the user object",
        "Write Property member on the group object",
    )
    _login_attributes = ("sAMAccountName", "userPrincipalName")
    _critical_attributes = ("isCriticalSystemObject",)

    def _read_lock(self, conn: Any, dn: str) -> ResourceState:
        entry = self._entry(conn, dn, ["userAccountControl"])
        if entry is None:
            return ResourceState(exists=False, active=False)
        uac = first(entry.raw, "userAccountControl")
        if uac is None:
            raise RevokeError(f"{dn} has no userAccountControl: not an AD user, refusing")
        active = not (int(uac) & UAC_ACCOUNTDISABLE)
        return ResourceState(
            exists=True, active=active, data=(("userAccountControl", uac),), identity=self._identity(entry)
        )

    def _lock_changes(self, before: ResourceState) -> dict[str, list[tuple[Any, list[str]]]]:
        uac = int(before.value("userAccountControl") or "0")
        return {"userAccountControl": [(ldap3.MODIFY_REPLACE, [str(uac | UAC_ACCOUNTDISABLE)])]}

    def _unlock_changes(
        self, current: ResourceState, prior: ResourceState
    ) -> dict[str, list[tuple[Any, list[str]]]]:
        # Only the disable bit goes back to its prior value: other flags changed since stay.
        now = int(current.value("userAccountControl") or "0")
        was = int(prior.value("userAccountControl") or "0")
        restored = (now & ~UAC_ACCOUNTDISABLE) | (was & UAC_ACCOUNTDISABLE)
        return {"userAccountControl": [(ldap3.MODIFY_REPLACE, [str(restored)])]}

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


def _same_target(target: ActionTarget, state: ResourceState) -> None:
    """Raise TargetChanged unless ``state`` was read from the entry ``target`` was planned for."""
    mismatch = identity_mismatch(target, state)
    if mismatch is not None:
        raise TargetChanged(mismatch)


def _group_dn(target: ActionTarget) -> str:
    if target.credential_id.startswith(GROUP_PREFIX):
        return target.credential_id[len(GROUP_PREFIX) :]
    if target.detail:
        return target.detail
    raise RevokeError(f"no group DN in target {target.credential_id!r}")
