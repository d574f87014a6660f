"""The ldap revoker's actions: lock the account, leave one group, remove one SSH key; one class
each, carrying its definition, its read, its change and its restore.

The engine runs them (``offboard_audit.engine.steps``): read, identity and no-op checks,
change, one re-read to verify. Each method opens one connection (:meth:`Directory.session`),
which first refuses a DN that does not parse or lies outside the configured bases.

- ``read``: base searches of the account entry (and of the group entry), always with the
  dialect's identity attribute (``entryUUID``, ``objectGUID``, ``nsUniqueId``) into
  ``ResourceState.identity`` (None when no entry has that DN any more).
- ``change``: one base search of the account entry right before the modify, on the same
  connection (:meth:`Directory.same_entry`): LDAP cannot make a modify conditional on an
  entry's identity, so the identity is re-checked there (``TargetChanged``), and the same
  search refuses protected accounts and the bind identity. Then one modify, of the account
  entry (lock, SSH keys) or of the group entry (membership; memberOf follows).
- ``restore``: the same identity re-check, then a modify that puts back only the prior values
  that are missing, so a partly restored object is completed, never duplicated.
- A group membership also checks the group entry's identity (recorded by its read) on the
  write's connection before the modify: a DN can be reused by another group (``LeaveGroup``).

Every read records the values a change removes in ``ResourceState.data`` (the prior state the
engine keeps), so that ``restore`` can put back exactly those.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, suppress
from typing import Any, ClassVar, Protocol

import ldap3

from connectors._shared.actions import GONE, recorded_group_identity
from connectors._shared.actions import define as define_action
from connectors.ldap.dialects import (
    PPOLICY_PERMANENT_LOCK,
    UAC_ACCOUNTDISABLE,
    first,
    ppolicy_locked_for_good,
    values_of,
)
from connectors.ldap.dn import normalize_dn
from connectors.ldap.translate import GROUP_PREFIX, Entry, ssh_credential_id
from offboard_audit.core.actions import ActionDef, ActionTarget, ResourceState
from offboard_audit.core.errors import RevokeError, TargetChanged
from offboard_audit.core.protocols import Restore
from offboard_audit.core.records import CredentialKind

LOCK = "lock_account"
LEAVE_GROUP = "remove_group_membership"
REMOVE_SSH_KEY = "remove_ssh_key"

MEMBER_ATTRS = ("member", "uniqueMember", "memberUid")

Changes = dict[str, list[tuple[Any, list[str]]]]


class Directory(Protocol):
    """What every action gets from :class:`~connectors.ldap.revoker.LdapRevoker`."""

    def session(self, target: ActionTarget) -> AbstractContextManager[Any]:
        """An open connection, after refusing a target DN that does not parse or is outside
        the configured bases; unbound afterwards."""
        ...

    def entry(self, conn: Any, dn: str, attributes: list[str]) -> Entry | None:
        """Base search of ``dn`` for ``attributes`` and the identity attribute (None: no entry)."""
        ...

    def identity(self, entry: Entry) -> str:
        """The entry's immutable identity; ``RevokeError`` when the bind identity cannot read it."""
        ...

    def same_entry(self, conn: Any, target: ActionTarget, protect: bool) -> None:
        """One base search of the account entry: ``TargetChanged`` unless its identity is
        ``target.account_uid``; with ``protect``, ``RevokeError`` for a protected account or
        the bind identity."""
        ...

    def modify(self, conn: Any, dn: str, changes: Changes) -> None: ...


class LdapAction(ABC):
    """The shared steps; a subclass reads its object and says what to modify."""

    name: ClassVar[str]
    kind: ClassVar[CredentialKind]
    description: ClassVar[str]

    @classmethod
    def define(cls, permission: str) -> ActionDef:
        """This action's definition with the dialect's wording of the write it needs."""
        return define_action(cls.name, cls.kind, (permission,), cls.description)

    def __init__(self, directory: Directory, definition: ActionDef) -> None:
        self.directory = directory
        self.definition = definition

    def read(self, target: ActionTarget) -> ResourceState:
        with self.directory.session(target) as conn:
            return self.read_with(conn, target)

    def change(self, target: ActionTarget, before: ResourceState) -> None:
        with self.directory.session(target) as conn:
            self.directory.same_entry(conn, target, protect=True)
            self.revoke(conn, target, before)

    @property
    def restore(self) -> Restore | None:
        return self._restore

    def _restore(self, target: ActionTarget, current: ResourceState, prior: ResourceState) -> None:
        with self.directory.session(target) as conn:
            self.directory.same_entry(conn, target, protect=False)
            self.unrevoke(conn, target, current, prior)

    def restored(self, state: ResourceState, prior: ResourceState) -> bool:
        """Every value the change removed is back (a lock compares ``active`` only)."""
        return not prior.active or set(state.data) >= set(prior.data)

    @abstractmethod
    def read_with(self, conn: Any, target: ActionTarget) -> ResourceState: ...

    @abstractmethod
    def revoke(self, conn: Any, target: ActionTarget, before: ResourceState) -> None: ...

    @abstractmethod
    def unrevoke(
        self, conn: Any, target: ActionTarget, current: ResourceState, prior: ResourceState
    ) -> None: ...


