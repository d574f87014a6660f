"""The inventory of one project (or organization / folder): its secrets and keys, the objects
leavers made there, and whether its reads are logged at all.

- Secret Manager (``secret_manager``): ``ListSecrets`` (``secretmanager.secrets.list``) for every
  secret, then ``ListSecretVersions`` (``secretmanager.versions.list``) for the secrets a
  leaver touched: version ``create_time`` and ``state``. Never ``AccessSecretVersion``.
- Cloud KMS (``kms``): ``GetCryptoKey`` (``cloudkms.cryptoKeys.get``) and
  ``ListCryptoKeyVersions`` (``cloudkms.cryptoKeyVersions.list``) for the keys a leaver touched
  (their names come from the events: listing every key ring would need every location).
- Objects a leaver made: ``GetServiceAccountKey`` (``iam.serviceAccountKeys.get``) for a key
  they created for another service account; ``getIamPolicy`` of the project, organization or
  folder (``resourcemanager.*.getIamPolicy``), secret (``secretmanager.secrets.getIamPolicy``)
  or crypto key (``cloudkms.cryptoKeys.getIamPolicy``) for a role they granted.
- Data Access audit logs: the project's IAM policy ``auditConfigs`` (and those of the configured
  organization and folders, which projects inherit). ``AccessSecretVersion`` and
  ``AsymmetricSign`` are logged only where DATA_READ is on: where it is off, or a member is
  exempted, a warning says so: reads there are unknown, never "nobody read it".

Any call that fails (other than NOT_FOUND for an object, which is gone) raises: the caller fails
the whole scope, never an empty inventory.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.gcp_iam.clients import GcpClients
from connectors.gcp_iam.exposure import states as st
from connectors.gcp_iam.exposure import translate as tr
from connectors.gcp_iam.exposure.clients import ClientCache
from connectors.gcp_iam.exposure.settings import ExposureSettings
from offboard_audit.core.exposure import ObjectRef, PersistenceState, SecretState
from offboard_audit.core.records import CredentialKind

_DATA_READ_WHAT = {
    tr.SECRETS: "reads of secret versions (AccessSecretVersion)",
    tr.KMS: "signatures with Cloud KMS keys (AsymmetricSign)",
}


def _not_found() -> type[Exception]:
    from google.api_core.exceptions import NotFound

    return NotFound


@dataclass
class ScopeInventory:
    """Reads the inventory of one scope (see the module docstring)."""

    source: str
    scope: str
    gcp: GcpClients
    clients: ClientCache
    settings: ExposureSettings
    retry: Any
    timeout: float
    # Read once by project_policy() (both the objects and the Data Access check need it).
    _project_policy: Any = field(default=None, init=False, repr=False)

    @property
    def _call(self) -> dict[str, Any]:
        """The retry and timeout keywords of every API call."""
        return {"retry": self.retry, "timeout": self.timeout}

    @property
    def is_project(self) -> bool:
        return not self.scope.startswith(("organizations/", "folders/"))

    # --- secrets and keys ----------------------------------------------------------------------

    def secrets(self, wanted: Sequence[ObjectRef]) -> list[SecretState]:
        if not self.is_project:
            return []
        mine = [r for r in wanted if r.scope == self.scope]
        out: list[SecretState] = []
        if self.settings.secret_manager:
            ids = {r.object_id for r in mine if r.kind is CredentialKind.SECRET}
            out.extend(self._secret_manager(ids))
        if self.settings.kms:
            keys = sorted({r.object_id for r in mine if r.kind is CredentialKind.KMS_KEY})
            out.extend(self._kms(keys))
        return out

    def _secret_manager(self, wanted: set[str]) -> list[SecretState]:
        sm = self.clients.secrets()
        s = self.settings
        out: list[SecretState] = []
        for secret in sm.list_secrets(request={"parent": f"projects/{self.scope}"}, **self._call):
            state = st.secret_state(
                self.source, self.scope, secret, None, s.owner_label_keys, s.signing_labels
            )
            if wanted & {state.secret_id, *state.aliases}:
                versions = list(sm.list_secret_versions(request={"parent": secret.name}, **self._call))
                state = st.secret_state(
                    self.source, self.scope, secret, versions, s.owner_label_keys, s.signing_labels
                )
            out.append(state)
        return out

    def _kms(self, names: Iterable[str]) -> list[SecretState]:
        kms = self.clients.kms()
        out: list[SecretState] = []
        for name in names:
            try:
                key = kms.get_crypto_key(request={"name": name}, **self._call)
            except _not_found():
                continue  # gone: the rules see no secret, and raise nothing
            versions = list(kms.list_crypto_key_versions(request={"parent": key.name}, **self._call))
            out.append(st.kms_state(self.source, self.scope, key, versions, self.settings.owner_label_keys))
        return out

    # --- objects leavers made ------------------------------------------------------------------

    def objects(self, refs: Sequence[ObjectRef], now: datetime) -> list[PersistenceState]:
        mine = [r for r in refs if r.scope == self.scope]
        out: list[PersistenceState] = []
        bindings: dict[str, list[ObjectRef]] = {}
        for ref in mine:
            if ref.kind is CredentialKind.SERVICE_ACCOUNT_KEY:
                out.append(self._key(ref, now))
            elif ref.kind is CredentialKind.IAM_BINDING:
                bindings.setdefault(st.binding_resource(ref.object_id), []).append(ref)
        for resource, group in sorted(bindings.items()):
            policy = self._policy(resource)
            present = st.policy_binding_ids(resource, policy) if policy is not None else set()
            for ref in group:
                held = ref.object_id in present
                detail = "still granted" if held else ("resource deleted" if policy is None else "removed")
                out.append(PersistenceState(self.source, ref, held, detail))
        return out

    def _key(self, ref: ObjectRef, now: datetime) -> PersistenceState:
        try:
            key = self.gcp.iam.get_service_account_key(request={"name": ref.object_id}, **self._call)
        except _not_found():
            key = None
        return st.service_account_key_state(self.source, ref, key, now)

    def _policy(self, resource: str) -> Any:
        """The IAM policy of ``resource``; None when it is gone (NOT_FOUND)."""
        request = {"resource": resource, "options": {"requested_policy_version": 3}}
        try:
            if resource.startswith("organizations/"):
                return self.gcp.organizations.get_iam_policy(request=request, **self._call)
            if resource.startswith("folders/"):
                return self.gcp.folders.get_iam_policy(request=request, **self._call)
            if "/secrets/" in resource:
                return self.clients.secrets().get_iam_policy(request=request, **self._call)
            if "/cryptoKeys/" in resource:
                return self.clients.kms().get_iam_policy(request=request, **self._call)
            return self.project_policy()
        except _not_found():
            return None

    def project_policy(self) -> Any:
        """The project's IAM policy (bindings and ``auditConfigs``), read once."""
        if self._project_policy is None:
            request = {"resource": f"projects/{self.scope}", "options": {"requested_policy_version": 3}}
            self._project_policy = self.gcp.projects.get_iam_policy(request=request, **self._call)
        return self._project_policy


def data_access_warnings(
    project: str,
    policies: Sequence[tuple[str, Any]],
    services: Sequence[str],
    ancestors_read: bool,
) -> list[str]:
    """What a project's audit configs leave unlogged: one warning per service whose DATA_READ
    logs are off, and one per service whose DATA_READ logs exempt some members."""
    out: list[str] = []
    where = " nor in the organization/folders configured" if ancestors_read else ""
    for service in services:
        enabled, exempted = st.data_read_logging(policies, service)
        what = _DATA_READ_WHAT[service]
        if not enabled:
            out.append(
                f"{project}: Data Access audit logs (DATA_READ) are not enabled for {service} in the "
                f"project's IAM policy{where}: {what} are not logged, so who did them is unknown, not "
                "'nobody'; enable them in the auditConfigs to see them"
            )
        elif exempted:
            out.append(
                f"{project}: Data Access audit logs for {service} exempt {', '.join(exempted)}: their "
                f"{what} are not logged (unknown, not 'none')"
            )
    return out
