"""The ``github`` source's config table, parsed once into a frozen value.

Secrets are never read here at parse time from the file: ``token_env`` / ``private_key_env`` name
environment variables, read by ``clients.py`` when a real client is built (an injected client, as
the tests and the demo use, needs neither).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

from offboard_audit.core.options import SourceOptions

DEFAULT_API_URL = "https://api.github.com"

# Every key the source reads, with its help text (PLUGIN.options; ``config check`` prints it).
OPTIONS: dict[str, str] = {
    "name": "Source name (required); also the key under which tests and the demo inject clients.",
    "type": 'Always "github".',
    "org": 'The GitHub organisation (its login, e.g. "acme"); required.',
    "api_url": f'REST API root (default "{DEFAULT_API_URL}"; GitHub Enterprise Server: '
    '"https://HOST/api/v3"; GraphQL is reached next to it).',
    "token_env": "Environment variable holding a token of an organisation owner (classic: scopes read:org, "
    "admin:org to revoke, read:audit_log with audit_log = true). Use it or the GitHub App keys below.",
    "app_id": "GitHub App id (GitHub App auth, with private_key_env and installation_id). Only an App "
    "can list and revoke fine-grained personal access tokens.",
    "private_key_env": "Environment variable holding the GitHub App's private key (PEM).",
    "installation_id": "The App's installation id on the organisation.",
    "owners": "Table mapping GitHub logins to their owner's email, for accounts SAML does not name "
    "(logins are compared case-insensitively).",
    "saml": "true (default): read the organisation's SAML identities (GraphQL "
    "samlIdentityProvider.externalIdentities: nameId -> login) and its SAML credential authorizations "
    "(Enterprise Cloud with SAML SSO). An organisation without SAML SSO is read without them (a warning).",
    "audit_log": "true: read the organisation audit log (Enterprise Cloud only) for the accounts the core "
    "asks about: the last event of each as the membership's last use, so activity after termination "
    "(git.clone, repo.download_zip, ...) is used-after-termination (default false).",
    "deploy_keys": "true (default): list the deploy keys of every repository of the organisation "
    "(exposure: a key a leaver added that still exists is persistence-left-by-leaver, a remove task "
    "for the repository's admins; never deleted automatically).",
    "protected_logins": "GitHub logins the revoker must never touch (break-glass owners), compared "
    "case-insensitively as GitHub compares logins.",
    "page_size": "Items per page of every list call (default 100, GitHub's maximum).",
    "workers": "Concurrent repository reads (deploy keys) and per-account audit-log reads (default 8).",
    "max_retries": "Rate-limited or 5xx answers retried per call before the scope fails (default 5).",
    "max_wait": 'Longest wait for one rate-limit reset or Retry-After (default "5m"); a longer one fails '
    "the scope at once, naming when the limit resets.",
    "timeout": 'HTTP timeout per request (default "30s").',
}

_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")


@dataclass(frozen=True, slots=True)
class GitHubSettings:
    name: str
    org: str
    api_url: str = DEFAULT_API_URL
    token_env: str | None = None
    app_id: str | None = None
    private_key_env: str | None = None
    installation_id: int | None = None
    owners: tuple[tuple[str, str], ...] = ()
    saml: bool = True
    audit_log: bool = False
    deploy_keys: bool = True
    protected_logins: tuple[str, ...] = ()
    page_size: int = 100
    workers: int = 8
    max_retries: int = 5
    max_wait: timedelta = timedelta(minutes=5)
    timeout: timedelta = timedelta(seconds=30)
    # Lower-cased owners map, for lookups.
    _owners: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._owners.update({login.casefold(): email for login, email in self.owners})

    @property
    def app_auth(self) -> bool:
        """GitHub App auth: the only auth that may list and revoke fine-grained PATs."""
        return self.app_id is not None

    def owner_of(self, login: str) -> str | None:
        return self._owners.get(login.casefold())

    def is_protected(self, login: str) -> bool:
        wanted = login.casefold()
        return any(p.casefold() == wanted for p in self.protected_logins)


def parse_settings(options: SourceOptions) -> GitHubSettings:
    """Read and validate the source table; every problem is a ConfigError naming its key."""
    options.only(OPTIONS, "github")
    org = options.string("org").strip()
    if not _LOGIN.match(org):
        raise options.error("org", f"{org!r} is not a GitHub organisation login")
    api_url = (options.opt_str("api_url", DEFAULT_API_URL) or DEFAULT_API_URL).rstrip("/")
    if not api_url.startswith(("http://", "https://")):
        raise options.error("api_url", f"must be an http(s) URL, got {api_url!r}")
    app_keys = [k for k in ("app_id", "private_key_env", "installation_id") if k in options]
    has_token = "token_env" in options
    if has_token and app_keys:
        raise options.error("token_env", "use either token_env or the GitHub App keys, not both")
    if not has_token and not app_keys:
        raise options.error(
            "token_env", "is required (or GitHub App auth: app_id, private_key_env, installation_id)"
        )
    if app_keys and len(app_keys) < 3:
        missing = next(k for k in ("app_id", "private_key_env", "installation_id") if k not in options)
        raise options.error(
            missing, "is required with GitHub App auth (app_id, private_key_env, installation_id)"
        )
    app_id: str | None = None
    installation_id: int | None = None
    if app_keys:
        raw_app = options.raw.get("app_id")
        app_id = str(raw_app).strip()
        if not app_id.isdigit():
            raise options.error("app_id", f"must be the App's numeric id, got {raw_app!r}")
        installation_id = options.integer("installation_id", minimum=1)
    owners = options.str_map("owners")
    for login in owners:
        if not _LOGIN.match(login):
            raise options.error("owners", f"{login!r} is not a GitHub login")
    protected = options.strings("protected_logins")
    page_size = options.integer("page_size", 100, minimum=1)
    if page_size > 100:
        raise options.error("page_size", f"GitHub pages hold at most 100 items, got {page_size}")
    return GitHubSettings(
        name=options.string("name"),
        org=org,
        api_url=api_url,
        token_env=options.opt_str("token_env"),
        app_id=app_id,
        private_key_env=options.opt_str("private_key_env"),
        installation_id=installation_id,
        owners=tuple(sorted(owners.items())),
        saml=options.flag("saml", True),
        audit_log=options.flag("audit_log"),
        deploy_keys=options.flag("deploy_keys", True),
        protected_logins=protected,
        page_size=page_size,
        workers=options.integer("workers", 8, minimum=1),
        max_retries=options.integer("max_retries", 5, minimum=0),
        max_wait=options.duration("max_wait", timedelta(minutes=5)),
        timeout=options.duration("timeout", timedelta(seconds=30)),
    )
