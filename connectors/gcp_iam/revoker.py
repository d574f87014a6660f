"""The write side of the Google Cloud IAM connector: reversible revocations.

API calls and permissions (declared per action in :attr:`GcpIamRevoker.actions`):

- ``remove_binding``: Resource Manager ``getIamPolicy`` + ``setIamPolicy`` of the project,
  organization or folder the binding credential names (``projects/P/...``,
  ``organizations/N/...``, ``folders/F/...``), as a read-modify-write carrying the policy's etag. A concurrent change makes the write
  fail with 409/ABORTED; the policy is then re-read and the removal re-applied, at most
  ``max_policy_retries`` times. The write always starts from the policy just read, so
  nobody else's change is ever lost. Undo re-adds the member to the same role (and
  condition).
- ``disable_key`` / undo enable: IAM Admin ``DisableServiceAccountKey`` /
  ``EnableServiceAccountKey``, verified with ``GetServiceAccountKey`` (disable returns nothing).
- ``disable_service_account`` / undo enable: ``DisableServiceAccount`` / ``EnableServiceAccount``,
  verified with ``GetServiceAccount``.
- ``delete_key`` (delete stage, irreversible): ``DeleteServiceAccountKey``.

Protected principals (the source's ``protected_principals`` patterns and Google-managed
service agents) are refused with :class:`RevokeError` whatever the plan says, and so is
removing the last member of a resource's administrator role (:data:`LAST_ADMIN_ROLE`).
"""

from __future__ import annotations

import base64
import fnmatch
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from connectors.gcp_iam.clients import GcpClients, GcpConfig, bounded_retry, build_clients
from connectors.gcp_iam.translate import (
    BindingRef,
    condition_key,
    parse_binding_credential_id,
    parse_member,
)
from offboard_audit.errors import RevokeError
from offboard_audit.records import (
    ActionDef,
    ActionResult,
    ActionTarget,
    CredentialKind,
    ResourceState,
    Stage,
)

# Google-managed service agents: disabling them breaks Google services, and they hold no
# user-managed keys a person could walk away with.
BUILTIN_PROTECTED = (
    "*@cloudservices.gserviceaccount.com",
    "service-*@gcp-sa-*.iam.gserviceaccount.com",
)

_BINDING_PERMS = (
    "resourcemanager.projects.getIamPolicy",
    "resourcemanager.projects.setIamPolicy",
    "resourcemanager.organizations.getIamPolicy",
    "resourcemanager.organizations.setIamPolicy",
    "resourcemanager.folders.getIamPolicy",
    "resourcemanager.folders.setIamPolicy",
)

# The role a resource must never lose its last member of: without it nobody below the
# organization can administer the resource's IAM policy any more.
LAST_ADMIN_ROLE = {
    "projects": "roles/owner",
    "organizations": "roles/resourcemanager.organizationAdmin",
    "folders": "roles/resourcemanager.folderAdmin",
}


def _api_errors() -> tuple[type[BaseException], ...]:
    import requests
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    return (GoogleAPIError, GoogleAuthError, requests.RequestException)


def _conflict_errors() -> tuple[type[BaseException], ...]:
    from google.api_core.exceptions import Aborted, Conflict, FailedPrecondition

    # 409 (REST) / ABORTED (gRPC) on an etag mismatch; some surfaces answer FAILED_PRECONDITION.
    return (Conflict, Aborted, FailedPrecondition)


