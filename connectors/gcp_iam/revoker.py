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

Identity (``ActionTarget.account_uid``, checked before every change and undo, see
:func:`offboard_audit.core.records.identity_mismatch`):

- Keys and service accounts: the service account's ``uniqueId``, read with IAM Admin
  ``GetServiceAccount`` by email (``iam.serviceAccounts.get``); a service account that is gone
  has none. A service account deleted and recreated under the same email has a new
  ``uniqueId``, so its keys and itself are never touched for the old one (:class:`TargetChanged`,
  recorded as ``target-changed``). The writes then name the service account by that
  ``uniqueId`` (``projects/P/serviceAccounts/UNIQUE_ID[/keys/K]``), so even a recreate between
  the check and the write cannot reach the new account.
- Bindings: the principal (``user:EMAIL``, see :func:`~connectors.gcp_iam.translate.principal_uid`)
  of the exact member the credential id names, in exactly the resource it names. The target's
  scope and account must name that same resource and principal, or the action is refused
  before any call. The identity does not depend on the member still being bound: a member
  that is no longer in the binding is simply revoked already (``noop``), and removing it must
  not make the principal look like another one. An IAM policy carries nothing more stable than
  the email for a live member, so a Google account deleted and recreated under the same email
  cannot be told apart from the policy alone.

