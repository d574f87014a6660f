"""The aws_iam revoker's actions: one class per action, carrying its definition (with the IAM
permissions it needs), its read, its change and its restore (None when irreversible).

The engine runs them (``offboard_audit.engine.steps``): read, identity and no-op checks,
change, one re-read to verify. The classes here only talk to IAM:

- ``read``: ``iam:GetUser`` (``ResourceState.identity`` is the user's ``UserId``; None when the
  user is gone, and then nothing else is read), then the action's read call.
- ``change`` / ``restore``: one more ``iam:GetUser`` and the write. IAM has no conditional
  writes, so the identity is re-checked immediately before every write (``TargetChanged`` when
  the name now belongs to another user); a user re-created in the instant between that check
  and the write would show on the engine's re-read, which then reports the change not verified.

Calls per applied action, with the engine's two reads: 3 GetUser + 2 object reads + 1 write
(a group membership adds one ``iam:GetGroup`` before its write: group names are reused too).
Each class names its IAM calls once (``calls``): the permissions are derived from them.
Console passwords and MFA devices cannot be switched off reversibly in IAM (the login profile
is deleted, the MFA device deactivated): those actions have no ``restore``.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import ClassVar, Protocol

from connectors._shared.actions import GONE, define, recorded_group_identity
from connectors.aws_iam.clients import Client, items
from connectors.aws_iam.errors import unless_missing
from connectors.aws_iam.translate import DENY_POLICY_NAME
from offboard_audit.core.actions import ActionDef, ActionTarget, ResourceState
from offboard_audit.core.errors import RevokeError, TargetChanged
from offboard_audit.core.protocols import Restore
from offboard_audit.core.records import CredentialKind

DEACTIVATE_ACCESS_KEY = "deactivate_access_key"
DEACTIVATE_SSH_KEY = "deactivate_ssh_key"
DEACTIVATE_SIGNING_CERTIFICATE = "deactivate_signing_certificate"
DEACTIVATE_SERVICE_CREDENTIAL = "deactivate_service_credential"
REMOVE_GROUP_MEMBERSHIP = "remove_group_membership"
DELETE_LOGIN_PROFILE = "delete_login_profile"
DEACTIVATE_MFA_DEVICE = "deactivate_mfa_device"
DENY_ISSUED_SESSIONS = "deny_issued_sessions"


class IamAccess(Protocol):
    """What every action gets from :class:`~connectors.aws_iam.revoker.AwsIamRevoker`."""

    def client(self, target: ActionTarget) -> Client:
        """The IAM client of the target's account; refuses root, protected users and report
        slots before any call (``RevokeError``)."""
        ...

    def user_id(self, iam: Client, target: ActionTarget) -> str | None:
        """``iam:GetUser``: the user's ``UserId`` now, or None when there is no such user."""
        ...

    def same_user(self, iam: Client, target: ActionTarget) -> None:
        """``iam:GetUser`` again; raise ``TargetChanged`` unless it is the planned ``UserId``."""
        ...

    def calling(self, api: str, target: ActionTarget) -> AbstractContextManager[None]:
        """Turn a failure of IAM call ``api`` into a ``RevokeError`` that names it."""
        ...

    def now(self) -> datetime: ...


def iam_action(
    name: str, kind: CredentialKind, calls: Iterable[str | None], description: str, reversible: bool = True
) -> ActionDef:
    """An ActionDef whose permissions are iam:GetUser plus the IAM ``calls`` the action makes."""
    needed = dict.fromkeys(["iam:GetUser", *(f"iam:{c}" for c in calls if c)])
    return define(name, kind, tuple(needed), description, reversible=reversible)


