"""The gcp_iam revoker's actions: one class per action, carrying its definition (with the IAM
permissions it needs), its read, its change and its restore (None when irreversible).

The engine runs them (``offboard_audit.engine.steps``): read, identity and no-op checks,
change, one re-read to verify. Every method first passes the revoker's guard (protected
principals, a target whose parts name different objects), before any call.

- ``remove_binding``: read = Resource Manager ``getIamPolicy`` of the project, organization or
  folder the credential names. Change and restore are a read-modify-write of that policy
  carrying its etag (the one read a write needs: the policy it writes must be the one just
  read); a concurrent change makes the write fail with 409/ABORTED and the policy is read and
  edited again, at most ``max_policy_retries`` times, so nobody else's change is ever lost.
  Undo re-adds the member to the same role (and condition).
- ``disable_key`` / ``delete_key`` (delete stage, irreversible): read = IAM Admin
  ``GetServiceAccount`` (the identity: ``uniqueId``) + ``GetServiceAccountKey``; change =
  ``DisableServiceAccountKey`` (undo ``EnableServiceAccountKey``) / ``DeleteServiceAccountKey``.
- ``disable_service_account``: read = ``GetServiceAccount``; change = ``DisableServiceAccount``
  (undo ``EnableServiceAccount``).

Key and service-account writes name the account by the ``uniqueId`` planned for
(``projects/P/serviceAccounts/UNIQUE_ID[/keys/K]``), not by email: an account deleted and
re-created under the same email between the engine's identity check and the write cannot be
reached (the write fails), so these writes need no re-check of their own.
"""

from __future__ import annotations

import base64
from abc import abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from connectors._shared.actions import GuardedAction, define
from connectors.gcp_iam.clients import GcpClients
from connectors.gcp_iam.translate import BindingRef, condition_key, parse_member, principal_uid
from offboard_audit.core.actions import ActionTarget, ResourceState, Stage
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.protocols import Restore
from offboard_audit.core.records import CredentialKind

REMOVE_BINDING = "remove_binding"
DISABLE_KEY = "disable_key"
DISABLE_SERVICE_ACCOUNT = "disable_service_account"
DELETE_KEY = "delete_key"

# The role a resource must never lose its last member of: without it nobody below the
# organization can administer the resource's IAM policy any more.
LAST_ADMIN_ROLE = {
    "projects": "roles/owner",
    "organizations": "roles/resourcemanager.organizationAdmin",
    "folders": "roles/resourcemanager.folderAdmin",
}


class Gcp(Protocol):
    """What every action gets from :class:`~connectors.gcp_iam.revoker.GcpIamRevoker`."""

    def refuse_protected(self, action: str, principals: list[str]) -> None:
        """``RevokeError`` when one of ``principals`` (lower-case) is protected."""
        ...

    def calling(self, what: str) -> AbstractContextManager[None]:
        """Turn a Google API error into a ``RevokeError`` that starts with ``what``."""
        ...

    def binding_ref(self, target: ActionTarget) -> BindingRef:
        """What the binding credential names, if it is the target's resource and principal."""
        ...

    def get_policy(self, ref: BindingRef) -> Any: ...

    def write_policy(self, ref: BindingRef, edit: Callable[[Any], bool]) -> None:
        """Etag-checked read-modify-write; ``edit(policy) -> bool`` (False: nothing to write)."""
        ...

    def key_by_uid(self, target: ActionTarget) -> str:
        """The key's name with its service account named by ``target.account_uid``."""
        ...

    def sa_by_uid(self, target: ActionTarget) -> str:
        """The service account's name by ``target.account_uid``."""
        ...

    @property
    def clients(self) -> GcpClients: ...

    def call(self, method: Any, name: str) -> Any:
        """``method(request={"name": name})`` with the revoker's retry and timeout."""
        ...

    def get_service_account(self, target: ActionTarget) -> Any:
        """``GetServiceAccount`` by email; None when there is no such account now."""
        ...


