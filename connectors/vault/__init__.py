"""HashiCorp Vault / OpenBao connector (source type ``vault``): identity entities and their
logins and tokens (an account source with a revoker), and, with ``audit_log``, what leavers could
carry away (KV secrets read or written, transit keys exported) from the file audit device's log.

Layout (``connectors/README.md``): ``settings``, ``clients`` (hvac, lazy), ``translate`` (pure),
``source`` (entities, userpass, tokens), ``auditlog`` (the audit log, incremental and
rotation-safe), ``audit_entries`` (pure: an entry's events) and ``exposure`` (the
``ExposureSource``: events and the KV/transit inventory), ``actions`` + ``revoker``. No demo
part: ``offboard-audit demo`` runs without Vault.
"""

from __future__ import annotations

from connectors._shared.plugin import account_plugin, wired
from connectors.vault.clients import VaultApi
from connectors.vault.exposure import EXPOSURE_PERMISSIONS, VaultExposureSource
from connectors.vault.revoker import VaultRevoker
from connectors.vault.settings import OPTIONS, VaultSettings, parse_settings
from connectors.vault.source import READ_PERMISSIONS, VaultSource
from connectors.vault.translate import SYSTEM
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import MatchSpec, SourceContext


def _settings_and_api(options: SourceOptions, ctx: SourceContext) -> tuple[VaultSettings, VaultApi]:
    # Injected client (tests): ``ctx.clients[<source name>]`` is a :class:`VaultApi` or a logged-in
    # ``hvac.Client``; otherwise one is built on first use from ``url``, ``ca_cert`` and
    # ``token_env`` (or an AppRole login).
    name = options.raw.get("name")
    injected = ctx.clients.get(name) if isinstance(name, str) else None
    # An injected client comes logged in: the secrets are read only for a client we build.
    settings = parse_settings(options, dict(ctx.env) if injected is None else None)
    return settings, VaultApi.coerce(settings, injected)


def _exposure(settings: VaultSettings, api: VaultApi) -> VaultExposureSource | None:
    """The exposure reader, or None without ``audit_log``."""
    return None if settings.audit_log is None else VaultExposureSource(settings, api)


PLUGIN = account_plugin(
    "vault",
    SYSTEM,
    _settings_and_api,
    source=VaultSource,
    revoker=VaultRevoker,
    read_permissions=READ_PERMISSIONS + tuple(f"{p} (with audit_log)" for p in EXPOSURE_PERMISSIONS),
    options=OPTIONS,
    match=MatchSpec(employee_id_attributes=("employee_id",), email_attributes=("email",)),
    make_exposure=wired(_settings_and_api, _exposure),
    exposure_permissions=EXPOSURE_PERMISSIONS,
)

__all__ = [
    "PLUGIN",
    "VaultApi",
    "VaultExposureSource",
    "VaultRevoker",
    "VaultSettings",
    "VaultSource",
]
