"""The ``vault`` source's config table (Vault or OpenBao), parsed once into a frozen value."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from offboard_audit.core.options import SourceOptions

# Every key the source reads, with its help text (PLUGIN.options; ``config check`` prints it).
OPTIONS: dict[str, str] = {
    "name": "Source name (required); also the key under which tests inject clients.",
    "type": 'Always "vault" (HashiCorp Vault or OpenBao: the same HTTP API).',
    "url": 'Server address (required), e.g. "https://vault.example.com:8200".',
    "namespace": "Vault/OpenBao namespace to read (default: the root namespace); audit-log entries of "
    "other namespaces are ignored.",
    "ca_cert": "PEM file of the CA that signed the server's TLS certificate (default: the system CAs).",
    "token_env": "Environment variable holding a Vault token for the tool (or use role_id + secret_id_env).",
    "role_id": "AppRole role id the tool logs in with (not a secret), with secret_id_env.",
    "secret_id_env": "Environment variable holding the AppRole secret id (with role_id).",
    "approle_path": 'Mount path of the AppRole auth method the tool logs in through (default "approle").',
    "audit_log": "The file audit device's log: a file (its rotated siblings <name>.* / <name>-* are read "
    "too, gzip ones included) or a directory of rotated files. Without it the source reads accounts only, "
    "no exposure.",
    "kv_mounts": 'KV mounts (v1 or v2) whose secrets leavers read or wrote are checked (default ["secret"]).',
    "transit_mounts": 'Transit mounts whose keys leavers exported are checked (default ["transit"]).',
    "approle_mounts": 'AppRole auth mounts (paths without "auth/") on which a leaver who made a secret-id '
    'left a login for the role behind (default ["approle"]).',
    "pki_mounts": 'PKI mounts whose certificates leavers had issued or signed are checked (default ["pki"]).',
    "audit_device": "Path of the file audit device (as in sys/audit) whose hash matches the HMAC'd secret-id "
    "accessors and certificate serials of the log; default: the only file device the server lists.",
    "lookback": 'Audit-log entries older than this are not kept on the first read (default "365d").',
    "owner_metadata_keys": 'KV v2 custom_metadata keys naming who rotates a secret (default ["owner"]).',
    "signing_metadata": 'KV v2 custom_metadata "key=value" pairs that mark a secret as a signing key '
    '(default ["purpose=signing", "signing=true"]); every transit key counts as one.',
    "protected_entities": "Entity names or ids the revoker must never touch (break-glass identities).",
    "human_auth_types": 'Auth method types whose aliases are people (default ["userpass", "ldap", "oidc", '
    '"jwt", "okta", "github", "radius", "kerberos", "saml"]); an entity with aliases of other types only '
    "(approle, kubernetes, cert, ...) is a service identity.",
    "workers": "Concurrent entity and token reads (default 8).",
    "tokens": "true (default): the detail pass lists token accessors (sudo on auth/token/accessors) to "
    "find the tokens of the entities asked about. false: tokens are not audited.",
}

DEFAULT_HUMAN_TYPES = ("userpass", "ldap", "oidc", "jwt", "okta", "github", "radius", "kerberos", "saml")


@dataclass(frozen=True, slots=True)
class VaultSettings:
    name: str
    url: str
    namespace: str = ""
    ca_cert: Path | None = None
    token: str | None = field(default=None, repr=False)
    role_id: str | None = None
    secret_id: str | None = field(default=None, repr=False)
    approle_path: str = "approle"
    audit_log: Path | None = None
    kv_mounts: tuple[str, ...] = ("secret",)
    transit_mounts: tuple[str, ...] = ("transit",)
    approle_mounts: tuple[str, ...] = ("approle",)
    pki_mounts: tuple[str, ...] = ("pki",)
    audit_device: str = ""
    lookback: timedelta = timedelta(days=365)
    owner_metadata_keys: tuple[str, ...] = ("owner",)
    signing_metadata: tuple[tuple[str, str], ...] = (("purpose", "signing"), ("signing", "true"))
    protected_entities: tuple[str, ...] = ()
    human_auth_types: tuple[str, ...] = DEFAULT_HUMAN_TYPES
    workers: int = 8
    tokens: bool = True

    @property
    def scope(self) -> str:
        """The account scope: the namespace read (``root`` for the root namespace)."""
        return self.namespace or "root"

    @property
    def approle_scopes(self) -> tuple[str, ...]:
        return tuple(f"auth/{m}" for m in self.approle_mounts)

    @property
    def mounts(self) -> tuple[str, ...]:
        """Every mount the exposure inventory reads (its scopes; AppRole ones as ``auth/<path>``)."""
        return tuple(
            dict.fromkeys((*self.kv_mounts, *self.transit_mounts, *self.pki_mounts, *self.approle_scopes))
        )

    @property
    def engines(self) -> dict[str, str]:
        """Each configured mount's engine, for entries of servers that do not log their mount."""
        return (
            {m: "kv" for m in self.kv_mounts}
            | {m: "transit" for m in self.transit_mounts}
            | {m: "pki" for m in self.pki_mounts}
            | {m: "approle" for m in self.approle_scopes}
        )

    def is_protected(self, *names: str) -> bool:
        wanted = {n.casefold() for n in names if n}
        return any(p.casefold() in wanted for p in self.protected_entities)