class GcpAction(GuardedAction):
    """The shared steps: the guard, then the API calls, their errors named."""

    read_failure = "cannot read state"

    def __init__(self, gcp: Gcp) -> None:
        self.gcp = gcp

    def calling(self, what: str) -> AbstractContextManager[None]:
        return self.gcp.calling(what)

    @property
    def restore(self) -> Restore | None:
        return self._restore if self.definition.reversible else None

    def _restore(self, target: ActionTarget, current: ResourceState, prior: ResourceState) -> None:
        self.guard(target)
        with self.gcp.calling(f"undo {self.definition.name} {target.credential_id}"):
            self.unrevoke(target, prior)

    def guard(self, target: ActionTarget) -> None:
        """Refuse, before any call, a protected principal or a target whose parts disagree.

        A key's or service account's account id is the service account's email; its member is
        ``serviceAccount:EMAIL``, the form an IAM policy (and so a pattern copied from one) names
        it by: both are matched, as for a binding's member and email."""
        email = target.account_id.lower()
        self.gcp.refuse_protected(self.definition.name, [email, f"serviceaccount:{email}"])

    def unrevoke(self, target: ActionTarget, prior: ResourceState) -> None:
        raise RevokeError(
            f"{self.definition.name} is irreversible: {target.credential_id} cannot be restored"
        )


class RemoveBinding(GcpAction):
    definition = define(
        REMOVE_BINDING,
        CredentialKind.IAM_BINDING,
        (
            "resourcemanager.projects.getIamPolicy",
            "resourcemanager.projects.setIamPolicy",
            "resourcemanager.organizations.getIamPolicy",
            "resourcemanager.organizations.setIamPolicy",
            "resourcemanager.folders.getIamPolicy",
            "resourcemanager.folders.setIamPolicy",
        ),
        "Remove the member from the project, folder or organization IAM "
        "binding (etag-checked read-modify-write); undo re-adds it.",
    )

    def guard(self, target: ActionTarget) -> None:
        member = self.gcp.binding_ref(target).member
        principals = [target.account_id.lower(), member.lower(), parse_member(member).email]
        self.gcp.refuse_protected(self.definition.name, principals)

    def read_object(self, target: ActionTarget) -> ResourceState:
        ref = self.gcp.binding_ref(target)
        return state_of(self.gcp.get_policy(ref), ref)

    def revoke(self, target: ActionTarget, before: ResourceState) -> None:
        ref = self.gcp.binding_ref(target)

        def edit(policy: Any) -> bool:
            changed = False
            for b in matching(policy, ref):
                if ref.member in b.members:
                    b.members.remove(ref.member)
                    changed = True
            if not changed:
                return False
            for i in reversed(range(len(policy.bindings))):
                if not policy.bindings[i].members:
                    del policy.bindings[i]
            admin = LAST_ADMIN_ROLE[ref.kind]
            if ref.role == admin and not any(b.role == admin and b.members for b in policy.bindings):
                raise RevokeError(f"refusing to remove the last {admin} member of {ref.resource}")
            return True

        self.gcp.write_policy(ref, edit)

    def unrevoke(self, target: ActionTarget, prior: ResourceState) -> None:
        ref = self.gcp.binding_ref(target)

        def edit(policy: Any) -> bool:
            matches = matching(policy, ref)
            if any(ref.member in b.members for b in matches):
                return False
            if matches:
                matches[0].members.append(ref.member)
                return True
            binding = policy.bindings.add()
            binding.role = ref.role
            binding.members.append(ref.member)
            expression = prior.value("condition_expression")
            if expression:
                binding.condition.expression = expression
                binding.condition.title = prior.value("condition_title") or ""
                binding.condition.description = prior.value("condition_description") or ""
                # Conditional bindings can only be written with policy version 3.
                policy.version = 3
            return True

        self.gcp.write_policy(ref, edit)


def matching(policy: Any, ref: BindingRef) -> list[Any]:
    """The bindings of ``policy`` with the role and condition ``ref`` names."""
    return [
        b
        for b in policy.bindings
        if b.role == ref.role
        and (condition_key(b.condition.expression) if b.HasField("condition") else "") == ref.condition
    ]


def state_of(policy: Any, ref: BindingRef) -> ResourceState:
    """The binding's state in ``policy``: bound or not, with its condition for undo."""
    where = ("project", ref.scope) if ref.kind == "projects" else ("resource", ref.resource)
    data: list[tuple[str, str]] = [
        where,
        ("role", ref.role),
        ("member", ref.member),
        ("etag", base64.b64encode(policy.etag).decode("ascii")),
    ]
    present = False
    for b in matching(policy, ref):
        if ref.member in b.members:
            present = True
        if b.HasField("condition"):
            data += [
                ("condition_title", b.condition.title),
                ("condition_description", b.condition.description),
                ("condition_expression", b.condition.expression),
            ]
            break
    # The principal is the identity whether or not it is still bound: "not bound" is the revoked
    # state, not another principal (see the revoker's module docstring).
    return ResourceState(exists=present, active=present, data=tuple(data), identity=principal_uid(ref.member))


