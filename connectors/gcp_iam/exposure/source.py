"""The ``gcp_iam`` source's exposure reader: Cloud Audit Logs events, the Secret Manager and Cloud
KMS inventory, and the objects leavers made.

Events (``audit_logs.py``) and the inventory (``inventory.py``) cover what the IAM source scans,
found by the same discovery: the projects (``projects``, and every active project under
``organization`` / ``folders``), the configured organization and folders, and every active
sub-folder below them (a role granted there is inherited by the projects below). One project failing is a ``ScopeFailure`` of
that project while the others report; a project list that cannot be read fails the reader.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from connectors._shared.inventory import ScopeFound, inventory_by_scope
from connectors.gcp_iam.clients import GcpClients, api_errors, bounded_retry, describe_error
from connectors.gcp_iam.discovery import discover
from connectors.gcp_iam.exposure import translate as tr
from connectors.gcp_iam.exposure.audit_logs import AuditLogReader
from connectors.gcp_iam.exposure.clients import ClientCache
from connectors.gcp_iam.exposure.inventory import ScopeInventory, data_access_warnings
from connectors.gcp_iam.exposure.settings import ExposureSettings
from connectors.gcp_iam.source import GcpIamSource
from connectors.gcp_iam.translate import SYSTEM
from offboard_audit.core.errors import SourceError
from offboard_audit.core.exposure import (
    PERSISTENCE_KINDS,
    Checkpoint,
    EventBatch,
    InventoryRead,
    ObjectRef,
    SecretListing,
)
from offboard_audit.core.records import CredentialKind, ScopeFailure


class GcpExposureSource:
    """Reads Cloud Audit Logs and the Secret Manager / Cloud KMS / IAM inventory.

    Permissions: ``logging.logEntries.list`` and ``logging.privateLogEntries.list`` (Data Access
    entries; ``roles/logging.privateLogViewer``); ``secretmanager.secrets.list``,
    ``secretmanager.versions.list``, ``secretmanager.secrets.getIamPolicy``;
    ``cloudkms.cryptoKeys.get``, ``cloudkms.cryptoKeyVersions.list``,
    ``cloudkms.cryptoKeys.getIamPolicy``; ``iam.serviceAccountKeys.get``;
    ``resourcemanager.projects.getIamPolicy`` (bindings and audit configs), and for an
    organization or folders their ``getIamPolicy``. Never ``secretmanager.versions.access``: no
    secret value is ever read.
    """

    system = SYSTEM

    def __init__(
        self,
        name: str,
        settings: ExposureSettings,
        clients: ClientCache,
        accounts: GcpIamSource,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.name = name
        self._clock = clock or (lambda: datetime.now(UTC))
        self.settings = settings
        self.clients = clients
        self._accounts = accounts
        self._timeout = accounts.config.timeout
        self._retry = bounded_retry(self._timeout)

    # --- what is read --------------------------------------------------------------------------

    def _configured_hierarchy(self) -> list[str]:
        """The configured organization and folders: ancestors of every project discovered under
        them, so their audit configs apply to each (a sub-folder's apply to its own projects only)."""
        c = self._accounts.config
        return [*([c.organization] if c.organization else []), *c.folders]

    def _scopes(self) -> tuple[list[str], list[str]]:
        """(projects, organization and folders) exactly as the IAM source scans them: the same
        discovery, so a role granted on an active sub-folder is read here too. A SourceError (a
        parent that cannot be listed) fails the whole reader, as it fails the source."""
        return discover(self._accounts.config, lambda: self._accounts.clients)

    def read_events(self, checkpoints: Mapping[str, Checkpoint], now: datetime) -> Iterator[EventBatch]:
        if not self.settings.audit_logs:
            return
        projects, hierarchy = self._scopes()
        resources = [f"projects/{p}" for p in projects] + hierarchy
        try:
            client = self.clients.logging()
        except api_errors() as exc:
            raise SourceError(
                f"{self.name}: cannot create the Cloud Logging client: {describe_error(exc)}"
            ) from exc
        s = self.settings
        reader = AuditLogReader(
            self.name, client, s.lookback, s.overlap, s.page_size, self._retry, self._timeout
        )
        yield from reader.read(resources, checkpoints, now)

    def inventory(self, wanted: Sequence[ObjectRef]) -> InventoryRead:
        now = self._clock()
        projects, hierarchy = self._scopes()
        ancestors_configured = self._configured_hierarchy()
        gcp = self._accounts.clients
        refs = [r for r in wanted if r.kind in PERSISTENCE_KINDS]
        services = [
            svc for svc, on in ((tr.SECRETS, self.settings.secret_manager), (tr.KMS, self.settings.kms)) if on
        ]
        warnings: list[str] = []
        ancestors: list[tuple[str, Any]] = []
        if self.settings.audit_logs and services:
            ancestors, failed = self._ancestor_policies(gcp, ancestors_configured)
            warnings.extend(failed)

        def one(scope: str) -> ScopeFound | ScopeFailure:
            inv = ScopeInventory(
                self.name, scope, gcp, self.clients, self.settings, self._retry, self._timeout
            )
            try:
                result = ScopeFound(inv.secrets(wanted), inv.objects(refs, now))
            except api_errors() as exc:
                return ScopeFailure(scope, f"inventory of {scope}: {describe_error(exc)}")
            if inv.is_project and self.settings.audit_logs and services:
                try:
                    policies = [(f"projects/{scope}", inv.project_policy()), *ancestors]
                except api_errors() as exc:
                    result.warnings.append(
                        f"{scope}: cannot tell whether Data Access audit logs are on (getIamPolicy: "
                        f"{describe_error(exc)}): reads of secrets and key signatures there are unknown"
                    )
                else:
                    result.warnings.extend(
                        data_access_warnings(scope, policies, services, bool(ancestors_configured))
                    )
            return result

        read = inventory_by_scope(
            [*projects, *hierarchy],
            one,
            workers=self._accounts.config.max_workers,
            warnings=warnings,
            thread_name_prefix=f"gcp-{self.name}-exposure",
        )
        # Only the services inventoried replace what is stored: secret_manager = false lists no
        # secret, which says nothing about the secrets stored (nor rotates them).
        kinds = (
            (CredentialKind.SECRET, self.settings.secret_manager),
            (CredentialKind.KMS_KEY, self.settings.kms),
        )
        return replace(read, listed=tuple(SecretListing(kind) for kind, on in kinds if on))

    def _ancestor_policies(
        self, gcp: GcpClients, hierarchy: Sequence[str]
    ) -> tuple[list[tuple[str, Any]], list[str]]:
        """The configured organization's and folders' IAM policies (their audit configs apply to
        every project below); one that cannot be read is a warning, not a failed scope."""
        out: list[tuple[str, Any]] = []
        warnings: list[str] = []
        for resource in hierarchy:
            client = getattr(gcp, "organizations" if resource.startswith("organizations/") else "folders")
            try:
                request = {"resource": resource, "options": {"requested_policy_version": 3}}
                out.append(
                    (
                        resource,
                        client.get_iam_policy(request=request, retry=self._retry, timeout=self._timeout),
                    )
                )
            except api_errors() as exc:
                warnings.append(
                    f"{resource}: cannot read its audit configs (getIamPolicy: {describe_error(exc)}); "
                    "Data Access logging inherited from it is unknown"
                )
        return out, warnings

    def close(self) -> None:
        self.clients.close()
        self._accounts.close()
