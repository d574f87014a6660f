"""Google Cloud IAM connector: project, folder and organization IAM bindings, service accounts and
their user-managed keys.

Source type ``gcp_iam``. See :mod:`connectors.gcp_iam.source` (read),
:mod:`connectors.gcp_iam.revoker` (write), :mod:`connectors.gcp_iam.translate` (payload ->
records, and the service-account owner convention) and :mod:`connectors.gcp_iam.fakes`
(local servers for tests and the demo).
"""

from __future__ import annotations

from connectors.gcp_iam.clients import GcpClients, GcpConfig
from connectors.gcp_iam.demo import demo
from connectors.gcp_iam.revoker import GcpIamRevoker
from connectors.gcp_iam.source import GcpIamSource
from connectors.gcp_iam.translate import SYSTEM
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import ConnectorPlugin, MatchSpec, SourceContext, SourceKind

__all__ = [
    "PLUGIN",
    "GcpClients",
    "GcpConfig",
    "GcpIamRevoker",
    "GcpIamSource",
    "make_revoker",
    "make_source",
]


def _injected(options: SourceOptions, ctx: SourceContext) -> GcpClients | None:
    client = ctx.clients.get(options.string("name"))
    if client is not None and not isinstance(client, GcpClients):
        raise TypeError(
            f"injected client for {options.string('name')} must be a GcpClients, got {type(client)}"
        )
    return client


def make_source(options: SourceOptions, ctx: SourceContext) -> GcpIamSource:
    """Build the ``gcp_iam`` source.

    ``ctx.clients[name]``, when present, must be a :class:`GcpClients` (``iam``: an
    ``iam_admin_v1.IAMClient``; ``projects``/``folders``: ``resourcemanager_v3`` clients;
    ``activity``: an :class:`~connectors.gcp_iam.clients.ActivityClient` or None). Otherwise
    clients are built on first use from ``iam_endpoint`` / ``resource_manager_endpoint`` /
    ``policy_analyzer_endpoint`` or Application Default Credentials. No secret is read from
    the config: credentials come from the environment (ADC) only.
    """
    return GcpIamSource(GcpConfig.from_options(options), clients=_injected(options, ctx))


def make_revoker(options: SourceOptions, ctx: SourceContext) -> GcpIamRevoker:
    """Build the ``gcp_iam`` revoker; client injection as for :func:`make_source`."""
    return GcpIamRevoker(GcpConfig.from_options(options), clients=_injected(options, ctx))


PLUGIN = ConnectorPlugin(
    type_name="gcp_iam",
    kind=SourceKind.ACCOUNTS,
    system=SYSTEM,
    make_source=make_source,
    make_revoker=make_revoker,
    revoker_actions=GcpIamRevoker.actions,
    read_permissions=(
        "resourcemanager.projects.get",
        "resourcemanager.projects.getIamPolicy",
        "resourcemanager.folders.list",
        "resourcemanager.organizations.getIamPolicy",
        "resourcemanager.folders.getIamPolicy",
        "iam.serviceAccounts.list",
        "iam.serviceAccounts.get",
        "iam.serviceAccountKeys.list",
        "policyanalyzer.serviceAccountKeyLastAuthenticationActivities.query",
        "policyanalyzer.serviceAccountLastAuthenticationActivities.query",
    ),
    options={
        "name": "Name of this source (used in findings and to inject clients).",
        "type": 'Must be "gcp_iam".',
        "projects": "List of project ids to scan.",
        "organization": "Scan every ACTIVE project under this organization, sub-folders included "
        '("organizations/N"), and read the IAM policies of the organization and of every ACTIVE '
        "folder below it (roles granted there are inherited by every project below); an "
        "organization or folder policy that cannot be read is a failed scope.",
        "folders": "Scan every ACTIVE project under these folders, sub-folders included "
        '(["folders/N", ...]), and read the IAM policies of these folders and their ACTIVE '
        "sub-folders; a folder policy that cannot be read is a failed scope.",
        "iam_endpoint": "Optional plaintext gRPC host:port of an IAM Admin API endpoint (tests, private "
        "endpoints); default: Google with Application Default Credentials.",
        "resource_manager_endpoint": "Optional HTTP(S) URL of a Resource Manager v3 REST endpoint; "
        "default: Google with Application Default Credentials.",
        "policy_analyzer_endpoint": "Optional HTTP(S) URL of the Policy Analyzer REST endpoint "
        "(used with key_last_auth); default https://policyanalyzer.googleapis.com with ADC.",
        "max_workers": "Projects scanned concurrently (default 8).",
        "owners": "Table of service-account email -> owner email (or employee id); overrides "
        "'owner: EMAIL' / 'owner=EMAIL' markers in service-account descriptions.",
        "key_last_auth": "true: in the detail pass, read last authentication of service accounts and "
        "keys from the Policy Analyzer (needs roles/policyanalyzer.activityAnalysisViewer); a "
        "missing API or permission becomes a warning, not a failure (default false).",
        "timeout": "Seconds per API call (default 30).",
        "protected_principals": "fnmatch patterns of members / service-account emails the revoker "
        "never touches, in addition to the core's protected list and Google-managed service agents.",
        "max_policy_retries": "Attempts of the etag-checked read-modify-write of a project, folder or "
        "organization IAM policy "
        "when it changes concurrently (default 5).",
    },
    match=MatchSpec(employee_id_attributes=("owner_employee_id",), email_attributes=("owner",)),
    demo=demo,
)
