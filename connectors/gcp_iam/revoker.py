"""The write side of the Google Cloud IAM connector: reversible revocations.

The actions (one class each, with their API calls and permissions) are in ``actions.py``; the
engine runs their steps (read, identity and no-op checks, change, re-read and verify). This
class is what every action goes through: the clients, the refusals made before any call, the
etag-checked read-modify-write of IAM policies and the names writes use.

Identity (``ActionTarget.account_uid``, checked by the engine before every change and undo,
see :func:`offboard_audit.core.actions.identity_mismatch`):

- Keys and service accounts: the service account's ``uniqueId``, read with IAM Admin
  ``GetServiceAccount`` by email (``iam.serviceAccounts.get``); a service account that is gone
  has none. A service account deleted and recreated under the same email has a new
  ``uniqueId``, so its keys and itself are never touched for the old one (``target-changed``).
  The writes then name the service account by that ``uniqueId``
  (``projects/P/serviceAccounts/UNIQUE_ID[/keys/K]``), so even a recreate between the check
  and the write cannot reach the new account.
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
removing the last member of a resource's administrator role (``actions.LAST_ADMIN_ROLE``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

from connectors._shared.actions import bind, definitions
from connectors.gcp_iam.actions import ACTIONS, LAST_ADMIN_ROLE
from connectors.gcp_iam.clients import GcpClients, LazyClients, bounded_retry
from connectors.gcp_iam.settings import GcpSettings
from connectors.gcp_iam.translate import BindingRef, parse_binding_credential_id, principal_uid, resource_name
from offboard_audit.core.actions import ActionDef, ActionTarget
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.protocols import ActionSpec

# Google-managed service agents: disabling them breaks Google services, and they hold no
# user-managed keys a person could walk away with.
BUILTIN_PROTECTED = (
    "*@cloudservices.gserviceaccount.com",
    "service-*@gcp-sa-*.iam.gserviceaccount.com",
)

# projects/P/serviceAccounts/EMAIL/keys/KEY_ID: the name a key credential carries.
_KEY_NAME = re.compile(r"^projects/([^/]+)/serviceAccounts/([^/]+)/keys/([^/]+)$")


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

    actions: ClassVar[Mapping[str, ActionDef]] = definitions(ACTIONS)

    def __init__(self, config: GcpSettings, clients: GcpClients | None = None) -> None:
        self.config = config
        self._clients = LazyClients(config, clients)
        self._retry = bounded_retry(config.timeout)
        self._protected = tuple(p.lower() for p in (*config.protected_principals, *BUILTIN_PROTECTED))
        self.specs: Mapping[str, ActionSpec] = bind(ACTIONS, self)

    @property
    def clients(self) -> GcpClients:
        return self._clients.get()

    def close(self) -> None:
        self._clients.close()

    # --- what every action goes through (actions.Gcp) ---------------------------------------

    def refuse_protected(self, action: str, principals: list[str]) -> None:
        for principal in principals:
            for pattern in self._protected:
                if principal and fnmatch.fnmatchcase(principal, pattern):
                    raise RevokeError(f"{principal} is protected (matches {pattern!r}): refusing {action}")

    @contextmanager
    def calling(self, what: str) -> Iterator[None]:
        try:
            yield
        except _api_errors() as exc:
            raise RevokeError(f"{what}: {type(exc).__name__}: {exc}") from exc

    def call(self, method: Callable[..., Any], name: str) -> Any:
        return method(request={"name": name}, retry=self._retry, timeout=self.config.timeout)

    # --- bindings ---------------------------------------------------------------------------

    def binding_ref(self, target: ActionTarget) -> BindingRef:
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

    def get_policy(self, ref: BindingRef) -> Any:
        return self._policy_client(ref).get_iam_policy(
            request={"resource": ref.resource, "options": {"requested_policy_version": 3}},
            retry=self._retry,
            timeout=self.config.timeout,
        )

    def write_policy(self, ref: BindingRef, edit: Callable[[Any], bool]) -> None:
        """Read-modify-write with the etag; ``edit(policy) -> bool`` edits in place (False: no-op)."""
        attempts = self.config.max_policy_retries
        for _attempt in range(attempts):
            policy = self.get_policy(ref)
            if not edit(policy):
                return
            try:
                # The policy carries the etag just read: a concurrent writer makes this fail.
                self._policy_client(ref).set_iam_policy(
                    request={"resource": ref.resource, "policy": policy},
                    retry=self._retry,
                    timeout=self.config.timeout,
                )
            except _conflict_errors():
                continue
            return
        raise RevokeError(
            f"{ref.resource}: IAM policy kept changing concurrently; gave up after {attempts} "
            "attempts without writing anything"
        )

    # --- keys and service accounts ------------------------------------------------------------

    def key_by_uid(self, target: ActionTarget) -> str:
        """The key's name with its service account named by ``uniqueId``: a write through it can
        only reach the key of exactly that service account. Refuses a key credential of another
        service account (or project) than the target's."""
        m = _KEY_NAME.match(target.credential_id)
        if not m:
            raise RevokeError(f"not a service-account key name: {target.credential_id!r}")
        project, email, key_id = m.groups()
        if email.lower() != target.account_id.lower() or (target.scope and project != target.scope):
            raise RevokeError(
                f"{target.credential_id} is not a key of {target.account_id} "
                f"in {target.scope or 'any project'}"
            )
        return f"projects/{project}/serviceAccounts/{target.account_uid}/keys/{key_id}"

    def sa_by_uid(self, target: ActionTarget) -> str:
        """By ``uniqueId``: never the account that may have replaced this one since the check.
        "-" for a target without a project lets the API find it from the (globally unique) id."""
        return f"projects/{target.scope or '-'}/serviceAccounts/{target.account_uid}"

    def get_service_account(self, target: ActionTarget) -> Any:
        from google.api_core.exceptions import NotFound

        try:
            return self.call(
                self.clients.iam.get_service_account,
                f"projects/{target.scope or '-'}/serviceAccounts/{target.account_id}",
            )
        except NotFound:
            return None


__all__ = ["BUILTIN_PROTECTED", "LAST_ADMIN_ROLE", "GcpIamRevoker"]
