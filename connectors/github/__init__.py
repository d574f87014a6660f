"""GitHub organisation connector (source type ``github``): members, outside collaborators and
pending invitations, their SAML-authorized tokens and SSH keys, fine-grained tokens, deploy keys
they left behind, and revocation.

See ``source.py`` for the read path (paged lists in bulk, tokens and the audit log only for the
accounts the core asks about), ``exposure.py`` for deploy keys, ``revoker.py`` / ``actions.py``
for the write path and ``clients.py`` for rate limits and pagination.
"""

from __future__ import annotations

from connectors._shared.plugin import account_plugin, lazy_demo, wired
from connectors.github.clients import GitHubApi, GitHubClients
from connectors.github.exposure import EXPOSURE_PERMISSIONS, GitHubExposure
from connectors.github.revoker import GitHubRevoker
from connectors.github.settings import OPTIONS, GitHubSettings, parse_settings
from connectors.github.source import GitHubSource
from connectors.github.translate import SYSTEM
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import MatchSpec, SourceContext

READ_PERMISSIONS: tuple[str, ...] = (
    "GET /orgs/{org}/members, /outside_collaborators, /invitations (token scope read:org of an "
    "organisation owner; GitHub App: Members read)",
    "GET /users/{username} (public)",
    "GraphQL organization.samlIdentityProvider.externalIdentities and GET "
    "/orgs/{org}/credential-authorizations (saml = true: read:org, an organisation owner; Enterprise Cloud)",
    "GET /orgs/{org}/personal-access-tokens (GitHub App auth only: Personal access tokens read; with "
    "token auth fine-grained tokens are not read and the source warns)",
    "GET /orgs/{org}/audit-log (audit_log = true: read:audit_log, an organisation owner; GitHub App: "
    "Administration read; Enterprise Cloud)",
)


def _api(options: SourceOptions, ctx: SourceContext) -> tuple[GitHubSettings, GitHubApi]:
    # Injected client: ``ctx.clients[<source name>]`` may be a :class:`GitHubClients` or a
    # ``githubkit.GitHub``; otherwise one is built on first use from ``token_env`` or the GitHub
    # App keys (read from ``ctx.env``).
    settings = parse_settings(options)
    injected = GitHubClients.coerce(ctx.clients.get(settings.name))
    return settings, GitHubApi.of(settings, injected, ctx.env)


def _exposure(settings: GitHubSettings, api: GitHubApi) -> GitHubExposure | None:
    """The deploy-key reader (``deploy_keys = true``, the default), or None."""
    return GitHubExposure(settings, api) if settings.deploy_keys else None


PLUGIN = account_plugin(
    "github",
    SYSTEM,
    _api,
    source=GitHubSource,
    revoker=GitHubRevoker,
    read_permissions=READ_PERMISSIONS + tuple(f"{p} (deploy_keys = true)" for p in EXPOSURE_PERMISSIONS),
    options=OPTIONS,
    # The SAML nameId is an email or an employee id, whichever the IdP sends; owners map: an email.
    match=MatchSpec(
        employee_id_attributes=("saml_name_id",),
        email_attributes=("saml_name_id", "owner"),
    ),
    # Lazy: the demo starts a local fake server an ordinary audit never needs.
    demo=lazy_demo("connectors.github.demo:demo"),
    make_exposure=wired(_api, _exposure),
    exposure_permissions=EXPOSURE_PERMISSIONS,
)

__all__ = [
    "PLUGIN",
    "GitHubClients",
    "GitHubExposure",
    "GitHubRevoker",
    "GitHubSettings",
    "GitHubSource",
]