class LockAccount(LdapAction):
    """Lock/disable the account through the dialect's ``attribute``."""

    name = LOCK
    kind = CredentialKind.ACCOUNT
    description = "Lock/disable the directory account so that binds fail; undo unlocks it."
    attribute: ClassVar[str]

    def read_with(self, conn: Any, target: ActionTarget) -> ResourceState:
        entry = self.directory.entry(conn, target.account_id, [self.attribute])
        if entry is None:
            return GONE
        value = first(entry.raw, self.attribute)
        return ResourceState(
            exists=True,
            active=self.unlocked(value, target),
            data=((self.attribute, value or ""),),
            identity=self.directory.identity(entry),
        )

    def revoke(self, conn: Any, target: ActionTarget, before: ResourceState) -> None:
        value = self.locked_value(before.value(self.attribute) or "")
        self.directory.modify(conn, target.account_id, {self.attribute: [(ldap3.MODIFY_REPLACE, [value])]})

    def unrevoke(self, conn: Any, target: ActionTarget, current: ResourceState, prior: ResourceState) -> None:
        value = self.unlocked_value(current.value(self.attribute) or "", prior.value(self.attribute) or "")
        self.directory.modify(
            conn, target.account_id, {self.attribute: [(ldap3.MODIFY_REPLACE, [value] if value else [])]}
        )

    def restored(self, state: ResourceState, prior: ResourceState) -> bool:
        return True

    @abstractmethod
    def unlocked(self, value: str | None, target: ActionTarget) -> bool: ...

    @abstractmethod
    def locked_value(self, before: str) -> str: ...

    def unlocked_value(self, current: str, prior: str) -> str:
        """The value to write back ("" removes the attribute): by default the prior one."""
        return prior


class OpenLDAPLock(LockAccount):
    """OpenLDAP with the ppolicy overlay: a permanent ``pwdAccountLockedTime`` locks the account."""

    attribute = "pwdAccountLockedTime"

    def unlocked(self, value: str | None, target: ActionTarget) -> bool:
        # A lockout at a real time may expire (pwdLockoutDuration): it is replaced by the
        # permanent lock, and undo writes the old time back.
        return not ppolicy_locked_for_good(value)

    def locked_value(self, before: str) -> str:
        return PPOLICY_PERMANENT_LOCK


class DS389Lock(LockAccount):
    """389 Directory Server: ``nsAccountLock: true`` (what ``dsidm account lock`` does)."""

    attribute = "nsAccountLock"

    def unlocked(self, value: str | None, target: ActionTarget) -> bool:
        return value is None or value.strip().lower() != "true"

    def locked_value(self, before: str) -> str:
        return "true"


class ADLock(LockAccount):
    """Active Directory (and Samba AD): set ACCOUNTDISABLE (0x2) in ``userAccountControl``."""

    attribute = "userAccountControl"

    def unlocked(self, value: str | None, target: ActionTarget) -> bool:
        if value is None:
            raise RevokeError(f"{target.account_id} has no userAccountControl: not an AD user, refusing")
        return not (int(value) & UAC_ACCOUNTDISABLE)

    def locked_value(self, before: str) -> str:
        return str(int(before or "0") | UAC_ACCOUNTDISABLE)

    def unlocked_value(self, current: str, prior: str) -> str:
        # Only the disable bit goes back to its prior value: other flags changed since stay.
        now, was = int(current or "0"), int(prior or "0")
        return str((now & ~UAC_ACCOUNTDISABLE) | (was & UAC_ACCOUNTDISABLE))