class KeyAction(GcpAction):
    """A user-managed service-account key: identity from its service account, then the key."""

    def guard(self, target: ActionTarget) -> None:
        super().guard(target)
        self.gcp.key_by_uid(target)  # refuses a key of another service account or project

    def read_object(self, target: ActionTarget) -> ResourceState:
        name = target.credential_id
        sa = self.gcp.get_service_account(target)
        if sa is None:
            # A key cannot outlive its service account.
            return ResourceState(exists=False, active=False, data=(("name", name),))
        identity = str(sa.unique_id)
        from google.api_core.exceptions import NotFound

        try:
            key = self.gcp.call(self.gcp.clients.iam.get_service_account_key, name)
        except NotFound:
            return ResourceState(exists=False, active=False, data=(("name", name),), identity=identity)
        return ResourceState(
            exists=True,
            active=self.active(key),
            data=(("name", name), ("disabled", "true" if key.disabled else "false")),
            identity=identity,
        )

    @abstractmethod
    def active(self, key: Any) -> bool: ...


class DisableKey(KeyAction):
    definition = define(
        DISABLE_KEY,
        CredentialKind.SERVICE_ACCOUNT_KEY,
        (
            "iam.serviceAccounts.get",
            "iam.serviceAccountKeys.get",
            "iam.serviceAccountKeys.disable",
            "iam.serviceAccountKeys.enable",
        ),
        "Disable the user-managed service-account key; undo enables it.",
    )

    def active(self, key: Any) -> bool:
        return not key.disabled

    def revoke(self, target: ActionTarget, before: ResourceState) -> None:
        self.gcp.call(self.gcp.clients.iam.disable_service_account_key, self.gcp.key_by_uid(target))

    def unrevoke(self, target: ActionTarget, prior: ResourceState) -> None:
        self.gcp.call(self.gcp.clients.iam.enable_service_account_key, self.gcp.key_by_uid(target))


class DeleteKey(KeyAction):
    definition = define(
        DELETE_KEY,
        CredentialKind.SERVICE_ACCOUNT_KEY,
        ("iam.serviceAccounts.get", "iam.serviceAccountKeys.get", "iam.serviceAccountKeys.delete"),
        "Delete the user-managed service-account key (after the retention window).",
        stage=Stage.DELETE,
    )

    def active(self, key: Any) -> bool:
        # For a deletion "active" means "still there", disabled or not.
        return True

    def revoke(self, target: ActionTarget, before: ResourceState) -> None:
        self.gcp.call(self.gcp.clients.iam.delete_service_account_key, self.gcp.key_by_uid(target))


class DisableServiceAccount(GcpAction):
    definition = define(
        DISABLE_SERVICE_ACCOUNT,
        CredentialKind.ACCOUNT,
        ("iam.serviceAccounts.get", "iam.serviceAccounts.disable", "iam.serviceAccounts.enable"),
        "Disable the service account (all its keys and tokens stop working); undo enables it.",
    )

    def read_object(self, target: ActionTarget) -> ResourceState:
        sa = self.gcp.get_service_account(target)
        name = f"projects/{target.scope or '-'}/serviceAccounts/{target.account_id}"
        if sa is None:
            return ResourceState(exists=False, active=False, data=(("name", name),))
        return ResourceState(
            exists=True,
            active=not sa.disabled,
            data=(("name", name), ("disabled", "true" if sa.disabled else "false")),
            identity=str(sa.unique_id),
        )

    def revoke(self, target: ActionTarget, before: ResourceState) -> None:
        self.gcp.call(self.gcp.clients.iam.disable_service_account, self.gcp.sa_by_uid(target))

    def unrevoke(self, target: ActionTarget, prior: ResourceState) -> None:
        self.gcp.call(self.gcp.clients.iam.enable_service_account, self.gcp.sa_by_uid(target))


# In the order the plan and ``config check`` list them.
ACTIONS: tuple[type[GcpAction], ...] = (RemoveBinding, DisableKey, DisableServiceAccount, DeleteKey)
