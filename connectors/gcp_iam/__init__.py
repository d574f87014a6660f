"""Google Cloud IAM connector: project, folder and organization IAM bindings, service accounts and
their user-managed keys.

Source type ``gcp_iam``, in the layout of ``connectors/README.md``: ``settings``, ``clients``,
:mod:`connectors.gcp_iam.source` (read), :mod:`connectors.gcp_iam.translate` (IAM policy
payloads -> records) and :mod:`connectors.gcp_iam.translate_service_accounts` (service accounts,
their keys and the owner convention), :mod:`connectors.gcp_iam.revoker` (write)
and ``demo`` (seeded on :mod:`connectors.gcp_iam.demo_fake`, local servers that speak the
Google APIs; the tests' failure injection and call counters are in ``tests/support/gcp.py``).
"""

from __future__ import annotations

from connectors._shared.plugin import account_plugin
from connectors.gcp_iam.clients import GcpClients, injected_clients
from connectors.gcp_iam.demo import demo
from connectors.gcp_iam.exposure import EXPOSURE_PERMISSIONS, make_exposure
from connectors.gcp_iam.exposure.settings import parse_exposure
from connectors.gcp_iam.revoker import GcpIamRevoker
from connectors.gcp_iam.settings import OPTIONS, GcpSettings, parse_settings
from connectors.gcp_iam.source import GcpIamSource
from connectors.gcp_iam.translate import SYSTEM
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import MatchSpec, SourceContext

__all__ = [
    "PLUGIN",
    "GcpClients",
    "GcpIamRevoker",
    "GcpIamSource",
    "GcpSettings",
]


def _wire(options: SourceOptions, ctx: SourceContext) -> tuple[GcpSettings, GcpClients | None]:
    # Injected clients: ``ctx.clients[<source name>]``, when present, must be a :class:`GcpClients`
    # (``iam``: an ``iam_admin_v1.IAMClient``; ``projects``/``folders``: ``resourcemanager_v3``
    # clients; ``activity``: an :class:`~connectors.gcp_iam.clients.ActivityClient` or None).
    # Otherwise clients are built on first use from ``iam_endpoint`` / ``resource_manager_endpoint``
    # / ``policy_analyzer_endpoint`` or Application Default Credentials. No secret is read from the
    # config: credentials come from the environment (ADC) only.
    settings = parse_settings(options)
    # Validated here too, so that `config check` (it builds the source) names a bad exposure key.
    parse_exposure(options)
    return settings, injected_clients(options, ctx)


PLUGIN = account_plugin(
    "gcp_iam",
    SYSTEM,
    _wire,
    source=GcpIamSource,
    revoker=GcpIamRevoker,
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
        # With a [sources.exposure] table the source also reads what leavers could carry away.
        *(f"{p} ([sources.exposure])" for p in EXPOSURE_PERMISSIONS),
    ),
    options=OPTIONS,
    match=MatchSpec(employee_id_attributes=("owner_employee_id",), email_attributes=("owner",)),
    demo=demo,
    make_exposure=make_exposure,
    exposure_permissions=EXPOSURE_PERMISSIONS,
)