class LeaveGroup(LdapAction):
    """Remove the account's values (``member``, ``uniqueMember``, ``memberUid``) from one group.

    A group DN can be reused like an account's (delete ``cn=admins``, add a new ``cn=admins``
    with other rights), so the read records the group's own identity (``group_identity``: the
    dialect's ``entryUUID``/``objectGUID``/``nsUniqueId``), and the group is read again on the
    write's connection right before the modify: ``TargetChanged`` when the DN now holds another
    group. An undo without a recorded group identity (an action applied by an earlier version)
    refuses rather than add the member to whatever group has the DN now."""

    name = LEAVE_GROUP
    kind = CredentialKind.GROUP_MEMBERSHIP
    description = "Remove the account from one group; undo adds it back (to the same group, by its identity)."

    def read_with(self, conn: Any, target: ActionTarget) -> ResourceState:
        group_dn = _group_dn(target)
        user = self.directory.entry(conn, target.account_id, ["uid"])
        identity = self.directory.identity(user) if user is not None else None
        group = self.directory.entry(conn, group_dn, list(MEMBER_ATTRS))
        if group is None:
            return ResourceState(
                exists=False, active=False, data=(("group_dn", group_dn),), identity=identity
            )
        me = normalize_dn(target.account_id)
        uid = first(user.raw, "uid") if user is not None else None
        members: list[tuple[str, str]] = []
        for attr in ("member", "uniqueMember"):
            members.extend((attr, v) for v in values_of(group.raw, attr) if normalize_dn(v) == me)
        if uid:
            members.extend(
                ("memberUid", v) for v in values_of(group.raw, "memberUid") if v.lower() == uid.lower()
            )
        data = [("group_dn", group.dn)]
        # No readable identity: the removal still goes ahead (it only narrows access), but its
        # undo will refuse to add the member back by DN alone.
        with suppress(RevokeError):
            data.append(("group_identity", self.directory.identity(group)))
        data.extend(members)
        return ResourceState(exists=True, active=bool(members), data=tuple(data), identity=identity)

    def revoke(self, conn: Any, target: ActionTarget, before: ResourceState) -> None:
        group_dn = before.value("group_dn") or _group_dn(target)
        recorded = before.value("group_identity")
        if recorded is not None:
            self.same_group(conn, group_dn, recorded)
        changes: Changes = {}
        for attr in MEMBER_ATTRS:
            values = [v for k, v in before.data if k == attr]
            if values:
                changes[attr] = [(ldap3.MODIFY_DELETE, values)]
        self.directory.modify(conn, group_dn, changes)

    def unrevoke(self, conn: Any, target: ActionTarget, current: ResourceState, prior: ResourceState) -> None:
        group_dn = prior.value("group_dn") or _group_dn(target)
        recorded = recorded_group_identity(prior, "group_identity", "identity", group_dn)
        self.same_group(conn, group_dn, recorded)
        present = set(current.data)
        changes: Changes = {}
        for attr in MEMBER_ATTRS:
            values = [v for k, v in prior.data if k == attr and (k, v) not in present]
            if values:
                changes[attr] = [(ldap3.MODIFY_ADD, values)]
        if changes:
            self.directory.modify(conn, group_dn, changes)

    def same_group(self, conn: Any, group_dn: str, recorded: str) -> None:
        """One base search of the group on the write's connection: ``TargetChanged`` unless it
        is (still) the group with identity ``recorded``."""
        group = self.directory.entry(conn, group_dn, [])
        if group is None:
            raise TargetChanged(f"group {group_dn} (identity {recorded}) no longer exists")
        now = self.directory.identity(group)
        if now != recorded:
            raise TargetChanged(
                f"group {group_dn} now has identity {now}, not {recorded} as recorded: the group "
                "was deleted and its DN reused by another group"
            )


class RemoveSshKey(LdapAction):
    """Remove the ``sshPublicKey`` values whose fingerprint is the credential id."""

    name = REMOVE_SSH_KEY
    kind = CredentialKind.SSH_KEY
    description = "Remove one sshPublicKey value (by fingerprint); undo re-adds the same key."

    def read_with(self, conn: Any, target: ActionTarget) -> ResourceState:
        entry = self.directory.entry(conn, target.account_id, ["sshPublicKey"])
        if entry is None:
            return GONE
        keys = [
            k for k in values_of(entry.raw, "sshPublicKey") if ssh_credential_id(k) == target.credential_id
        ]
        return ResourceState(
            exists=bool(keys),
            active=bool(keys),
            data=tuple(("sshPublicKey", k) for k in keys),
            identity=self.directory.identity(entry),
        )

    def revoke(self, conn: Any, target: ActionTarget, before: ResourceState) -> None:
        keys = [v for k, v in before.data if k == "sshPublicKey"]
        self.directory.modify(conn, target.account_id, {"sshPublicKey": [(ldap3.MODIFY_DELETE, keys)]})

    def unrevoke(self, conn: Any, target: ActionTarget, current: ResourceState, prior: ResourceState) -> None:
        present = {v for _, v in current.data}
        keys = [v for k, v in prior.data if k == "sshPublicKey" and v not in present]
        if keys:
            self.directory.modify(conn, target.account_id, {"sshPublicKey": [(ldap3.MODIFY_ADD, keys)]})


def _group_dn(target: ActionTarget) -> str:
    if target.credential_id.startswith(GROUP_PREFIX):
        return target.credential_id[len(GROUP_PREFIX) :]
    if target.detail:
        return target.detail
    raise RevokeError(f"no group DN in target {target.credential_id!r}")