Protected principals (the source's ``protected_principals`` patterns and Google-managed
service agents) are refused with :class:`RevokeError` whatever the plan says, and so is
removing the last member of a resource's administrator role (:data:`LAST_ADMIN_ROLE`).
"""

from __future__ import annotations

import base64
import fnmatch
import re
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
    principal_uid,
    resource_name,
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

# projects/P/serviceAccounts/EMAIL/keys/KEY_ID: the name a key credential carries.
_KEY_NAME = re.compile(r"^projects/([^/]+)/serviceAccounts/([^/]+)/keys/([^/]+)$")

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
                    "iam.serviceAccounts.get",
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
                permissions=(
                    "iam.serviceAccounts.get",
                    "iam.serviceAccountKeys.get",
                    "iam.serviceAccountKeys.delete",
                ),
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
        """The object's state now, with ``identity`` as the system reports it (see the module)."""
        self._check(action, target)
        try:
            if action == "remove_binding":
                return self._binding_state(self._binding_ref(target))
            if action in ("disable_key", "delete_key"):
                return self._key_state(target)
            return self._sa_state(target)
        except _api_errors() as exc:
            raise RevokeError(f"{action} {target.credential_id}: cannot read state: {exc}") from exc

    def apply(self, action: str, target: ActionTarget) -> ActionResult:
        """Revoke; raises :class:`TargetChanged` before any change when the identity re-read
        is not ``target.account_uid``."""
        self._check(action, target)
        try:
            if action == "remove_binding":
                return self._remove_binding(target, self._binding_ref(target))
            if action == "disable_key":
                return self._set_key(target, enabled=False)
            if action == "delete_key":
                return self._delete_key(target)
            return self._set_sa(target, enabled=False)
        except _api_errors() as exc:
            raise RevokeError(f"{action} {target.credential_id}: {type(exc).__name__}: {exc}") from exc

    def undo(self, action: str, target: ActionTarget, prior: ResourceState) -> ActionResult:
        """Restore ``prior``; raises :class:`TargetChanged` before any change when the
        identity re-read is not ``target.account_uid``."""
        self._check(action, target)
        if not self.actions[action].reversible:
            raise RevokeError(f"{action} is irreversible: {target.credential_id} cannot be restored")
        try:
            if action == "remove_binding":
                return self._restore_binding(target, self._binding_ref(target), prior)
            if action == "disable_key":
                if not prior.exists or not prior.active:
                    state = self._same_target(target, self._key_state(target))
                    return ActionResult(
                        False, state, state, True, "key was not active before: nothing to restore"
                    )
                return self._set_key(target, enabled=True)
            if not prior.exists or not prior.active:
                state = self._same_target(target, self._sa_state(target))
                return ActionResult(
                    False, state, state, True, "account was disabled before: nothing to restore"
                )
            return self._set_sa(target, enabled=True)
        except _api_errors() as exc:
            raise RevokeError(f"undo {action} {target.credential_id}: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _same_target(target: ActionTarget, state: ResourceState) -> ResourceState:
        """``state`` if it was read from the account ``target`` was planned for; else raise."""
        mismatch = identity_mismatch(target, state)
        if mismatch is not None:
            raise TargetChanged(mismatch)
        return state

    # --- safety --------------------------------------------------------------------------

    def _check(self, action: str, target: ActionTarget) -> None:
        """Refuse, before any call, an unknown action, a protected principal or a target whose
        parts name different objects (a binding of another resource or principal than the
        account's, a key of another service account or project)."""
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
        if action in ("disable_key", "delete_key"):
            self._key_parts(target)

    # --- bindings ------------------------------------------------------------------------

    @staticmethod
    def _binding_ref(target: ActionTarget) -> BindingRef:
        """What the binding credential names, if it is the same resource and principal as the
        target's scope and account; otherwise :class:`RevokeError`."""
        try:
            ref = parse_binding_credential_id(target.credential_id)
        except ValueError as exc:
            raise RevokeError(str(exc)) from exc
        if target.scope != ref.scope:
            raise RevokeError(f"{target.credential_id} is not in scope {target.scope or '(none)'}")
        # The account of a binding is one principal in one resource: projects/P/user:EMAIL.
        account = f"{resource_name(ref.scope)}/{principal_uid(ref.member)}"
        if target.account_id.lower() != account:
            raise RevokeError(
                f"{target.credential_id} does not belong to account {target.account_id} (it names {account})"
            )
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
        # The principal is the identity whether or not it is still bound: "not bound" is the
        # revoked state, not another principal (see the module docstring).
        return ResourceState(
            exists=present, active=present, data=tuple(data), identity=principal_uid(ref.member)
        )

    def _binding_state(self, ref: BindingRef) -> ResourceState:
        return self._state_of(self._get_policy(ref), ref)

    def _write_policy(self, target: ActionTarget, ref: BindingRef, change: Any) -> tuple[ResourceState, bool]:
        """Read-modify-write with the etag; ``change(policy) -> bool`` edits in place (False: no-op).

        Every attempt checks the identity on the policy it is about to write. Returns the state
        before the successful write and whether anything was written.
        """
        attempts = self.config.max_policy_retries
        for _attempt in range(attempts):
            policy = self._get_policy(ref)
            before = self._same_target(target, self._state_of(policy, ref))
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

    def _remove_binding(self, target: ActionTarget, ref: BindingRef) -> ActionResult:
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

        before, written = self._write_policy(target, ref, change)
        after = self._binding_state(ref)
        return ActionResult(
            changed=written,
            before=before,
            after=after,
            verified=not after.exists,
            message="" if written else "member not in the binding: nothing to do",
        )

    def _restore_binding(self, target: ActionTarget, ref: BindingRef, prior: ResourceState) -> ActionResult:
        if not prior.exists:
            state = self._same_target(target, self._binding_state(ref))
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

        before, written = self._write_policy(target, ref, change)
        after = self._binding_state(ref)
        return ActionResult(written, before, after, verified=after.exists)

    # --- keys ----------------------------------------------------------------------------

    @staticmethod
    def _key_parts(target: ActionTarget) -> tuple[str, str]:
        """(project, key id) of a key credential that belongs to the target's service account
        (and project, when the target has one); otherwise :class:`RevokeError`."""
        m = _KEY_NAME.match(target.credential_id)
        if not m:
            raise RevokeError(f"not a service-account key name: {target.credential_id!r}")
        project, email, key_id = m.groups()
        if email.lower() != target.account_id.lower() or (target.scope and project != target.scope):
            raise RevokeError(
                f"{target.credential_id} is not a key of {target.account_id} "
                f"in {target.scope or 'any project'}"
            )
        return project, key_id

    def _key_state(self, target: ActionTarget) -> ResourceState:
        """``GetServiceAccount`` (the identity), then ``GetServiceAccountKey``."""
        from google.api_core.exceptions import NotFound

        name = target.credential_id
        identity = self._sa_identity(target)
        if identity is None:
            # A key cannot outlive its service account.
            return ResourceState(exists=False, active=False, data=(("name", name),))
        try:
            key = self.clients.iam.get_service_account_key(
                request={"name": name}, retry=self._retry, timeout=self.config.timeout
            )
        except NotFound:
            return ResourceState(exists=False, active=False, data=(("name", name),), identity=identity)
        return ResourceState(
            exists=True,
            active=not key.disabled,
            data=(("name", name), ("disabled", "true" if key.disabled else "false")),
            identity=identity,
        )

    def _key_by_uid(self, target: ActionTarget, unique_id: str) -> str:
        """The key's name with its service account named by ``uniqueId``: a write through it can
        only reach the key of exactly that service account."""
        project, key_id = self._key_parts(target)
        return f"projects/{project}/serviceAccounts/{unique_id}/keys/{key_id}"

    def _set_key(self, target: ActionTarget, enabled: bool) -> ActionResult:
        before = self._same_target(target, self._key_state(target))
        if not before.exists:
            return ActionResult(False, before, before, verified=not enabled, message="key not found")
        if before.active == enabled:
            return ActionResult(False, before, before, True, "already in the target state")
        name = self._key_by_uid(target, target.account_uid)
        if enabled:
            self.clients.iam.enable_service_account_key(
                request={"name": name}, retry=self._retry, timeout=self.config.timeout
            )
        else:
            self.clients.iam.disable_service_account_key(
                request={"name": name}, retry=self._retry, timeout=self.config.timeout
            )
        # Neither call returns the key: re-read it to know it worked.
        after = self._key_state(target)
        return ActionResult(True, before, after, verified=after.exists and after.active == enabled)

    def _delete_key(self, target: ActionTarget) -> ActionResult:
        before = self._same_target(target, self._key_state(target))
        if not before.exists:
            return ActionResult(False, before, before, True, "key not found: already deleted")
        self.clients.iam.delete_service_account_key(
            request={"name": self._key_by_uid(target, target.account_uid)},
            retry=self._retry,
            timeout=self.config.timeout,
        )
        after = self._key_state(target)
        return ActionResult(True, before, after, verified=not after.exists)

    # --- service accounts ----------------------------------------------------------------

    @staticmethod
    def _sa_name(target: ActionTarget, ref: str | None = None) -> str:
        """``projects/P/serviceAccounts/REF``; REF is the email unless a ``uniqueId`` is given.

        "-" for a target without a project lets the API find it from the (globally unique)
        email or id.
        """
        return f"projects/{target.scope or '-'}/serviceAccounts/{ref or target.account_id}"

    def _get_sa(self, target: ActionTarget) -> Any:
        """``GetServiceAccount`` by email; None when there is no such account now."""
        from google.api_core.exceptions import NotFound

        try:
            return self.clients.iam.get_service_account(
                request={"name": self._sa_name(target)}, retry=self._retry, timeout=self.config.timeout
            )
        except NotFound:
            return None

    def _sa_identity(self, target: ActionTarget) -> str | None:
        """The ``uniqueId`` of the service account that has the target's email now, if any."""
        sa = self._get_sa(target)
        return str(sa.unique_id) if sa is not None else None

    def _sa_state(self, target: ActionTarget) -> ResourceState:
        name = self._sa_name(target)
        sa = self._get_sa(target)
        if sa is None:
            return ResourceState(exists=False, active=False, data=(("name", name),))
        return ResourceState(
            exists=True,
            active=not sa.disabled,
            data=(("name", name), ("disabled", "true" if sa.disabled else "false")),
            identity=str(sa.unique_id),
        )

    def _set_sa(self, target: ActionTarget, enabled: bool) -> ActionResult:
        before = self._same_target(target, self._sa_state(target))
        if before.active == enabled:
            return ActionResult(False, before, before, True, "already in the target state")
        # By uniqueId: never the account that may have replaced this one since the check.
        name = self._sa_name(target, target.account_uid)
        if enabled:
            self.clients.iam.enable_service_account(
                request={"name": name}, retry=self._retry, timeout=self.config.timeout
            )
        else:
            self.clients.iam.disable_service_account(
                request={"name": name}, retry=self._retry, timeout=self.config.timeout
            )
        after = self._sa_state(target)
        return ActionResult(True, before, after, verified=after.exists and after.active == enabled)

    def close(self) -> None:
        if self._clients is not None:
            self._clients.close()
