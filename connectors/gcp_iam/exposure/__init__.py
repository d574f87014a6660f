"""What a leaver could carry away, read from Google Cloud (issue 14): the ``[sources.exposure]``
table of a ``gcp_iam`` source.

- ``audit_logs.py``: exposure events from Cloud Audit Logs through the Logging API
  (``entries.list``, paged, incremental by a timestamp checkpoint per project);
- ``inventory.py``: Secret Manager secrets and versions, Cloud KMS keys and versions, the
  service-account keys and role grants leavers made, and the Data Access audit configs;
- ``translate.py``: pure, log entries and inventory payloads to the core's records;
- ``source.py``: :class:`GcpExposureSource`, the ``ExposureSource`` the engine reads;
- ``clients.py``: Logging, Secret Manager and KMS clients (plaintext gRPC endpoints or ADC).
"""

from __future__ import annotations

from connectors.gcp_iam.clients import injected_clients
from connectors.gcp_iam.exposure.clients import ClientCache, ExposureClients, injected_exposure_clients
from connectors.gcp_iam.exposure.settings import EXPOSURE_OPTIONS, ExposureSettings, parse_exposure
from connectors.gcp_iam.exposure.source import GcpExposureSource
from connectors.gcp_iam.settings import parse_settings
from connectors.gcp_iam.source import GcpIamSource
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext

# What the exposure reader needs (never secretmanager.versions.access: the tool reads no secret
# value). logging.privateLogEntries.list is what Data Access entries need beyond logEntries.list.
EXPOSURE_PERMISSIONS: tuple[str, ...] = (
    "logging.logEntries.list",
    "logging.privateLogEntries.list",
    "secretmanager.secrets.list",
    "secretmanager.versions.list",
    "secretmanager.secrets.getIamPolicy",
    "cloudkms.cryptoKeys.get",
    "cloudkms.cryptoKeyVersions.list",
    "cloudkms.cryptoKeys.getIamPolicy",
    "iam.serviceAccountKeys.get",
    "resourcemanager.projects.getIamPolicy",
)


def make_exposure(options: SourceOptions, ctx: SourceContext) -> GcpExposureSource | None:
    """The exposure reader of a ``gcp_iam`` source, or None without a ``[sources.exposure]`` table.

    IAM Admin and Resource Manager clients as for the source (``ctx.clients[<name>]``, a
    ``GcpClients``); Logging, Secret Manager and KMS clients from ``ctx.clients["<name>/exposure"]``
    (an :class:`ExposureClients`) or built on first use from the table's endpoints or ADC.
    """
    exposure = parse_exposure(options)
    if exposure is None:
        return None
    settings = parse_settings(options)
    accounts = GcpIamSource(settings, clients=injected_clients(options, ctx))
    cache = ClientCache(exposure, injected_exposure_clients(settings.name, ctx.clients))
    return GcpExposureSource(settings.name, exposure, cache, accounts)


__all__ = [
    "EXPOSURE_OPTIONS",
    "EXPOSURE_PERMISSIONS",
    "ExposureClients",
    "ExposureSettings",
    "GcpExposureSource",
    "make_exposure",
]