class GcpIamRevoker:
    """Removes IAM bindings and disables service-account keys and service accounts."""

    actions: ClassVar[Mapping[str, ActionDef]] = MappingProxyType(
        {
            "remove_binding": ActionDef(
                name="remove_binding",
                credential_kind=CredentialKind.IAM_BINDING,
                stage=Stage.DISABLE,
                reversible=True,
                permissions=_BINDING_PERMS,
                description="Remove the member from the project, folder or organization IAM "
                "binding (etag-checked read-modify-write); undo re-adds it.",
            ),
            "disable_key": ActionDef(
                name="disable_key",
                credential_kind=CredentialKind.SERVICE_ACCOUNT_KEY,
                stage=Stage.DISABLE,
                reversible=True,
                permissions=(
                    "iam.serviceAccountKeys.get",
                    "iam.serviceAccountKeys.disable",
                    "iam.serviceAccountKeys.enable",
                ),
                description="Disable the user-managed service-account key; undo enables it.",
            ),
            "disable_service_account": ActionDef(
                name="disable_service_account",
                credential_kind=CredentialKind.ACCOUNT,
                stage=Stage.DISABLE,
                reversible=True,
                permissions=(
                    "iam.serviceAccounts.get",
                    "iam.serviceAccounts.disable",
                    "iam.serviceAccounts.enable",
                ),
                description="Disable the service account (all its keys and tokens stop working); "
                "undo enables it.",
            ),
            "delete_key": ActionDef(
                name="delete_key",
                credential_kind=CredentialKind.SERVICE_ACCOUNT_KEY,
                stage=Stage.DELETE,
                reversible=False,
                permissions=("iam.serviceAccountKeys.get", "iam.serviceAccountKeys.delete"),
                description="Delete the user-managed service-account key (after the retention window).",
            ),
        }
    )

    def __init__(self, config: GcpConfig, clients: GcpClients | None = None) -> None:
        self.config = config
        self._clients = clients
        self._lock = threading.Lock()
        self._retry = bounded_retry(config.timeout)
        self._protected = tuple(p.lower() for p in (*config.protected_principals, *BUILTIN_PROTECTED))

    @property
    def clients(self) -> GcpClients:
        with self._lock:
            if self._clients is None:
                self._clients = build_clients(self.config)
            return self._clients

    # --- protocol ------------------------------------------------------------------------

    def read_state(self, action: str, target: ActionTarget) -> ResourceState:
        self._check(action, target)
        try:
            if action == "remove_binding":
                return self._binding_state(self._binding_ref(target))
            if action in ("disable_key", "delete_key"):
                return self._key_state(target.credential_id)
            return self._sa_state(self._sa_name(target))
        except _api_errors() as exc:
            raise RevokeError(f"{action} {target.credential_id}: cannot read state: {exc}") from exc

    def apply(self, action: str, target: ActionTarget) -> ActionResult:
        self._check(action, target)
        try:
            if action == "remove_binding":
                return self._remove_binding(self._binding_ref(target))
            if action == "disable_key":
                return self._set_key(target.credential_id, enabled=False)
            if action == "delete_key":
                return self._delete_key(target.credential_id)
            return self._set_sa(self._sa_name(target), enabled=False)
        except _api_errors() as exc:
            raise RevokeError(f"{action} {target.credential_id}: {type(exc).__name__}: {exc}") from exc

    def undo(self, action: str, target: ActionTarget, prior: ResourceState) -> ActionResult:
        self._check(action, target)
        if not self.actions[action].reversible:
            raise RevokeError(f"{action} is irreversible: {target.credential_id} cannot be restored")
        try:
            if action == "remove_binding":
                return self._restore_binding(self._binding_ref(target), prior)
            if action == "disable_key":
                if not prior.exists or not prior.active:
                    state = self._key_state(target.credential_id)
                    return ActionResult(
                        False, state, state, True, "key was not active before: nothing to restore"
                    )
                return self._set_key(target.credential_id, enabled=True)
            if not prior.exists or not prior.active:
                state = self._sa_state(self._sa_name(target))
                return ActionResult(
                    False, state, state, True, "account was disabled before: nothing to restore"
                )
            return self._set_sa(self._sa_name(target), enabled=True)
        except _api_errors() as exc:
            raise RevokeError(f"undo {action} {target.credential_id}: {type(exc).__name__}: {exc}") from exc

    # --- safety --------------------------------------------------------------------------

    def _check(self, action: str, target: ActionTarget) -> None:
        if action not in self.actions:
            raise RevokeError(f"unknown gcp_iam action {action!r} (known: {', '.join(self.actions)})")
        expected = self.actions[action].credential_kind
        if target.credential_kind is not expected:
            raise RevokeError(f"{action} acts on {expected.value}, not {target.credential_kind.value}")
        principals = [target.account_id.lower()]
        if action == "remove_binding":
            member = self._binding_ref(target).member
            principals += [member.lower(), parse_member(member).email]
        for principal in principals:
            for pattern in self._protected:
                if principal and fnmatch.fnmatchcase(principal, pattern):
                    raise RevokeError(f"{principal} is protected (matches {pattern!r}): refusing {action}")

    # --- bindings ------------------------------------------------------------------------

    @staticmethod
    def _binding_ref(target: ActionTarget) -> BindingRef:
        try:
            ref = parse_binding_credential_id(target.credential_id)
        except ValueError as exc:
            raise RevokeError(str(exc)) from exc
        if target.scope and target.scope != ref.scope:
            raise RevokeError(f"{target.credential_id} is not in scope {target.scope}")
        return ref

    def _policy_client(self, ref: BindingRef) -> Any:
        """The Resource Manager client that owns the policy of ``ref``'s resource."""
        clients = self.clients
        client = {
            "projects": clients.projects,
            "organizations": clients.organizations,
            "folders": clients.folders,
        }[ref.kind]
        if client is None:
            raise RevokeError(f"{ref.resource}: no Resource Manager {ref.kind} client configured")
        return client

    def _get_policy(self, ref: BindingRef) -> Any:
        return self._policy_client(ref).get_iam_policy(
            request={"resource": ref.resource, "options": {"requested_policy_version": 3}},
            retry=self._retry,
            timeout=self.config.timeout,
        )

    @staticmethod
    def _matching(policy: Any, ref: BindingRef) -> list[Any]:
        return [
            b
            for b in policy.bindings
            if b.role == ref.role
            and (condition_key(b.condition.expression) if b.HasField("condition") else "") == ref.condition
        ]

    def _state_of(self, policy: Any, ref: BindingRef) -> ResourceState:
        where = ("project", ref.scope) if ref.kind == "projects" else ("resource", ref.resource)
        data: list[tuple[str, str]] = [
            where,
            ("role", ref.role),
            ("member", ref.member),
            ("etag", base64.b64encode(policy.etag).decode("ascii")),
        ]
        present = False
        for b in self._matching(policy, ref):
            if ref.member in b.members:
                present = True
            if b.HasField("condition"):
                data += [
                    ("condition_title", b.condition.title),
                    ("condition_description", b.condition.description),
                    ("condition_expression", b.condition.expression),
                ]
                break
        return ResourceState(exists=present, active=present, data=tuple(data))

    def _binding_state(self, ref: BindingRef) -> ResourceState:
        return self._state_of(self._get_policy(ref), ref)

    def _write_policy(self, ref: BindingRef, change: Any) -> tuple[ResourceState, bool]:
        """Read-modify-write with the etag; ``change(policy) -> bool`` edits in place (False: no-op).

        Returns the state before the successful write and whether anything was written.
        """
        attempts = self.config.max_policy_retries
        for _attempt in range(attempts):
            policy = self._get_policy(ref)
            before = self._state_of(policy, ref)
            if not change(policy):
                return before, False
            try:
                # The policy carries the etag just read: a concurrent writer makes this fail.
                self._policy_client(ref).set_iam_policy(
                    request={"resource": ref.resource, "policy": policy},
                    retry=self._retry,
                    timeout=self.config.timeout,
                )
            except _conflict_errors():
                continue
            return before, True
        raise RevokeError(
            f"{ref.resource}: IAM policy kept changing concurrently; gave up after {attempts} "
            "attempts without writing anything"
        )

    def _remove_binding(self, ref: BindingRef) -> ActionResult:
        def change(policy: Any) -> bool:
            changed = False
            for b in self._matching(policy, ref):
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

        before, written = self._write_policy(ref, change)
        after = self._binding_state(ref)
        return ActionResult(
            changed=written,
            before=before,
            after=after,
            verified=not after.exists,
            message="" if written else "member not in the binding: nothing to do",
        )

    def _restore_binding(self, ref: BindingRef, prior: ResourceState) -> ActionResult:
        if not prior.exists:
            state = self._binding_state(ref)
            return ActionResult(False, state, state, True, "member was not bound before: nothing to restore")

        def change(policy: Any) -> bool:
            matches = self._matching(policy, ref)
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

        before, written = self._write_policy(ref, change)
        after = self._binding_state(ref)
        return ActionResult(written, before, after, verified=after.exists)

    # --- keys ----------------------------------------------------------------------------

    def _key_state(self, name: str) -> ResourceState:
        from google.api_core.exceptions import NotFound

        try:
            key = self.clients.iam.get_service_account_key(
                request={"name": name}, retry=self._retry, timeout=self.config.timeout
            )
        except NotFound:
            return ResourceState(exists=False, active=False, data=(("name", name),))
        return ResourceState(
            exists=True,
            active=not key.disabled,
            data=(("name", name), ("disabled", "true" if key.disabled else "false")),
        )

    def _set_key(self, name: str, enabled: bool) -> ActionResult:
        before = self._key_state(name)
        if not before.exists:
            return ActionResult(False, before, before, verified=not enabled, message="key not found")
        if before.active == enabled:
            return ActionResult(False, before, before, True, "already in the target state")
        if enabled:
            self.clients.iam.enable_service_account_key(
                request={"name": name}, retry=self._retry, timeout=self.config.timeout
            )
        else:
            self.clients.iam.disable_service_account_key(
                request={"name": name}, retry=self._retry, timeout=self.config.timeout
            )
        # Neither call returns the key: re-read it to know it worked.
        after = self._key_state(name)
        return ActionResult(True, before, after, verified=after.exists and after.active == enabled)

    def _delete_key(self, name: str) -> ActionResult:
        before = self._key_state(name)
        if not before.exists:
            return ActionResult(False, before, before, True, "key not found: already deleted")
        self.clients.iam.delete_service_account_key(
            request={"name": name}, retry=self._retry, timeout=self.config.timeout
        )
        after = self._key_state(name)
        return ActionResult(True, before, after, verified=not after.exists)

    # --- service accounts ----------------------------------------------------------------

    @staticmethod
    def _sa_name(target: ActionTarget) -> str:
        # "-" lets the API find the account's project from its (globally unique) email.
        return f"projects/{target.scope or '-'}/serviceAccounts/{target.account_id}"

    def _sa_state(self, name: str) -> ResourceState:
        from google.api_core.exceptions import NotFound

        try:
            sa = self.clients.iam.get_service_account(
                request={"name": name}, retry=self._retry, timeout=self.config.timeout
            )
        except NotFound:
            return ResourceState(exists=False, active=False, data=(("name", name),))
        return ResourceState(
            exists=True,
            active=not sa.disabled,
            data=(("name", name), ("disabled", "true" if sa.disabled else "false")),
        )

    def _set_sa(self, name: str, enabled: bool) -> ActionResult:
        before = self._sa_state(name)
        if not before.exists:
            return ActionResult(
                False, before, before, verified=not enabled, message="service account not found"
            )
        if before.active == enabled:
            return ActionResult(False, before, before, True, "already in the target state")
        if enabled:
            self.clients.iam.enable_service_account(
                request={"name": name}, retry=self._retry, timeout=self.config.timeout
            )
        else:
            self.clients.iam.disable_service_account(
                request={"name": name}, retry=self._retry, timeout=self.config.timeout
            )
        after = self._sa_state(name)
        return ActionResult(True, before, after, verified=after.exists and after.active == enabled)

    def close(self) -> None:
        if self._clients is not None:
            self._clients.close()
