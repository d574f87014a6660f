"""The ``aws_iam`` revoker: disables IAM credentials, reversibly wherever AWS allows it.

The actions (one class each, with their IAM calls and permissions) are in ``actions.py``; the
engine runs their steps (read, identity and no-op checks, change, re-read and verify). This
class is what every action goes through: the IAM client of the target's account (AssumeRole
into ``target.scope``, from the same :class:`ClientProvider` as the source), the refusals
made before any call (the root user, ``protected_users`` compared case-insensitively as IAM
compares user names, credential-report slots), the user's identity (``iam:GetUser`` ->
``UserId``) and errors that name the IAM call that failed.

Identity: IAM names can be reused (delete ``jdoe``, create a new ``jdoe``: same ARN). Every
read carries the ``UserId`` as ``ResourceState.identity``, and every write is preceded by one
more ``GetUser`` (:meth:`AwsIamRevoker.same_user`) because IAM has no conditional writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import ClassVar

from connectors._shared.actions import bind, definitions
from connectors.aws_iam.actions import (
    ACTIONS,
    DEACTIVATE_ACCESS_KEY,
    DEACTIVATE_MFA_DEVICE,
    DEACTIVATE_SERVICE_CREDENTIAL,
    DEACTIVATE_SIGNING_CERTIFICATE,
    DEACTIVATE_SSH_KEY,
    DELETE_LOGIN_PROFILE,
    DENY_ISSUED_SESSIONS,
    REMOVE_GROUP_MEMBERSHIP,
    deny_policy_document,
)
from connectors.aws_iam.clients import Client, ClientProvider
from connectors.aws_iam.errors import explain_call, unless_missing
from connectors.aws_iam.payloads import ROOT_ROW
from connectors.aws_iam.settings import AwsSettings
from connectors.aws_iam.translate import LOGIN_PROFILE_ID
from offboard_audit.core.actions import ActionDef, ActionTarget, ResourceState, identity_mismatch
from offboard_audit.core.errors import RevokeError, TargetChanged
from offboard_audit.core.protocols import ActionSpec


class AwsIamRevoker:
    """Applies and undoes revocations on IAM users, one spec per action (``actions.py``)."""

    actions: ClassVar[Mapping[str, ActionDef]] = definitions(ACTIONS)

    def __init__(
        self,
        settings: AwsSettings,
        provider: ClientProvider,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self._clock = clock or (lambda: datetime.now(UTC))
        self.specs: Mapping[str, ActionSpec] = bind(ACTIONS, self)

    # --- what every action goes through (actions.IamAccess) ------------------------------

    def client(self, target: ActionTarget) -> Client:
        """The IAM client for ``target.scope``; refuses root, protected users and report slots
        before any call."""
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
        return self.provider.iam_for(target.scope or self.provider.home_account())

    def user_id(self, iam: Client, target: ActionTarget) -> str | None:
        """The user's ``UserId`` now (iam:GetUser), or None when no such user exists."""
        with self.calling("GetUser", target):
            response = unless_missing(iam.get_user, UserName=target.username)
            if response is None:
                return None
            user = response["User"]
        return str(user["UserId"])

    def same_user(self, iam: Client, target: ActionTarget) -> None:
        """Raise TargetChanged unless the user is (still) the one the action was planned for."""
        uid = self.user_id(iam, target)
        mismatch = identity_mismatch(
            target, ResourceState(exists=uid is not None, active=False, identity=uid)
        )
        if mismatch is not None:
            raise TargetChanged(mismatch)

    @contextmanager
    def calling(self, api: str, target: ActionTarget) -> Iterator[None]:
        """Any failure of one IAM call becomes a RevokeError naming the call, the user, the
        account and (for a call the endpoint lacks) the option that turns the kind off."""
        try:
            yield
        except RevokeError:
            raise
        except Exception as exc:
            message = explain_call(api, target.username, exc, source=self.settings.name, scope=target.scope)
            raise RevokeError(message) from exc

    def now(self) -> datetime:
        return self._clock()


__all__ = [
    "DEACTIVATE_ACCESS_KEY",
    "DEACTIVATE_MFA_DEVICE",
    "DEACTIVATE_SERVICE_CREDENTIAL",
    "DEACTIVATE_SIGNING_CERTIFICATE",
    "DEACTIVATE_SSH_KEY",
    "DELETE_LOGIN_PROFILE",
    "DENY_ISSUED_SESSIONS",
    "LOGIN_PROFILE_ID",
    "REMOVE_GROUP_MEMBERSHIP",
    "AwsIamRevoker",
    "deny_policy_document",
]
