"""The ``[[sources]]`` table of an ``ldap`` source, parsed once into a frozen value.

``OPTIONS`` lists every key with its help text (``PLUGIN.options``: the config loader rejects
other keys and ``config check`` prints them). Connections are built in ``clients.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ldap3.core import exceptions as ldap_exc
from ldap3.utils.dn import parse_dn

from connectors.ldap.dialects import DIALECTS, Dialect
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext

OPTIONS: dict[str, str] = {
    "name": "Source name (unique in the config); findings and actions carry it.",
    "type": 'Always "ldap".',
    "url": "ldap://host:port or ldaps://host:port of the directory server.",
    "bind_dn": "DN (or, for AD, user@realm) of the read-only service identity the audit binds as.",
    "password_env": "Name of the environment variable holding the bind password (never in the file).",
    "base_dn": "Search base for people and service accounts; one scope of the source.",
    "extra_base_dns": "More search bases, each its own scope (fails independently of the others).",
    "dialect": 'Directory flavour: "openldap" (ppolicy), "ad" (Active Directory/Samba) or "389ds".',
    "user_filter": "LDAP filter selecting account entries (default depends on the dialect).",
    "group_base_dn": "Where to search group entries (member/uniqueMember/memberUid); "
    "without it, memberships come from the accounts' memberOf only.",
    "group_filter": "LDAP filter selecting group entries under group_base_dn (default per dialect).",
    "service_base_dns": "Entries under these DNs are service accounts (kind=service).",
    "service_object_classes": "Entries with one of these objectClasses are service accounts "
    "(default: applicationProcess, simpleSecurityObject; AD: managed service accounts).",
    "employee_id_attributes": "Attributes holding an employee id (default: employeeNumber; AD: "
    "employeeID, employeeNumber).",
    "email_attributes": "Attributes holding email addresses (default: mail).",
    "username_attributes": "Attributes tried in order for the username (default: uid, cn; AD: "
    "sAMAccountName, cn).",
    "ca_file": "PEM file of the CA that signed the server certificate (ldaps:// and StartTLS).",
    "start_tls": "Upgrade an ldap:// connection with StartTLS before binding (default false).",
    "connect_timeout": "Seconds to wait for the TCP/TLS connection (default 10).",
    "receive_timeout": "Seconds to wait for each server response (default 60).",
    "page_size": "Entries per page of the RFC 2696 paged search (default 500; AD caps it at MaxPageSize).",
    "protected_dns": "Patterns (fnmatch, case-insensitive) of accounts the revoker refuses to touch, in "
    "addition to the bind identity. A pattern with '=' is matched against the DN; one without is "
    "matched against the login names (uid; AD: sAMAccountName and userPrincipalName) read from the "
    'entry (default: "uid=breakglass,*", "cn=breakglass,*", "breakglass").',
    "ignore_referrals_to": "DNs of naming contexts that hold no accounts (AD: CN=Configuration,<domain>, "
    "DC=DomainDnsZones,<domain>, DC=ForestDnsZones,<forest>): a search continuation reference to one "
    "of them (or below) is not a failure. Any other referral fails that base (default: none).",
}

DEFAULT_PROTECTED = ("uid=breakglass,*", "cn=breakglass,*", "breakglass")


@dataclass(frozen=True)
class LdapSettings:
    name: str
    url: str
    bind_dn: str
    base_dns: tuple[str, ...]
    dialect: Dialect
    user_filter: str
    group_base_dn: str | None
    group_filter: str
    service_base_dns: tuple[str, ...]
    service_object_classes: tuple[str, ...]
    employee_id_attributes: tuple[str, ...]
    email_attributes: tuple[str, ...]
    username_attributes: tuple[str, ...]
    ca_file: Path | None = None
    start_tls: bool = False
    connect_timeout: float = 10.0
    receive_timeout: float = 60.0
    page_size: int = 500
    protected_dns: tuple[str, ...] = DEFAULT_PROTECTED
    ignore_referrals_to: tuple[str, ...] = ()
    # repr=False: a settings object may end up in a log line or a traceback.
    password: str | None = field(default=None, repr=False)


def _check_dn(options: SourceOptions, key: str, value: str) -> str:
    try:
        parse_dn(value)
    except ldap_exc.LDAPException as exc:
        raise options.error(key, f"is not a valid DN: {value!r} ({exc})") from None
    return value


def parse_settings(options: SourceOptions, ctx: SourceContext, need_password: bool) -> LdapSettings:
    """Validate the table; every error names its key (ConfigError, exit code 2)."""
    name = options.string("name")
    url = options.string("url")
    if not url.lower().startswith(("ldap://", "ldaps://")):
        raise options.error("url", f"must start with ldap:// or ldaps://, got {url!r}")
    dialect_name = options.opt_str("dialect", "openldap") or "openldap"
    dialect = DIALECTS.get(dialect_name)
    if dialect is None:
        raise options.error("dialect", f"must be one of {', '.join(DIALECTS)}, got {dialect_name!r}")
    base_dn = _check_dn(options, "base_dn", options.string("base_dn"))
    extra = tuple(_check_dn(options, "extra_base_dns", d) for d in options.strings("extra_base_dns"))
    group_base = options.opt_str("group_base_dn")
    if group_base is not None:
        _check_dn(options, "group_base_dn", group_base)
    ignore_referrals = tuple(
        _check_dn(options, "ignore_referrals_to", d) for d in options.strings("ignore_referrals_to")
    )
    start_tls = options.flag("start_tls")
    ca_file = options.opt_file_path("ca_file")
    if ca_file is not None and not ca_file.is_file():
        raise options.error("ca_file", f"file not found: {ca_file}")
    password = options.secret("password_env", ctx.env, required=need_password)
    connect_timeout = options.number("connect_timeout", 10.0)
    receive_timeout = options.number("receive_timeout", 60.0)
    if connect_timeout <= 0:
        raise options.error("connect_timeout", "must be positive")
    if receive_timeout <= 0:
        raise options.error("receive_timeout", "must be positive")
    user_filter = options.opt_str("user_filter", dialect.default_user_filter) or dialect.default_user_filter
    group_filter = options.opt_str("group_filter", dialect.group_filter) or dialect.group_filter
    for key, flt in (("user_filter", user_filter), ("group_filter", group_filter)):
        if not (flt.startswith("(") and flt.endswith(")")):
            raise options.error(key, f"must be an LDAP filter in parentheses, got {flt!r}")
    return LdapSettings(
        name=name,
        url=url,
        bind_dn=options.string("bind_dn"),
        base_dns=(base_dn, *extra),
        dialect=dialect,
        user_filter=user_filter,
        group_base_dn=group_base,
        group_filter=group_filter,
        service_base_dns=options.strings("service_base_dns"),
        service_object_classes=options.strings("service_object_classes", dialect.service_object_classes),
        employee_id_attributes=options.strings("employee_id_attributes", dialect.employee_id_attributes),
        email_attributes=options.strings("email_attributes", dialect.email_attributes),
        username_attributes=options.strings("username_attributes", dialect.username_attributes),
        ca_file=ca_file,
        start_tls=start_tls,
        connect_timeout=connect_timeout,
        receive_timeout=receive_timeout,
        page_size=options.integer("page_size", 500, minimum=1),
        protected_dns=options.strings("protected_dns", DEFAULT_PROTECTED),
        ignore_referrals_to=ignore_referrals,
        password=password,
    )