class IamAction(ABC):
    """Read = GetUser + ``read_object``; change = GetUser + ``revoke``; restore = GetUser +
    ``unrevoke`` (only for an action whose definition says it is reversible)."""

    definition: ClassVar[ActionDef]
    # The IAM calls that read, revoke and restore the object (errors and permissions name them).
    calls: ClassVar[tuple[str, str, str | None]]
    # Restoring re-creates the object (a group membership) instead of switching it back on.
    recreates: ClassVar[bool] = False

    def __init__(self, access: IamAccess) -> None:
        self.access = access

    def read(self, target: ActionTarget) -> ResourceState:
        iam = self.access.client(target)
        identity = self.access.user_id(iam, target)
        if identity is None:
            return GONE
        with self.access.calling(self.calls[0], target):
            state = self.read_object(iam, target)
        return replace(state, identity=identity)

    def change(self, target: ActionTarget, before: ResourceState) -> None:
        iam = self.access.client(target)
        self.access.same_user(iam, target)
        with self.access.calling(self.calls[1], target):
            self.revoke(iam, target, before)

    @property
    def restore(self) -> Restore | None:
        return self._restore if self.definition.reversible else None

    def _restore(self, target: ActionTarget, current: ResourceState, prior: ResourceState) -> None:
        if not current.exists and not self.recreates:
            raise RevokeError(f"cannot undo {self.definition.name}: {target.credential_id} no longer exists")
        iam = self.access.client(target)
        self.access.same_user(iam, target)
        with self.access.calling(self.calls[2] or self.calls[1], target):
            self.unrevoke(iam, target, prior)

    def restored(self, state: ResourceState, prior: ResourceState) -> bool:
        return True

    @abstractmethod
    def read_object(self, iam: Client, target: ActionTarget) -> ResourceState: ...

    @abstractmethod
    def revoke(self, iam: Client, target: ActionTarget, before: ResourceState) -> None: ...

    def unrevoke(self, iam: Client, target: ActionTarget, prior: ResourceState) -> None:
        raise RevokeError(f"{self.definition.name} is irreversible")


@dataclass(frozen=True)
class StatusCredential:
    """A credential type IAM switches between ``Active`` and ``Inactive``: listed per user by
    ``iam:List<api>s`` (the entries under ``result_key``, each id under ``id_key``) and switched
    by ``iam:Update<api>``. Its action sets it to Inactive; undo sets it to Active again."""

    action: str
    kind: CredentialKind
    noun: str
    api: str
    result_key: str
    id_key: str

    @property
    def calls(self) -> tuple[str, str, str]:
        return (f"List{self.api}s", f"Update{self.api}", f"Update{self.api}")


