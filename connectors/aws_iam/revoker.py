"""The ``aws_iam`` revoker: disables IAM credentials, reversibly wherever AWS allows it.

Every action reads the object first (the prior state, kept by the core for undo), changes
it only when it is not already in the target state (idempotent), and re-reads it afterwards
to verify. Console passwords and MFA devices cannot be switched off reversibly in IAM: the
login profile is deleted and the MFA device deactivated, and their ActionDefs say
``reversible=False`` so the plan shows it. The root user and ``protected_users`` are refused
(user names compared case-insensitively, as IAM compares them).

Identity: IAM names can be reused (delete ``jdoe``, create a new ``jdoe``: same ARN). Every
state read starts with ``iam:GetUser`` and carries the user's ``UserId`` as
``ResourceState.identity`` (None when the user is gone, and then nothing else is read).
``apply`` and ``undo`` raise :class:`TargetChanged` before any change when it is not the
``ActionTarget.account_uid`` the action was planned for. Calls per state read: one GetUser plus
one call for the object (for a missing user only the GetUser). An applied change costs, with
the engine's own reads before and after, 4 GetUser + 4 object reads + 1 write.

IAM has no conditional writes: a user deleted and re-created in the instant between the
GetUser and the write would not be seen; the re-read after the write (identity included)
then reports the change as not verified.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ClassVar

from connectors.aws_iam.clients import Client, ClientProvider
from connectors.aws_iam.errors import explain_call
from connectors.aws_iam.report import ROOT_ROW
from connectors.aws_iam.settings import AwsSettings
from connectors.aws_iam.source import error_code, items
from connectors.aws_iam.translate import DENY_POLICY_NAME, LOGIN_PROFILE_ID
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

DEACTIVATE_ACCESS_KEY = "deactivate_access_key"
DEACTIVATE_SSH_KEY = "deactivate_ssh_key"
DEACTIVATE_SIGNING_CERTIFICATE = "deactivate_signing_certificate"
DEACTIVATE_SERVICE_CREDENTIAL = "deactivate_service_credential"
REMOVE_GROUP_MEMBERSHIP = "remove_group_membership"
DELETE_LOGIN_PROFILE = "delete_login_profile"
DEACTIVATE_MFA_DEVICE = "deactivate_mfa_device"
DENY_ISSUED_SESSIONS = "deny_issued_sessions"

_GONE = ResourceState(exists=False, active=False)

# IAM API calls per action: (read the object, revoke it, restore it; None when irreversible).
_APIS: Mapping[str, tuple[str, str, str | None]] = {
    DEACTIVATE_ACCESS_KEY: ("ListAccessKeys", "UpdateAccessKey", "UpdateAccessKey"),
    DEACTIVATE_SSH_KEY: ("ListSSHPublicKeys", "UpdateSSHPublicKey", "UpdateSSHPublicKey"),
    DEACTIVATE_SIGNING_CERTIFICATE: (
        "ListSigningCertificates",
        "UpdateSigningCertificate",
        "UpdateSigningCertificate",
    ),
    DEACTIVATE_SERVICE_CREDENTIAL: (
        "ListServiceSpecificCredentials",
        "UpdateServiceSpecificCredential",
        "UpdateServiceSpecificCredential",
    ),
    REMOVE_GROUP_MEMBERSHIP: ("ListGroupsForUser", "RemoveUserFromGroup", "AddUserToGroup"),
    DELETE_LOGIN_PROFILE: ("GetLoginProfile", "DeleteLoginProfile", None),
    DEACTIVATE_MFA_DEVICE: ("ListMFADevices", "DeactivateMFADevice", None),
    DENY_ISSUED_SESSIONS: ("GetUserPolicy", "PutUserPolicy", "DeleteUserPolicy"),
}


def _def(
    name: str, kind: CredentialKind, reversible: bool, permissions: tuple[str, ...], description: str
) -> tuple[str, ActionDef]:
    return name, ActionDef(
        name=name,
        credential_kind=kind,
        stage=Stage.DISABLE,
        reversible=reversible,
        permissions=permissions,
        description=description,
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


class AwsIamRevoker:
    """Applies and undoes revocations on IAM users.

    API calls and permissions per action are declared in :attr:`actions` (every action reads
    the user's identity with iam:GetUser). Clients come from the same :class:`ClientProvider`
    as the source (AssumeRole into ``target.scope``).
    """

    actions: ClassVar[Mapping[str, ActionDef]] = dict(
        [
            _def(
                DEACTIVATE_ACCESS_KEY,
                CredentialKind.ACCESS_KEY,
                True,
                ("iam:GetUser", "iam:ListAccessKeys", "iam:UpdateAccessKey"),
                "Set the access key to Inactive (undo: Active).",
            ),
            _def(
                DEACTIVATE_SSH_KEY,
                CredentialKind.SSH_KEY,
                True,
                ("iam:GetUser", "iam:ListSSHPublicKeys", "iam:UpdateSSHPublicKey"),
                "Set the SSH public key to Inactive (undo: Active).",
            ),
            _def(
                DEACTIVATE_SIGNING_CERTIFICATE,
                CredentialKind.SIGNING_CERTIFICATE,
                True,
                ("iam:GetUser", "iam:ListSigningCertificates", "iam:UpdateSigningCertificate"),
                "Set the signing certificate to Inactive (undo: Active).",
            ),
            _def(
                DEACTIVATE_SERVICE_CREDENTIAL,
                CredentialKind.SERVICE_CREDENTIAL,
                True,
                ("iam:GetUser", "iam:ListServiceSpecificCredentials", "iam:UpdateServiceSpecificCredential"),
                "Set the service-specific credential to Inactive (undo: Active).",
            ),
            _def(
                REMOVE_GROUP_MEMBERSHIP,
                CredentialKind.GROUP_MEMBERSHIP,
                True,
                ("iam:GetUser", "iam:ListGroupsForUser", "iam:RemoveUserFromGroup", "iam:AddUserToGroup"),
                "Remove the user from the group (undo: add it back).",
            ),
            _def(
                DELETE_LOGIN_PROFILE,
                CredentialKind.PASSWORD,
                False,
                ("iam:GetUser", "iam:GetLoginProfile", "iam:DeleteLoginProfile"),
                "Delete the console password (login profile). IRREVERSIBLE: IAM cannot disable a "
                "password, and undo cannot restore it (a new password would have to be issued).",
            ),
            _def(
                DEACTIVATE_MFA_DEVICE,
                CredentialKind.MFA_DEVICE,
                False,
                ("iam:GetUser", "iam:ListMFADevices", "iam:DeactivateMFADevice"),
                "Deactivate the MFA device. IRREVERSIBLE by this tool: re-enabling needs two "
                "codes from the physical or virtual device.",
            ),
            _def(
                DENY_ISSUED_SESSIONS,
                CredentialKind.ACCOUNT,
                True,
                ("iam:GetUser", "iam:GetUserPolicy", "iam:PutUserPolicy", "iam:DeleteUserPolicy"),
                f"Attach the inline policy {DENY_POLICY_NAME}: deny all to temporary credentials "
                "issued before now (aws:TokenIssueTime). Undo deletes it.",
            ),
        ]
    )

    def __init__(
        self,
        settings: AwsSettings,
        provider: ClientProvider,
        clock: Any = None,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self._clock = clock or (lambda: datetime.now(UTC))

    # --- guards --------------------------------------------------------------------------

    def _check(self, action: str, target: ActionTarget) -> Client:
        if action not in self.actions:
            raise RevokeError(f"unknown aws_iam action {action!r}")
        expected = self.actions[action].credential_kind
        if target.credential_kind is not expected:
            raise RevokeError(f"{action} applies to {expected.value}, not {target.credential_kind.value}")
        user = target.username
        if (
            not user
            or user.casefold() == ROOT_ROW
            or target.account_id.casefold().endswith(":root")
            or target.credential_id.casefold().endswith(":root")
        ):
            raise RevokeError("refusing to touch the AWS root user")
        if self.settings.is_protected(user):
            raise RevokeError(f"refusing to touch protected IAM user {user!r}")
        if target.credential_id.startswith("report/"):
            raise RevokeError(
                f"{target.credential_id} is a credential-report slot, not an id: the detail pass must "
                "read the real id before it can be revoked"
            )
        scope = target.scope or self.provider.home_account()
        return self.provider.iam_for(scope)

    # --- protocol ------------------------------------------------------------------------

    def read_state(self, action: str, target: ActionTarget) -> ResourceState:
        """iam:GetUser, then the action's read call (see ``_APIS``) unless the user is gone."""
        iam = self._check(action, target)
        return self._read(iam, action, target)

    def apply(self, action: str, target: ActionTarget) -> ActionResult:
        """Read (with identity), raise TargetChanged on another identity, change, re-read."""
        iam = self._check(action, target)
        before = self._read(iam, action, target)
        _same_target(target, before)
        if not before.exists or not before.active:
            # Already gone or already disabled: nothing to do (idempotent).
            return ActionResult(
                changed=False, before=before, after=before, verified=True, message="already revoked"
            )
        with self._calling(_APIS[action][1], target):
            self._disable(iam, action, target, before)
        after = self._read(iam, action, target)
        verified = not after.active and identity_mismatch(target, after) is None
        return ActionResult(
            changed=True,
            before=before,
            after=after,
            verified=verified,
            message="revoked" if verified else "change not visible on re-read",
        )

    def undo(self, action: str, target: ActionTarget, prior: ResourceState) -> ActionResult:
        """Read (with identity), raise TargetChanged on another identity, restore, re-read."""
        iam = self._check(action, target)
        definition = self.actions[action]
        before = self._read(iam, action, target)
        _same_target(target, before)
        if not prior.exists or not prior.active:
            return ActionResult(
                changed=False, before=before, after=before, verified=True, message="nothing to restore"
            )
        if before.exists and before.active:
            return ActionResult(
                changed=False, before=before, after=before, verified=True, message="already active"
            )
        if not definition.reversible:
            raise RevokeError(f"{action} is irreversible: {definition.description}")
        if not before.exists and action != REMOVE_GROUP_MEMBERSHIP:
            raise RevokeError(f"cannot undo {action}: {target.credential_id} no longer exists")
        with self._calling(_APIS[action][2] or action, target):
            self._enable(iam, action, target, prior)
        after = self._read(iam, action, target)
        verified = after.exists and after.active and identity_mismatch(target, after) is None
        return ActionResult(
            changed=True,
            before=before,
            after=after,
            verified=verified,
            message="restored" if verified else "restore not visible on re-read",
        )

    # --- identity and errors ---------------------------------------------------------------

    @contextmanager
    def _calling(self, api: str, target: ActionTarget) -> Iterator[None]:
        """Any failure of one IAM call becomes a RevokeError naming the call, the user, the
        account and (for a call the endpoint lacks) the option that turns the kind off."""
        try:
            yield
        except RevokeError:
            raise
        except Exception as exc:
            message = explain_call(api, target.username, exc, source=self.settings.name, scope=target.scope)
            raise RevokeError(message) from exc

    def _identity(self, iam: Client, target: ActionTarget) -> str | None:
        """The user's ``UserId`` now (iam:GetUser), or None when no such user exists."""
        with self._calling("GetUser", target):
            try:
                user = iam.get_user(UserName=target.username)["User"]
            except Exception as exc:
                if error_code(exc) == "NoSuchEntity":
                    return None
                raise
        return str(user["UserId"])

    def _read(self, iam: Client, action: str, target: ActionTarget) -> ResourceState:
        """The object's state, stamped with the identity of the user it was read from."""
        if action not in _APIS:
            raise RevokeError(f"unknown aws_iam action {action!r}")
        identity = self._identity(iam, target)
        if identity is None:
            return _GONE
        with self._calling(_APIS[action][0], target):
            state = self._read_object(iam, action, target)
        return replace(state, identity=identity)

    # --- per action ----------------------------------------------------------------------

    def _read_object(self, iam: Client, action: str, target: ActionTarget) -> ResourceState:
        user = target.username
        cid = target.credential_id
        if action == DEACTIVATE_ACCESS_KEY:
            return _status_state(
                items(iam.list_access_keys, "AccessKeyMetadata", UserName=user), "AccessKeyId", cid, user
            )
        if action == DEACTIVATE_SSH_KEY:
            return _status_state(
                items(iam.list_ssh_public_keys, "SSHPublicKeys", UserName=user), "SSHPublicKeyId", cid, user
            )
        if action == DEACTIVATE_SIGNING_CERTIFICATE:
            return _status_state(
                items(iam.list_signing_certificates, "Certificates", UserName=user),
                "CertificateId",
                cid,
                user,
            )
        if action == DEACTIVATE_SERVICE_CREDENTIAL:
            found = items(iam.list_service_specific_credentials, "ServiceSpecificCredentials", UserName=user)
            return _status_state(found, "ServiceSpecificCredentialId", cid, user)
        if action == REMOVE_GROUP_MEMBERSHIP:
            group = _group_name(target)
            groups = {g["GroupName"] for g in items(iam.list_groups_for_user, "Groups", UserName=user)}
            member = group in groups
            return ResourceState(exists=member, active=member, data=(("user", user), ("group", group)))
        if action == DELETE_LOGIN_PROFILE:
            try:
                profile = iam.get_login_profile(UserName=user)["LoginProfile"]
            except Exception as exc:
                if error_code(exc) == "NoSuchEntity":
                    return _GONE
                raise
            created = profile.get("CreateDate")
            data = [("user", user)]
            if isinstance(created, datetime):
                data.append(("created_at", created.isoformat()))
            return ResourceState(exists=True, active=True, data=tuple(data))
        if action == DEACTIVATE_MFA_DEVICE:
            serials = {d["SerialNumber"] for d in items(iam.list_mfa_devices, "MFADevices", UserName=user)}
            present = cid in serials
            return ResourceState(exists=present, active=present, data=(("user", user), ("serial", cid)))
        if action == DENY_ISSUED_SESSIONS:
            try:
                doc = iam.get_user_policy(UserName=user, PolicyName=DENY_POLICY_NAME)["PolicyDocument"]
            except Exception as exc:
                if error_code(exc) == "NoSuchEntity":
                    # No deny policy: the user's sessions are live ("active").
                    return ResourceState(exists=True, active=True, data=(("user", user),))
                raise
            text = doc if isinstance(doc, str) else json.dumps(doc, sort_keys=True)
            return ResourceState(exists=True, active=False, data=(("user", user), ("policy", text)))
        raise RevokeError(f"unknown aws_iam action {action!r}")

    def _disable(self, iam: Client, action: str, target: ActionTarget, before: ResourceState) -> None:
        user = target.username
        cid = target.credential_id
        if action == DEACTIVATE_ACCESS_KEY:
            iam.update_access_key(UserName=user, AccessKeyId=cid, Status="Inactive")
        elif action == DEACTIVATE_SSH_KEY:
            iam.update_ssh_public_key(UserName=user, SSHPublicKeyId=cid, Status="Inactive")
        elif action == DEACTIVATE_SIGNING_CERTIFICATE:
            iam.update_signing_certificate(UserName=user, CertificateId=cid, Status="Inactive")
        elif action == DEACTIVATE_SERVICE_CREDENTIAL:
            iam.update_service_specific_credential(
                UserName=user, ServiceSpecificCredentialId=cid, Status="Inactive"
            )
        elif action == REMOVE_GROUP_MEMBERSHIP:
            iam.remove_user_from_group(UserName=user, GroupName=_group_name(target))
        elif action == DELETE_LOGIN_PROFILE:
            iam.delete_login_profile(UserName=user)
        elif action == DEACTIVATE_MFA_DEVICE:
            iam.deactivate_mfa_device(UserName=user, SerialNumber=cid)
        elif action == DENY_ISSUED_SESSIONS:
            iam.put_user_policy(
                UserName=user, PolicyName=DENY_POLICY_NAME, PolicyDocument=deny_policy_document(self._clock())
            )

    def _enable(self, iam: Client, action: str, target: ActionTarget, prior: ResourceState) -> None:
        user = target.username
        cid = target.credential_id
        if action == DEACTIVATE_ACCESS_KEY:
            iam.update_access_key(UserName=user, AccessKeyId=cid, Status="Active")
        elif action == DEACTIVATE_SSH_KEY:
            iam.update_ssh_public_key(UserName=user, SSHPublicKeyId=cid, Status="Active")
        elif action == DEACTIVATE_SIGNING_CERTIFICATE:
            iam.update_signing_certificate(UserName=user, CertificateId=cid, Status="Active")
        elif action == DEACTIVATE_SERVICE_CREDENTIAL:
            iam.update_service_specific_credential(
                UserName=user, ServiceSpecificCredentialId=cid, Status="Active"
            )
        elif action == REMOVE_GROUP_MEMBERSHIP:
            # The group remembered at apply time, not whatever the target says now.
            iam.add_user_to_group(UserName=user, GroupName=prior.value("group") or _group_name(target))
        elif action == DENY_ISSUED_SESSIONS:
            iam.delete_user_policy(UserName=user, PolicyName=DENY_POLICY_NAME)
        else:
            raise RevokeError(f"{action} is irreversible")


def _same_target(target: ActionTarget, state: ResourceState) -> None:
    """Raise TargetChanged when ``state`` was not read from the user the action was planned for."""
    mismatch = identity_mismatch(target, state)
    if mismatch is not None:
        raise TargetChanged(mismatch)


def _status_state(found: list[Any], id_key: str, cid: str, user: str) -> ResourceState:
    for item in found:
        if item[id_key] == cid:
            status = str(item["Status"])
            return ResourceState(
                exists=True, active=status == "Active", data=(("user", user), ("status", status))
            )
    return _GONE


def _group_name(target: ActionTarget) -> str:
    if target.credential_id.startswith("group/"):
        return target.credential_id[len("group/") :]
    if target.detail:
        return target.detail
    raise RevokeError(f"cannot tell the group from credential id {target.credential_id!r}")


__all__ = ["LOGIN_PROFILE_ID", "AwsIamRevoker", "deny_policy_document"]
