"""What a revoker declares and acts on: stages, action definitions (with the permissions
they need), the planned target with its immutable identity, the state a revoker reads back,
and the identity check made before every change and undo."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from offboard_audit.core.records import CredentialKind


class Stage(StrEnum):
    DISABLE = "disable"
    DELETE = "delete"
    # Rotating a secret (only with policy.auto_rotate_secrets, only where rotation is configured).
    ROTATE = "rotate"


@dataclass(frozen=True, slots=True)
class ActionDef:
    """What a revoker can do to one kind of credential, declared as data on the revoker class.

    ``permissions`` are the API permissions the action needs (IAM actions, LDAP rights);
    ``config check`` and the plan print them.
    """

    name: str
    credential_kind: CredentialKind
    stage: Stage
    reversible: bool
    permissions: tuple[str, ...]
    description: str


@dataclass(frozen=True, slots=True)
class ActionTarget:
    """Everything a revoker needs to find the object an action changes."""

    source: str
    system: str
    account_id: str
    username: str
    credential_id: str
    credential_kind: CredentialKind
    detail: str = ""
    scope: str = ""
    # Account.uid of the account as it was read when the finding was made ("" if unknown).
    account_uid: str = ""


@dataclass(frozen=True, slots=True)
class ResourceState:
    """The state of one revocable object as read from its system.

    ``data`` holds whatever the connector needs to undo a change (group names, key
    material fingerprints, a policy document); values are strings so that the audit log
    can store them as they are.
    """

    exists: bool
    active: bool
    data: tuple[tuple[str, str], ...] = ()
    # The immutable identity (Account.uid) of the account this state was read from, as the
    # system reports it now; None when the account was not found. The engine compares it with
    # ``ActionTarget.account_uid`` before every change and undo.
    identity: str | None = None

    def value(self, key: str) -> str | None:
        for k, v in self.data:
            if k == key:
                return v
        return None


def identity_mismatch(target: ActionTarget, state: ResourceState) -> str | None:
    """Why ``state`` was not read from the object ``target`` was planned for, or None.

    A missing recorded identity is a mismatch too: acting on a name alone could hit a new
    account that reuses it (delete ``jdoe``, create a new ``jdoe``).
    """
    what = f"{target.system} account {target.username or target.account_id!r}"
    if not target.account_uid:
        return (
            f"no immutable identity was recorded for {what} (finding stored before identity "
            "tracking, or the connector reads none): run the audit again"
        )
    if state.identity is None:
        return f"{what} (identity {target.account_uid}) no longer exists"
    if state.identity != target.account_uid:
        return (
            f"{what} now has identity {state.identity}, not {target.account_uid} as planned: "
            "the name was reused by another account"
        )
    return None


def state_json(state: ResourceState | None) -> dict[str, Any] | None:
    """A read-back state as the audit chain's events carry it (``data`` as an object)."""
    if state is None:
        return None
    return {
        "exists": state.exists,
        "active": state.active,
        "data": dict(state.data),
        "identity": state.identity,
    }