def boto_method(api: str) -> str:
    """boto3's method name for an IAM API call (``ListSSHPublicKeys`` -> ``list_ssh_public_keys``)."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", api).lower()


class StatusAction(IamAction):
    """A :class:`StatusCredential`, found by id in its list."""

    status: ClassVar[StatusCredential]

    def read_object(self, iam: Client, target: ActionTarget) -> ResourceState:
        user, status = target.username, self.status
        for item in items(getattr(iam, boto_method(self.calls[0])), status.result_key, UserName=user):
            if item[status.id_key] == target.credential_id:
                state = str(item["Status"])
                return ResourceState(
                    exists=True, active=state == "Active", data=(("user", user), ("status", state))
                )
        return GONE

    def revoke(self, iam: Client, target: ActionTarget, before: ResourceState) -> None:
        self.set_status(iam, target, "Inactive")

    def unrevoke(self, iam: Client, target: ActionTarget, prior: ResourceState) -> None:
        self.set_status(iam, target, "Active")

    def set_status(self, iam: Client, target: ActionTarget, status: str) -> None:
        update = getattr(iam, boto_method(self.calls[1]))
        update(UserName=target.username, Status=status, **{self.status.id_key: target.credential_id})


def status_action(credential: StatusCredential) -> type[StatusAction]:
    """The action class (``DeactivateAccessKey``, ...) of one :class:`StatusCredential`."""

    class Action(StatusAction):
        status = credential
        calls = credential.calls
        definition = iam_action(
            credential.action,
            credential.kind,
            calls,
            f"Set the {credential.noun} to Inactive (undo: Active).",
        )

    Action.__name__ = Action.__qualname__ = "".join(word.title() for word in credential.action.split("_"))
    return Action


DeactivateAccessKey = status_action(
    StatusCredential(
        DEACTIVATE_ACCESS_KEY,
        CredentialKind.ACCESS_KEY,
        "access key",
        "AccessKey",
        result_key="AccessKeyMetadata",
        id_key="AccessKeyId",
    )
)
DeactivateSshKey = status_action(
    StatusCredential(
        DEACTIVATE_SSH_KEY,
        CredentialKind.SSH_KEY,
        "SSH public key",
        "SSHPublicKey",
        result_key="SSHPublicKeys",
        id_key="SSHPublicKeyId",
    )
)
DeactivateSigningCertificate = status_action(
    StatusCredential(
        DEACTIVATE_SIGNING_CERTIFICATE,
        CredentialKind.SIGNING_CERTIFICATE,
        "signing certificate",
        "SigningCertificate",
        result_key="Certificates",
        id_key="CertificateId",
    )
)
DeactivateServiceCredential = status_action(
    StatusCredential(
        DEACTIVATE_SERVICE_CREDENTIAL,
        CredentialKind.SERVICE_CREDENTIAL,
        "service-specific credential",
        "ServiceSpecificCredential",
        result_key="ServiceSpecificCredentials",
        id_key="ServiceSpecificCredentialId",
    )
)


class RemoveGroupMembership(IamAction):
    """Group names can be reused like user names (delete ``admins``, create a new ``admins`` with
    other policies), so the membership is tied to the group's immutable ``GroupId``: the read
    records it (``group_id``), and ``iam:GetGroup`` re-reads it right before the removal and
    before the undo re-adds the user, which refuse (``TargetChanged``) when the name now holds
    another group. An action recorded before group ids were kept has no ``group_id``: its undo
    refuses rather than re-add the user to whatever group has the name now."""

    calls = ("ListGroupsForUser", "RemoveUserFromGroup", "AddUserToGroup")
    definition = iam_action(
        REMOVE_GROUP_MEMBERSHIP,
        CredentialKind.GROUP_MEMBERSHIP,
        (*calls, "GetGroup"),
        "Remove the user from the group (undo: add it back, only to the same group: its GroupId "
        "is checked first).",
    )
    recreates = True

    def read_object(self, iam: Client, target: ActionTarget) -> ResourceState:
        user, group = target.username, group_name(target)
        ids = {
            g["GroupName"]: str(g["GroupId"])
            for g in items(iam.list_groups_for_user, "Groups", UserName=user)
        }
        data = [("user", user), ("group", group)]
        if group in ids:
            data.append(("group_id", ids[group]))
        return ResourceState(exists=group in ids, active=group in ids, data=tuple(data))

    def revoke(self, iam: Client, target: ActionTarget, before: ResourceState) -> None:
        group = group_name(target)
        expected = before.value("group_id")
        if expected is not None:
            self.same_group(iam, target, group, expected)
        iam.remove_user_from_group(UserName=target.username, GroupName=group)

    def unrevoke(self, iam: Client, target: ActionTarget, prior: ResourceState) -> None:
        # The group remembered at apply time, not whatever the target says now.
        group = prior.value("group") or group_name(target)
        expected = recorded_group_identity(prior, "group_id", "GroupId", repr(group))
        self.same_group(iam, target, group, expected)
        iam.add_user_to_group(UserName=target.username, GroupName=group)

    def same_group(self, iam: Client, target: ActionTarget, group: str, expected: str) -> None:
        """``iam:GetGroup``: raise ``TargetChanged`` unless ``group`` is (still) the group with
        GroupId ``expected``."""
        with self.access.calling("GetGroup", target):
            response = unless_missing(iam.get_group, GroupName=group, MaxItems=1)
        if response is None:
            raise TargetChanged(f"IAM group {group!r} (GroupId {expected}) no longer exists")
        now = str(response["Group"]["GroupId"])
        if now != expected:
            raise TargetChanged(
                f"IAM group {group!r} now has GroupId {now}, not {expected} as recorded: the group "
                "was deleted and the name reused by another group"
            )

    def restored(self, state: ResourceState, prior: ResourceState) -> bool:
        # A membership of another group under the same name is not the prior state.
        recorded = prior.value("group_id")
        return recorded is None or not state.exists or state.value("group_id") == recorded


class DeleteLoginProfile(IamAction):
    calls = ("GetLoginProfile", "DeleteLoginProfile", None)
    definition = iam_action(
        DELETE_LOGIN_PROFILE,
        CredentialKind.PASSWORD,
        calls,
        "Delete the console password (login profile). IRREVERSIBLE: IAM cannot disable a "
        "password, and undo cannot restore it (a new password would have to be issued).",
        reversible=False,
    )

    def read_object(self, iam: Client, target: ActionTarget) -> ResourceState:
        response = unless_missing(iam.get_login_profile, UserName=target.username)
        if response is None:
            return GONE
        created = response["LoginProfile"].get("CreateDate")
        data = [("user", target.username)]
        if isinstance(created, datetime):
            data.append(("created_at", created.isoformat()))
        return ResourceState(exists=True, active=True, data=tuple(data))

    def revoke(self, iam: Client, target: ActionTarget, before: ResourceState) -> None:
        iam.delete_login_profile(UserName=target.username)


class DeactivateMfaDevice(IamAction):
    calls = ("ListMFADevices", "DeactivateMFADevice", None)
    definition = iam_action(
        DEACTIVATE_MFA_DEVICE,
        CredentialKind.MFA_DEVICE,
        calls,
        "Deactivate the MFA device. IRREVERSIBLE by this tool: re-enabling needs two "
        "codes from the physical or virtual device.",
        reversible=False,
    )

    def read_object(self, iam: Client, target: ActionTarget) -> ResourceState:
        user, serial = target.username, target.credential_id
        present = serial in {
            d["SerialNumber"] for d in items(iam.list_mfa_devices, "MFADevices", UserName=user)
        }
        return ResourceState(exists=present, active=present, data=(("user", user), ("serial", serial)))

    def revoke(self, iam: Client, target: ActionTarget, before: ResourceState) -> None:
        iam.deactivate_mfa_device(UserName=target.username, SerialNumber=target.credential_id)


class DenyIssuedSessions(IamAction):
    calls = ("GetUserPolicy", "PutUserPolicy", "DeleteUserPolicy")
    definition = iam_action(
        DENY_ISSUED_SESSIONS,
        CredentialKind.ACCOUNT,
        calls,
        f"Attach the inline policy {DENY_POLICY_NAME}: deny all to temporary credentials "
        "issued before now (aws:TokenIssueTime). Undo deletes it.",
    )

    def read_object(self, iam: Client, target: ActionTarget) -> ResourceState:
        user = target.username
        response = unless_missing(iam.get_user_policy, UserName=user, PolicyName=DENY_POLICY_NAME)
        if response is None:
            # No deny policy: the user's sessions are live ("active").
            return ResourceState(exists=True, active=True, data=(("user", user),))
        doc = response["PolicyDocument"]
        text = doc if isinstance(doc, str) else json.dumps(doc, sort_keys=True)
        return ResourceState(exists=True, active=False, data=(("user", user), ("policy", text)))

    def revoke(self, iam: Client, target: ActionTarget, before: ResourceState) -> None:
        document = deny_policy_document(self.access.now())
        iam.put_user_policy(UserName=target.username, PolicyName=DENY_POLICY_NAME, PolicyDocument=document)

    def unrevoke(self, iam: Client, target: ActionTarget, prior: ResourceState) -> None:
        iam.delete_user_policy(UserName=target.username, PolicyName=DENY_POLICY_NAME)


# In the order the plan and ``config check`` list them.
ACTIONS: tuple[type[IamAction], ...] = (
    DeactivateAccessKey,
    DeactivateSshKey,
    DeactivateSigningCertificate,
    DeactivateServiceCredential,
    RemoveGroupMembership,
    DeleteLoginProfile,
    DeactivateMfaDevice,
    DenyIssuedSessions,
)


def deny_policy_document(issued_before: datetime) -> str:
    """Deny everything to temporary credentials issued before ``issued_before``.

    Long-term access keys carry no aws:TokenIssueTime, so the condition does not touch them
    (they are deactivated separately); sessions obtained later (after an undo) are unaffected.
    """
    stamp = issued_before.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "OffboardAuditDenyIssuedSessions",
                    "Effect": "Deny",
                    "Action": "*",
                    "Resource": "*",
                    "Condition": {"DateLessThan": {"aws:TokenIssueTime": stamp}},
                }
            ],
        },
        sort_keys=True,
    )


def group_name(target: ActionTarget) -> str:
    if target.credential_id.startswith("group/"):
        return target.credential_id[len("group/") :]
    if target.detail:
        return target.detail
    raise RevokeError(f"cannot tell the group from credential id {target.credential_id!r}")