def _mount(value: str) -> str:
    return value.strip().strip("/")


def parse_settings(options: SourceOptions, env: dict[str, str] | None = None) -> VaultSettings:
    """Read and validate the source table; every problem is a ConfigError naming its key.

    ``env`` is where ``token_env`` / ``secret_id_env`` are looked up; without it (``config
    check`` of a file, the plan) the secrets are not read.
    """
    options.only(OPTIONS, "vault")
    url = options.string("url").rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise options.error("url", f"must be an http(s) URL, got {url!r}")
    has_token = "token_env" in options
    has_role = "role_id" in options or "secret_id_env" in options
    if has_token and has_role:
        raise options.error("token_env", "use either token_env or role_id + secret_id_env, not both")
    if not has_token and not has_role:
        raise options.error("token_env", "is required (or role_id + secret_id_env for AppRole)")
    if has_role and not ("role_id" in options and "secret_id_env" in options):
        missing = "secret_id_env" if "role_id" in options else "role_id"
        raise options.error(missing, "is required with AppRole login (role_id + secret_id_env)")
    token = secret_id = None
    if env is not None:
        if has_token:
            token = options.secret("token_env", env)
        else:
            secret_id = options.secret("secret_id_env", env)
    signing = options.pairs("signing_metadata", ("purpose=signing", "signing=true"))
    kv = tuple(_mount(m) for m in options.strings("kv_mounts", ("secret",)))
    transit = tuple(_mount(m) for m in options.strings("transit_mounts", ("transit",)))
    pki = tuple(_mount(m) for m in options.strings("pki_mounts", ("pki",)))
    approle = tuple(_mount(m).removeprefix("auth/") for m in options.strings("approle_mounts", ("approle",)))
    seen: dict[str, str] = {}
    for key, mounts in (("kv_mounts", kv), ("transit_mounts", transit), ("pki_mounts", pki)):
        for m in mounts:
            if not m:
                raise options.error(key, "mount paths must not be empty")
            if m in seen:
                raise options.error(key, f"{m!r} is listed in {seen[m]} too")
            seen[m] = key
    if any(not m for m in approle):
        raise options.error("approle_mounts", "mount paths must not be empty")
    return VaultSettings(
        name=options.string("name"),
        url=url,
        namespace=_mount(options.opt_str("namespace", "") or "") if "namespace" in options else "",
        ca_cert=options.opt_file_path("ca_cert"),
        token=token,
        role_id=options.opt_str("role_id"),
        secret_id=secret_id,
        approle_path=_mount(options.opt_str("approle_path", "approle") or "approle"),
        audit_log=options.opt_file_path("audit_log"),
        kv_mounts=kv,
        transit_mounts=transit,
        approle_mounts=approle,
        pki_mounts=pki,
        audit_device=_mount(options.opt_str("audit_device", "") or "") if "audit_device" in options else "",
        lookback=options.duration("lookback", timedelta(days=365)),
        owner_metadata_keys=options.strings("owner_metadata_keys", ("owner",)),
        signing_metadata=signing,
        protected_entities=options.strings("protected_entities"),
        human_auth_types=tuple(
            t.casefold() for t in options.strings("human_auth_types", DEFAULT_HUMAN_TYPES)
        ),
        workers=options.integer("workers", 8, minimum=1),
        tokens=options.flag("tokens", True),
    )
